//! Frames to bytes. Every field is checked against the bound a decoder with
//! the same limits enforces, so nothing is sent that the other side would
//! have to refuse.

use super::{check_count, check_signature_len, Frame, FrameError, FrameLimits, SegmentRef};
use super::{LEN_BYTES, MAX_REASON_BYTES};
use crate::store::format::validate_origin;

impl Frame {
    /// The frame with its length prefix. Fails when a field is out of bounds
    /// (the same bounds a decoder with `limits` enforces), so nothing is sent
    /// that the other side would have to refuse.
    pub fn encode(&self, limits: &FrameLimits) -> Result<Vec<u8>, FrameError> {
        let name = self.frame_type().name();
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[0; LEN_BYTES]);
        out.push(self.frame_type() as u8);
        match self {
            Frame::Hello {
                version,
                accept_rate,
                frontiers,
            } => {
                check_count(name, frontiers.len(), usize::from(limits.max_origins))?;
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(&accept_rate.to_le_bytes());
                out.extend_from_slice(&(frontiers.len() as u16).to_le_bytes());
                for (origin, next) in frontiers {
                    put_origin(&mut out, name, origin)?;
                    out.extend_from_slice(&next.to_le_bytes());
                }
            }
            Frame::Want(refs) => {
                check_count(name, refs.len(), usize::from(limits.max_want_entries))?;
                out.extend_from_slice(&(refs.len() as u16).to_le_bytes());
                for r in refs {
                    put_ref(&mut out, name, r)?;
                }
            }
            Frame::Segment {
                at,
                id,
                signature,
                bytes,
            } => {
                check_signature_len(name, signature.len())?;
                put_ref(&mut out, name, at)?;
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(&(signature.len() as u16).to_le_bytes());
                out.extend_from_slice(signature);
                out.extend_from_slice(bytes);
            }
            Frame::Ack(id) => out.extend_from_slice(id.as_bytes()),
            Frame::Gone(at) => put_ref(&mut out, name, at)?,
            Frame::Bye { code, reason } => {
                let reason = truncate_utf8(reason, MAX_REASON_BYTES);
                out.push(*code as u8);
                out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
                out.extend_from_slice(reason.as_bytes());
            }
        }
        let body = out.len() - LEN_BYTES;
        if body > limits.max_frame_bytes as usize {
            return Err(FrameError::TooLarge {
                len: body as u64,
                max: limits.max_frame_bytes,
            });
        }
        out[..LEN_BYTES].copy_from_slice(&(body as u32).to_le_bytes());
        Ok(out)
    }
}

fn put_origin(out: &mut Vec<u8>, frame: &'static str, origin: &str) -> Result<(), FrameError> {
    validate_origin(origin).map_err(|reason| FrameError::Invalid { frame, reason })?;
    out.push(origin.len() as u8);
    out.extend_from_slice(origin.as_bytes());
    Ok(())
}

fn put_ref(out: &mut Vec<u8>, frame: &'static str, r: &SegmentRef) -> Result<(), FrameError> {
    put_origin(out, frame, &r.origin)?;
    out.extend_from_slice(&r.seq.to_le_bytes());
    Ok(())
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
