//! The sync protocol's frames: what travels inside a peer's TLS stream.
//!
//! `docs/contracts.md` ("Peer sync protocol") is the normative description; this
//! file must agree with it. All integers are little-endian.
//!
//! ```text
//! frame    len u32 (of the body, 1..=max_frame_bytes) | body
//! body     type u8 | payload
//! HELLO    0x01  version u16 | accept_rate u64 | count u16 | count × (origin | next u64)
//! WANT     0x02  count u16 | count × (origin | seq u64)
//! SEGMENT  0x03  origin | seq u64 | id [32] | sig_len u16 | sig [sig_len]
//!                | segment bytes (the rest of the body)
//! ACK      0x04  id [32]
//! GONE     0x05  origin | seq u64
//! BYE      0x06  code u8 | reason_len u16 | reason [reason_len] (UTF-8)
//! origin   len u8 (1..=255) | bytes (a node id, see store::format::validate_origin)
//! sig      the segment's origin-signature blob (crypto::origin), 0..=MAX_BLOB_LEN
//!          bytes; 0 means none, and the receiver refuses such a segment
//! ```
//!
//! Decoding is strict: an unknown type, a count over its bound, a truncated
//! field or a byte left over is an error, and the connection is closed. No
//! buffer is ever sized from a length before the length is checked against
//! its bound (INV-07).

use crate::crypto::origin::MAX_BLOB_LEN;
use crate::hashing::{Algorithm, Digest};
use crate::store::format::validate_origin;

/// The protocol version this build speaks; HELLO carries it. Version 2: the
/// SEGMENT frame carries the origin signature (docs/contracts.md, "Peer sync
/// protocol"); a version 1 peer is told so in a BYE and disconnected.
pub const PROTOCOL_VERSION: u16 = 2;
/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// The longest BYE reason sent or accepted.
pub const MAX_REASON_BYTES: usize = 256;

/// Bounds a decoder enforces. Both ends of a connection use their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest frame body (a SEGMENT frame carries a whole sealed segment).
    pub max_frame_bytes: u32,
    /// Most entries in one WANT, and most WANT entries outstanding at once.
    pub max_want_entries: u16,
    /// Most origins in one HELLO.
    pub max_origins: u16,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            // A segment may be up to 16 MiB (StoreConfig's default clamp), plus
            // its origin signature (up to MAX_BLOB_LEN) and the headers.
            max_frame_bytes: (16 << 20) + (16 << 10),
            max_want_entries: 64,
            max_origins: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Hello = 1,
    Want = 2,
    Segment = 3,
    Ack = 4,
    Gone = 5,
    Bye = 6,
}

impl FrameType {
    pub fn from_byte(byte: u8) -> Option<FrameType> {
        Some(match byte {
            1 => FrameType::Hello,
            2 => FrameType::Want,
            3 => FrameType::Segment,
            4 => FrameType::Ack,
            5 => FrameType::Gone,
            6 => FrameType::Bye,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "HELLO",
            FrameType::Want => "WANT",
            FrameType::Segment => "SEGMENT",
            FrameType::Ack => "ACK",
            FrameType::Gone => "GONE",
            FrameType::Bye => "BYE",
        }
    }
}

/// A segment's place in its origin's chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentRef {
    pub origin: String,
    pub seq: u64,
}

/// Why a peer ends a connection (BYE's code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ByeCode {
    /// Stopping or closing normally.
    Done = 0,
    /// The other side broke the protocol.
    Protocol = 1,
    /// The other side sent more than its quota allows.
    Quota = 2,
    /// Incompatible protocol versions.
    Version = 3,
    /// Idle for too long.
    Idle = 4,
    /// Anything else (a store failure, say).
    Other = 255,
}

impl ByeCode {
    fn from_byte(byte: u8) -> ByeCode {
        match byte {
            0 => ByeCode::Done,
            1 => ByeCode::Protocol,
            2 => ByeCode::Quota,
            3 => ByeCode::Version,
            4 => ByeCode::Idle,
            _ => ByeCode::Other,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// What the sender holds: per origin, the next sequence after its contiguous
    /// run from 0 (held or evicted), and the rate in bytes/s it accepts (0: none given).
    Hello {
        version: u16,
        accept_rate: u64,
        frontiers: Vec<(String, u64)>,
    },
    /// Segments the sender asks for.
    Want(Vec<SegmentRef>),
    Segment {
        at: SegmentRef,
        id: Digest,
        /// The origin-signature blob (empty: none was sent).
        signature: Vec<u8>,
        bytes: Vec<u8>,
    },
    /// The sender has stored segment `id`.
    Ack(Digest),
    /// The sender cannot serve this segment: it no longer holds it (evicted
    /// under its ceiling), or holds it without an origin signature.
    Gone(SegmentRef),
    Bye {
        code: ByeCode,
        reason: String,
    },
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: u64, max: u32 },
    #[error("empty frame")]
    Empty,
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    #[error("{frame}: {count} entries is over the limit of {max}")]
    TooMany {
        frame: &'static str,
        count: usize,
        max: usize,
    },
    #[error("{frame}: truncated at byte {at}")]
    Truncated { frame: &'static str, at: usize },
    #[error("{frame}: {left} bytes left over")]
    Trailing { frame: &'static str, left: usize },
    #[error("{frame}: {reason}")]
    Invalid { frame: &'static str, reason: String },
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello { .. } => FrameType::Hello,
            Frame::Want(_) => FrameType::Want,
            Frame::Segment { .. } => FrameType::Segment,
            Frame::Ack(_) => FrameType::Ack,
            Frame::Gone(_) => FrameType::Gone,
            Frame::Bye { .. } => FrameType::Bye,
        }
    }

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

    /// [`Frame::decode`], taking the body: a SEGMENT keeps the body's buffer
    /// for its bytes (moved down in place, not copied to a new allocation).
    pub fn decode_owned(body: Vec<u8>, limits: &FrameLimits) -> Result<Frame, FrameError> {
        if body.first() != Some(&(FrameType::Segment as u8)) {
            return Frame::decode(&body, limits);
        }
        check_len(body.len() as u64, limits)?;
        let mut r = Reader {
            buf: &body[1..],
            at: 0,
            frame: FrameType::Segment.name(),
        };
        let at = r.segment_ref()?;
        let id = r.digest()?;
        let signature = r.signature()?.to_vec();
        let head = 1 + r.at;
        let mut bytes = body;
        bytes.drain(..head);
        Ok(Frame::Segment {
            at,
            id,
            signature,
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

fn check_count(frame: &'static str, count: usize, max: usize) -> Result<(), FrameError> {
    if count > max {
        return Err(FrameError::TooMany { frame, count, max });
    }
    Ok(())
}

fn check_signature_len(frame: &'static str, len: usize) -> Result<(), FrameError> {
    if len > MAX_BLOB_LEN {
        return Err(FrameError::Invalid {
            frame,
            reason: format!("origin signature of {len} bytes is over {MAX_BLOB_LEN}"),
        });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::blake3;
    use proptest::prelude::*;

    fn small() -> FrameLimits {
        FrameLimits {
            max_frame_bytes: 4096,
            max_want_entries: 8,
            max_origins: 8,
        }
    }

    fn origin() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._:-]{1,20}"
    }

    fn seg_ref() -> impl Strategy<Value = SegmentRef> {
        (origin(), any::<u64>()).prop_map(|(origin, seq)| SegmentRef { origin, seq })
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (
                any::<u16>(),
                any::<u64>(),
                prop::collection::vec((origin(), any::<u64>()), 0..8)
            )
                .prop_map(|(version, accept_rate, frontiers)| Frame::Hello {
                    version,
                    accept_rate,
                    frontiers
                }),
            prop::collection::vec(seg_ref(), 0..8).prop_map(Frame::Want),
            (
                seg_ref(),
                prop::collection::vec(any::<u8>(), 0..300),
                prop::collection::vec(any::<u8>(), 0..1000)
            )
                .prop_map(|(at, signature, bytes)| Frame::Segment {
                    at,
                    id: blake3(&bytes),
                    signature,
                    bytes,
                }),
            any::<[u8; 32]>().prop_map(|b| Frame::Ack(Digest::new(Algorithm::Blake3, b))),
            seg_ref().prop_map(Frame::Gone),
            (0u8..5, "[ -~]{0,100}").prop_map(|(c, reason)| Frame::Bye {
                code: ByeCode::from_byte(c),
                reason
            }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(f in frame()) {
            let wire = f.encode(&small()).unwrap();
            let (back, used) = split_frame(&wire, &small()).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            let owned = Frame::decode_owned(wire[LEN_BYTES..].to_vec(), &small()).unwrap();
            prop_assert_eq!(&owned, &f);
            prop_assert_eq!(back, f);
            // Every strict prefix asks for more bytes, never errors or panics.
            for cut in 0..wire.len() {
                prop_assert_eq!(split_frame(&wire[..cut], &small()), Ok(None));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            // Either a frame, a request for more bytes, or an error: never a panic.
            let _ = split_frame(&bytes, &small());
            // Taking the body decodes exactly what borrowing it does.
            prop_assert_eq!(
                Frame::decode_owned(bytes.clone(), &small()).ok(),
                Frame::decode(&bytes, &small()).ok()
            );
        }

        #[test]
        fn a_frame_with_a_byte_flipped_never_panics(f in frame(), at in any::<prop::sample::Index>(), flip in 1u8..) {
            let mut wire = f.encode(&small()).unwrap();
            let i = at.index(wire.len());
            wire[i] ^= flip;
            let _ = split_frame(&wire, &small());
        }
    }

    #[test]
    fn oversized_length_is_refused_before_reading_the_body() {
        let wire = u32::MAX.to_le_bytes();
        assert!(matches!(
            split_frame(&wire, &small()),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            split_frame(&0u32.to_le_bytes(), &small()),
            Err(FrameError::Empty)
        );
    }

    #[test]
    fn unknown_type_and_trailing_bytes_are_errors() {
        assert_eq!(
            Frame::decode(&[0x7f], &small()),
            Err(FrameError::UnknownType(0x7f))
        );
        let mut ack = Frame::Ack(blake3(b"x")).encode(&small()).unwrap();
        ack.push(0);
        let body = &ack[LEN_BYTES..];
        assert!(matches!(
            Frame::decode(body, &small()),
            Err(FrameError::Trailing { left: 1, .. })
        ));
    }

    #[test]
    fn want_over_the_bound_is_refused_both_ways() {
        let refs: Vec<SegmentRef> = (0..9)
            .map(|seq| SegmentRef {
                origin: "a".into(),
                seq,
            })
            .collect();
        assert!(matches!(
            Frame::Want(refs.clone()).encode(&small()),
            Err(FrameError::TooMany { .. })
        ));
        let wide = FrameLimits {
            max_want_entries: 100,
            ..small()
        };
        let wire = Frame::Want(refs).encode(&wide).unwrap();
        assert!(matches!(
            split_frame(&wire, &small()),
            Err(FrameError::TooMany { count: 9, .. })
        ));
        // A count that claims more entries than the body holds: truncated, no big allocation.
        let mut body = vec![FrameType::Want as u8];
        body.extend_from_slice(&8u16.to_le_bytes());
        assert!(matches!(
            Frame::decode(&body, &small()),
            Err(FrameError::Truncated { .. })
        ));
    }

    fn segment_body(sig_len: u16, sig: &[u8], bytes: &[u8]) -> Vec<u8> {
        let mut body = vec![FrameType::Segment as u8, 1, b'a'];
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(blake3(bytes).as_bytes());
        body.extend_from_slice(&sig_len.to_le_bytes());
        body.extend_from_slice(sig);
        body.extend_from_slice(bytes);
        body
    }

    #[test]
    fn a_segment_carries_its_signature_or_none() {
        let wide = FrameLimits {
            max_frame_bytes: 1 << 16,
            ..small()
        };
        for signature in [Vec::new(), vec![0x5a; 600], vec![1; MAX_BLOB_LEN]] {
            let f = Frame::Segment {
                at: SegmentRef {
                    origin: "node-a".into(),
                    seq: 3,
                },
                id: blake3(b"segment"),
                signature: signature.clone(),
                bytes: b"segment".to_vec(),
            };
            let wire = f.encode(&wide).unwrap();
            let (back, _) = split_frame(&wire, &wide).unwrap().unwrap();
            assert_eq!(back, f);
            let owned = Frame::decode_owned(wire[LEN_BYTES..].to_vec(), &wide).unwrap();
            let Frame::Segment {
                signature: sig,
                bytes,
                ..
            } = owned
            else {
                panic!("not a segment: {owned:?}")
            };
            assert_eq!((sig, bytes), (signature, b"segment".to_vec()));
        }
        // The layout, byte for byte: the signature sits between the id and the segment.
        let body = segment_body(2, b"sg", b"rest");
        assert_eq!(
            Frame::decode(&body, &small()).unwrap(),
            Frame::Segment {
                at: SegmentRef {
                    origin: "a".into(),
                    seq: 7
                },
                id: blake3(b"rest"),
                signature: b"sg".to_vec(),
                bytes: b"rest".to_vec(),
            }
        );
    }

    #[test]
    fn an_oversized_signature_is_refused_both_ways() {
        let over = u16::try_from(MAX_BLOB_LEN + 1).unwrap();
        let wide = FrameLimits {
            max_frame_bytes: 1 << 16,
            ..small()
        };
        // Claimed over the bound: refused before the bytes are taken, even
        // when the body holds them.
        let body = segment_body(over, &vec![0; MAX_BLOB_LEN + 1], b"x");
        for decoded in [
            Frame::decode(&body, &wide),
            Frame::decode_owned(body.clone(), &wide),
        ] {
            let err = decoded.unwrap_err();
            assert!(
                matches!(&err, FrameError::Invalid { reason, .. } if reason.contains("origin signature")),
                "{err}"
            );
        }
        // Claimed longer than the body: truncated.
        let body = segment_body(100, b"short", b"");
        assert!(matches!(
            Frame::decode(&body, &wide),
            Err(FrameError::Truncated { .. })
        ));
        let f = Frame::Segment {
            at: SegmentRef {
                origin: "a".into(),
                seq: 0,
            },
            id: blake3(b""),
            signature: vec![0; MAX_BLOB_LEN + 1],
            bytes: Vec::new(),
        };
        assert!(matches!(f.encode(&wide), Err(FrameError::Invalid { .. })));
    }

    #[test]
    fn bad_origins_are_refused() {
        let mut body = vec![FrameType::Gone as u8, 3];
        body.extend_from_slice(b"a/b");
        body.extend_from_slice(&0u64.to_le_bytes());
        assert!(matches!(
            Frame::decode(&body, &small()),
            Err(FrameError::Invalid { .. })
        ));
        let mut body = vec![FrameType::Gone as u8, 0];
        body.extend_from_slice(&0u64.to_le_bytes());
        assert!(Frame::decode(&body, &small()).is_err());
    }
}
