//! Bytes to frames, strictly: an unknown type, a count over its bound, a
//! truncated field or a byte left over is an error. Every length read from
//! the wire is checked against its bound before a buffer is sized from it
//! (INV-07).

use super::{check_count, check_signature_len, ByeCode, Frame, FrameError, FrameLimits, FrameType};
use super::{SegmentRef, LEN_BYTES, MAX_BLOB_LEN, MAX_REASON_BYTES};
use crate::hashing::{Algorithm, Digest};
use crate::store::format::validate_origin;

/// The most bytes a SEGMENT frame's head can take: its type, its segment
/// reference (an origin of at most 255 bytes and a sequence number), its id
/// and its origin signature, everything before the segment's own bytes.
pub const SEGMENT_HEAD_MAX: usize = 1 + 1 + 255 + 8 + 32 + 2 + MAX_BLOB_LEN;

/// The head of a SEGMENT frame, decoded before its bytes are read.
#[derive(Debug, PartialEq, Eq)]
pub struct SegmentHead {
    /// Which segment: origin and sequence number.
    pub at: SegmentRef,
    /// The segment's id, as the sender states it.
    pub id: Digest,
    /// The origin signature blob.
    pub signature: Vec<u8>,
    /// How many bytes of the body the head took; the segment's bytes follow.
    pub len: usize,
}

impl Frame {
    /// The head of a SEGMENT frame from the first bytes of its body (at least
    /// `SEGMENT_HEAD_MAX` of them, or the whole body); `None` for any other
    /// frame type. So a reader can put a segment's bytes into a buffer of
    /// their own as they arrive, rather than move them down after the head.
    pub fn segment_head(prefix: &[u8]) -> Result<Option<SegmentHead>, FrameError> {
        if prefix.first() != Some(&(FrameType::Segment as u8)) {
            return Ok(None);
        }
        let mut r = Reader {
            buf: &prefix[1..],
            at: 0,
            frame: FrameType::Segment.name(),
        };
        let at = r.segment_ref()?;
        let id = r.digest()?;
        let signature = r.signature()?.to_vec();
        Ok(Some(SegmentHead {
            at,
            id,
            signature,
            len: 1 + r.at,
        }))
    }

    /// [`Frame::decode`], taking the body: a SEGMENT keeps the body's buffer
    /// for its bytes (moved down in place, not copied to a new allocation).
    pub fn decode_owned(body: Vec<u8>, limits: &FrameLimits) -> Result<Frame, FrameError> {
        check_len(body.len() as u64, limits)?;
        let Some(head) = Frame::segment_head(&body)? else {
            return Frame::decode(&body, limits);
        };
        let mut bytes = body;
        bytes.drain(..head.len);
        Ok(Frame::Segment {
            at: head.at,
            id: head.id,
            signature: head.signature,
            bytes,
        })
    }

    /// Decodes one frame body (the bytes after the length prefix).
    pub fn decode(body: &[u8], limits: &FrameLimits) -> Result<Frame, FrameError> {
        check_len(body.len() as u64, limits)?;
        let type_byte = body[0];
        let kind = FrameType::from_byte(type_byte).ok_or(FrameError::UnknownType(type_byte))?;
        let name = kind.name();
        let mut r = Reader {
            buf: &body[1..],
            at: 0,
            frame: name,
        };
        let frame = match kind {
            FrameType::Hello => {
                let version = r.u16()?;
                let accept_rate = r.u64()?;
                let count = usize::from(r.u16()?);
                check_count(name, count, usize::from(limits.max_origins))?;
                // Bounded by max_origins, checked above; and by what the body can hold.
                let mut frontiers = Vec::with_capacity(count.min(r.remaining() / 10));
                for _ in 0..count {
                    let origin = r.origin()?;
                    let next = r.u64()?;
                    frontiers.push((origin, next));
                }
                Frame::Hello {
                    version,
                    accept_rate,
                    frontiers,
                }
            }
            FrameType::Want => {
                let count = usize::from(r.u16()?);
                check_count(name, count, usize::from(limits.max_want_entries))?;
                let mut refs = Vec::with_capacity(count.min(r.remaining() / 10));
                for _ in 0..count {
                    refs.push(r.segment_ref()?);
                }
                Frame::Want(refs)
            }
            FrameType::Segment => {
                let at = r.segment_ref()?;
                let id = r.digest()?;
                let signature = r.signature()?.to_vec();
                let bytes = r.rest().to_vec();
                Frame::Segment {
                    at,
                    id,
                    signature,
                    bytes,
                }
            }
            FrameType::Ack => Frame::Ack(r.digest()?),
            FrameType::Gone => Frame::Gone(r.segment_ref()?),
            FrameType::Bye => {
                let code = ByeCode::from_byte(r.u8()?);
                let len = usize::from(r.u16()?);
                if len > MAX_REASON_BYTES {
                    return Err(FrameError::Invalid {
                        frame: name,
                        reason: format!("reason of {len} bytes is over {MAX_REASON_BYTES}"),
                    });
                }
                let reason = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| FrameError::Invalid {
                        frame: name,
                        reason: "reason is not UTF-8".into(),
                    })?
                    .to_string();
                Frame::Bye { code, reason }
            }
        };
        if r.remaining() != 0 {
            return Err(FrameError::Trailing {
                frame: name,
                left: r.remaining(),
            });
        }
        Ok(frame)
    }
}

/// Checks a frame length read from the wire before any buffer is sized from it.
pub fn check_len(len: u64, limits: &FrameLimits) -> Result<usize, FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > u64::from(limits.max_frame_bytes) {
        return Err(FrameError::TooLarge {
            len,
            max: limits.max_frame_bytes,
        });
    }
    Ok(len as usize)
}

/// Splits whole frames off the front of `buf`: `Ok(Some((frame, used)))`,
/// `Ok(None)` when more bytes are needed, or the first error.
pub fn split_frame(buf: &[u8], limits: &FrameLimits) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(prefix) = buf.get(..LEN_BYTES) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; LEN_BYTES];
    len_bytes.copy_from_slice(prefix);
    let len = check_len(u64::from(u32::from_le_bytes(len_bytes)), limits)?;
    match buf.get(LEN_BYTES..LEN_BYTES + len) {
        Some(body) => Ok(Some((Frame::decode(body, limits)?, LEN_BYTES + len))),
        None => Ok(None),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    frame: &'static str,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(FrameError::Truncated {
                frame: self.frame,
                at: self.buf.len() + 1,
            });
        };
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.at..];
        self.at = self.buf.len();
        out
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn digest(&mut self) -> Result<Digest, FrameError> {
        let bytes = self.take(32)?;
        Digest::from_slice(Algorithm::Blake3, bytes).map_err(|e| FrameError::Invalid {
            frame: self.frame,
            reason: e.to_string(),
        })
    }

    fn origin(&mut self) -> Result<String, FrameError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        let origin = std::str::from_utf8(bytes).map_err(|_| FrameError::Invalid {
            frame: self.frame,
            reason: "origin is not UTF-8".into(),
        })?;
        validate_origin(origin).map_err(|reason| FrameError::Invalid {
            frame: self.frame,
            reason,
        })?;
        Ok(origin.to_string())
    }

    /// `sig_len u16 | sig`: the length checked against its bound before the
    /// bytes are taken (INV-07).
    fn signature(&mut self) -> Result<&'a [u8], FrameError> {
        let len = usize::from(self.u16()?);
        check_signature_len(self.frame, len)?;
        self.take(len)
    }

    fn segment_ref(&mut self) -> Result<SegmentRef, FrameError> {
        let origin = self.origin()?;
        let seq = self.u64()?;
        Ok(SegmentRef { origin, seq })
    }
}
