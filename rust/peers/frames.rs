//! The sync protocol's frames: what travels inside a peer's TLS stream.
//!
//! `docs/contracts.md` ("Peer sync protocol") is the normative description; this
//! module must agree with it. All integers are little-endian.
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
//!
//! This file holds the frames, their limits and errors, and the bounds both
//! directions share; `encode` turns a frame into bytes and `decode` (with
//! [`check_len`] and [`split_frame`]) bytes into a frame.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::{check_len, split_frame, SegmentHead, SEGMENT_HEAD_MAX};

use crate::crypto::origin::MAX_BLOB_LEN;
use crate::hashing::Digest;

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

/// The first byte of every frame body: which frame it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// `0x01`: [`Frame::Hello`].
    Hello = 1,
    /// `0x02`: [`Frame::Want`].
    Want = 2,
    /// `0x03`: [`Frame::Segment`].
    Segment = 3,
    /// `0x04`: [`Frame::Ack`].
    Ack = 4,
    /// `0x05`: [`Frame::Gone`].
    Gone = 5,
    /// `0x06`: [`Frame::Bye`].
    Bye = 6,
}

impl FrameType {
    /// The type a body's first byte names; `None` for a byte this protocol
    /// version does not use (the decoder's [`FrameError::UnknownType`]).
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

    /// The upper-case name the protocol description uses (`HELLO`, `WANT`,
    /// …), for errors and BYE reasons.
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
    /// The node id of the node that sealed the segment (a valid origin:
    /// 1 to 255 bytes of printable ASCII without spaces or slashes).
    pub origin: String,
    /// Its sequence number in that origin's chain, counted from 0.
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

/// One message of the sync protocol; the byte layout of each is in the
/// module header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// What the sender holds: per origin, the next sequence after its contiguous
    /// run from 0 (held or evicted), and the rate in bytes/s it accepts (0: none given).
    Hello {
        /// The protocol version the sender speaks; anything but
        /// [`PROTOCOL_VERSION`] ends the connection with [`ByeCode::Version`].
        version: u16,
        /// Bytes/s the sender accepts from this side; 0: none given.
        accept_rate: u64,
        /// Per origin, one past the end of the sender's contiguous run from
        /// sequence 0; at most [`FrameLimits::max_origins`] entries.
        frontiers: Vec<(String, u64)>,
    },
    /// Segments the sender asks for.
    Want(Vec<SegmentRef>),
    /// A segment answering one of the receiver's WANT entries.
    Segment {
        /// Which segment it is; it must answer a WANT entry still outstanding.
        at: SegmentRef,
        /// Its BLAKE3 id, which the bytes must hash to before they are stored.
        id: Digest,
        /// The origin-signature blob (empty: none was sent).
        signature: Vec<u8>,
        /// The sealed segment as its origin's store wrote it.
        bytes: Vec<u8>,
    },
    /// The sender has stored segment `id`.
    Ack(Digest),
    /// The sender cannot serve this segment: it no longer holds it (evicted
    /// under its ceiling), or holds it without an origin signature.
    Gone(SegmentRef),
    /// The sender ends the connection; the last frame it sends.
    Bye {
        /// Why, by kind.
        code: ByeCode,
        /// Why, in words: UTF-8, at most [`MAX_REASON_BYTES`] (a longer one is
        /// cut at a character boundary when sent).
        reason: String,
    },
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A body over [`FrameLimits::max_frame_bytes`]: refused from its length
    /// prefix, before a buffer is sized or a byte of it is read.
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The body's length in bytes, as claimed or encoded.
        len: u64,
        /// The limit it is over.
        max: u32,
    },
    /// A length prefix of 0: every body has at least its type byte.
    #[error("empty frame")]
    Empty,
    /// A type byte this protocol version does not use.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// A HELLO or WANT with more entries than its bound
    /// ([`FrameLimits::max_origins`], [`FrameLimits::max_want_entries`]).
    #[error("{frame}: {count} entries is over the limit of {max}")]
    TooMany {
        /// The frame's name ([`FrameType::name`]).
        frame: &'static str,
        /// The entries it holds, or its count field claims.
        count: usize,
        /// The bound in force.
        max: usize,
    },
    /// A field runs past the end of the body.
    #[error("{frame}: truncated at byte {at}")]
    Truncated {
        /// The frame's name ([`FrameType::name`]).
        frame: &'static str,
        /// The body's length: where the bytes ran out.
        at: usize,
    },
    /// Bytes left after the frame's last field; strict decoding refuses them.
    #[error("{frame}: {left} bytes left over")]
    Trailing {
        /// The frame's name ([`FrameType::name`]).
        frame: &'static str,
        /// How many bytes are left over.
        left: usize,
    },
    /// A field whose value is not allowed: an origin that is not a valid
    /// node id, text that is not UTF-8, a signature or reason over its bound.
    #[error("{frame}: {reason}")]
    Invalid {
        /// The frame's name ([`FrameType::name`]).
        frame: &'static str,
        /// What is wrong with the field.
        reason: String,
    },
}

impl Frame {
    /// The type byte this frame is sent with.
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
}

/// The bound on a HELLO's or WANT's entries, the same on encoding and decoding.
fn check_count(frame: &'static str, count: usize, max: usize) -> Result<(), FrameError> {
    if count > max {
        return Err(FrameError::TooMany { frame, count, max });
    }
    Ok(())
}

/// The bound on a SEGMENT's origin signature ([`MAX_BLOB_LEN`]), the same on
/// encoding and decoding.
fn check_signature_len(frame: &'static str, len: usize) -> Result<(), FrameError> {
    if len > MAX_BLOB_LEN {
        return Err(FrameError::Invalid {
            frame,
            reason: format!("origin signature of {len} bytes is over {MAX_BLOB_LEN}"),
        });
    }
    Ok(())
}
