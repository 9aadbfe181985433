//! The on-disk format of a segment: header, record frames, footer.
//!
//! All integers are little-endian. `docs/contracts.md` ("Segment store
//! format") is the normative description; this file must agree with it.
//!
//! ```text
//! header  magic "VDTSEG1\n" | version u16 | seq u64 | first_record u64
//!         | created_unix_ms u64 | has_prev u8 | prev [32] | origin_len u8
//!         | origin [origin_len] | crc32c u32 (over everything before it)
//! frame   len ^ 0x5644_5400 u32 | crc32c u32 (over record_no u64 | len u32 | payload) | payload
//! footer  0xFFFF_FFFF u32 | record_count u64 | body_len u64 | crc32c u32
//! ```
//!
//! A frame's checksum covers its record number, so a frame copied to another
//! place in the file (a duplicated or replayed record) fails its check. The
//! length is stored masked so that zero bytes (space preallocated for the open
//! segment) can never read as a frame: they decode to a length above the limit.

use crate::hashing::{Algorithm, Digest};

/// The first eight bytes of every segment.
pub const MAGIC: &[u8; 8] = b"VDTSEG1\n";
/// The one header version this code writes and reads; any other is refused.
pub const FORMAT_VERSION: u16 = 1;
/// Length field value that marks the footer instead of a record.
pub const FOOTER_MARK: u32 = u32::MAX;
/// XORed into a frame's stored length ("VDT\0"); see the module comment.
pub const LEN_MASK: u32 = 0x5644_5400;
/// Bytes a frame adds before its payload: the masked length and the CRC-32C, 4 bytes each.
pub const FRAME_OVERHEAD: u64 = 8;
/// Bytes of the footer: mark, record count, body length and CRC-32C.
pub const FOOTER_LEN: u64 = 24;
/// The largest record payload the format admits (a store may set a lower bound).
pub const MAX_RECORD_LEN: u32 = 64 << 20;
/// Longest origin (node id), in bytes: its length is stored in one byte.
pub const MAX_ORIGIN_LEN: usize = 255;
/// Sequence numbers and positions above this are refused when read, so no sum
/// of them with a count taken from a file can overflow.
pub const MAX_NUMBER: u64 = 1 << 62;
const HEADER_FIXED_LEN: usize = 8 + 2 + 8 + 8 + 8 + 1 + 32 + 1;

/// What a segment's header says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The node id of the node that wrote the segment.
    pub origin: String,
    /// The segment's place in its origin's hash chain, from 0.
    pub seq: u64,
    /// Record number of the segment's first record (numbers run on across an origin's segments).
    pub first_record: u64,
    /// When the segment was opened, in milliseconds since the Unix epoch (the age bound for sealing
    /// counts from it).
    pub created_unix_ms: u64,
    /// The id of the origin's previous segment; `None` only for `seq == 0`.
    pub prev: Option<Digest>,
}

/// Why bytes are not a well-formed segment, with the offset where it was noticed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at byte {offset}")]
pub struct FormatError {
    /// Byte offset in the segment where the fault was noticed.
    pub offset: u64,
    /// What is wrong, in words for the operator.
    pub reason: String,
}

fn fail<T>(offset: u64, reason: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError {
        offset,
        reason: reason.into(),
    })
}

/// Checks a node id is usable as an origin: 1–255 bytes of printable ASCII without
/// spaces or slashes, so it is safe in file listings, logs and JSON.
pub fn validate_origin(origin: &str) -> Result<(), String> {
    if origin.is_empty() || origin.len() > MAX_ORIGIN_LEN {
        return Err(format!(
            "node id must be 1 to {MAX_ORIGIN_LEN} bytes, got {}",
            origin.len()
        ));
    }
    if let Some(bad) = origin
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '/' || *c == '\\')
    {
        return Err(format!(
            "node id {origin:?} contains {bad:?}: use printable ASCII without spaces or slashes"
        ));
    }
    Ok(())
}

impl Header {
    /// The header's bytes, its CRC-32C last, in the layout of the module comment.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_FIXED_LEN + self.origin.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.first_record.to_le_bytes());
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out.push(u8::from(self.prev.is_some()));
        out.extend_from_slice(self.prev.as_ref().map_or(&[0u8; 32], |d| d.as_bytes()));
        // validate_origin bounds the length to 255 before a header is ever built.
        out.push(self.origin.len().min(MAX_ORIGIN_LEN) as u8);
        out.extend_from_slice(&self.origin.as_bytes()[..self.origin.len().min(MAX_ORIGIN_LEN)]);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a header from the start of `bytes`; returns it and its length.
    pub fn decode(bytes: &[u8]) -> Result<(Header, usize), FormatError> {
        if bytes.len() < HEADER_FIXED_LEN + 4 {
            return fail(
                0,
                format!("segment is {} bytes, shorter than a header", bytes.len()),
            );
        }
        if &bytes[..8] != MAGIC {
            return fail(0, "not a vedette segment (bad magic)");
        }
        let version = u16_at(bytes, 8);
        if version != FORMAT_VERSION {
            return fail(8, format!("unsupported segment format version {version}"));
        }
        let origin_len = usize::from(bytes[HEADER_FIXED_LEN - 1]);
        let crc_at = HEADER_FIXED_LEN + origin_len;
        if bytes.len() < crc_at + 4 {
            return fail(0, "segment ends inside its header");
        }
        if crc32c::crc32c(&bytes[..crc_at]) != u32_at(bytes, crc_at) {
            return fail(crc_at as u64, "header checksum mismatch");
        }
        let origin = std::str::from_utf8(&bytes[HEADER_FIXED_LEN..crc_at])
            .map_err(|_| FormatError {
                offset: HEADER_FIXED_LEN as u64,
                reason: "origin is not UTF-8".into(),
            })?
            .to_string();
        if let Err(reason) = validate_origin(&origin) {
            return fail(HEADER_FIXED_LEN as u64, reason);
        }
        let seq = u64_at(bytes, 10);
        let first_record = u64_at(bytes, 18);
        if seq > MAX_NUMBER || first_record > MAX_NUMBER {
            return fail(10, "sequence or first position out of range");
        }
        let has_prev = bytes[34];
        let prev = match has_prev {
            0 if bytes[35..67].iter().all(|b| *b == 0) => None,
            1 => Some(Digest::new(Algorithm::Blake3, array_at(bytes, 35))),
            _ => return fail(34, "malformed previous-segment field"),
        };
        if (seq == 0) == prev.is_some() {
            return fail(
                34,
                "only the first segment of an origin (seq 0) may lack a previous id",
            );
        }
        let header = Header {
            origin,
            seq,
            first_record,
            created_unix_ms: u64_at(bytes, 26),
            prev,
        };
        Ok((header, crc_at + 4))
    }
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}
fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array_at(bytes, at))
}
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array_at(bytes, at))
}
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array_at(bytes, at))
}

fn frame_crc(record_no: u64, payload: &[u8]) -> u32 {
    let len = payload.len() as u32;
    let mut prefix = [0u8; 12];
    prefix[..8].copy_from_slice(&record_no.to_le_bytes());
    prefix[8..].copy_from_slice(&len.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&prefix), payload)
}

/// Appends one framed record to `out`. The caller has checked `payload.len() < MAX_RECORD_LEN`.
pub fn encode_frame(out: &mut Vec<u8>, record_no: u64, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32 ^ LEN_MASK).to_le_bytes());
    out.extend_from_slice(&frame_crc(record_no, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The footer that seals a segment after `record_count` records whose header and frames take
/// `body_len` bytes.
pub fn encode_footer(record_count: u64, body_len: u64) -> [u8; FOOTER_LEN as usize] {
    let mut out = [0u8; FOOTER_LEN as usize];
    out[..4].copy_from_slice(&FOOTER_MARK.to_le_bytes());
    out[4..12].copy_from_slice(&record_count.to_le_bytes());
    out[12..20].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c(&out[..20]);
    out[20..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Where a record's payload lies in the segment bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSpan {
    /// The record's number within its origin (numbers run on across segments).
    pub record_no: u64,
    /// Byte offset of the payload in the segment.
    pub start: usize,
    /// Length of the payload, in bytes.
    pub len: usize,
}

/// The result of reading a segment front to back.
#[derive(Debug)]
pub struct Scan {
    /// The segment's header, as decoded.
    pub header: Header,
    /// Bytes of the header, CRC-32C included: where the first frame starts.
    pub header_len: usize,
    /// Every intact record, in order, up to the first damage.
    pub records: Vec<RecordSpan>,
    /// Bytes up to the end of the last intact record (or of the footer, if sealed).
    pub valid_len: usize,
    /// Whether a valid footer ends the segment.
    pub sealed: bool,
    /// The first damage found, if any; everything from `valid_len` on is untrusted.
    pub damage: Option<FormatError>,
    /// Frames after the damage whose lengths still chain (an estimate of records lost).
    pub frames_after_damage: u64,
}

/// Reads a segment, stopping at the first frame that does not check out.
/// Fails only if the header itself is unreadable.
pub fn scan(bytes: &[u8]) -> Result<Scan, FormatError> {
    let (header, header_len) = Header::decode(bytes)?;
    let mut at = header_len;
    let mut records = Vec::new();
    let mut record_no = header.first_record;
    let mut sealed = false;
    let mut damage = None;
    while at < bytes.len() {
        if bytes.len() - at < 4 {
            damage = Some(FormatError {
                offset: at as u64,
                reason: "torn frame length".into(),
            });
            break;
        }
        let stored = u32_at(bytes, at);
        if stored == FOOTER_MARK {
            match check_footer(bytes, at, records.len() as u64) {
                Ok(()) => {
                    sealed = true;
                    at += FOOTER_LEN as usize;
                }
                Err(err) => damage = Some(err),
            }
            break;
        }
        let len = stored ^ LEN_MASK;
        if len > MAX_RECORD_LEN || bytes.len() - at < 8 + len as usize {
            damage = Some(FormatError {
                offset: at as u64,
                reason: "torn or oversized frame".into(),
            });
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len as usize];
        if frame_crc(record_no, payload) != u32_at(bytes, at + 4) {
            damage = Some(FormatError {
                offset: at as u64,
                reason: format!("record {record_no} checksum mismatch"),
            });
            break;
        }
        records.push(RecordSpan {
            record_no,
            start: at + 8,
            len: len as usize,
        });
        record_no += 1;
        at += 8 + len as usize;
    }
    let frames_after_damage = if damage.is_some() {
        count_chained_frames(bytes, at)
    } else {
        0
    };
    Ok(Scan {
        header,
        header_len,
        records,
        valid_len: at,
        sealed,
        damage,
        frames_after_damage,
    })
}

fn check_footer(bytes: &[u8], at: usize, records: u64) -> Result<(), FormatError> {
    let end = at + FOOTER_LEN as usize;
    if bytes.len() < end {
        return fail(at as u64, "torn footer");
    }
    if crc32c::crc32c(&bytes[at..at + 20]) != u32_at(bytes, at + 20) {
        return fail(at as u64, "footer checksum mismatch");
    }
    if u64_at(bytes, at + 4) != records || u64_at(bytes, at + 12) != at as u64 {
        return fail(
            at as u64,
            "footer counts disagree with the records before it",
        );
    }
    if bytes.len() != end {
        return fail(
            end as u64,
            format!("{} bytes after the footer", bytes.len() - end),
        );
    }
    Ok(())
}

fn count_chained_frames(bytes: &[u8], mut at: usize) -> u64 {
    let mut count = 0;
    while bytes.len().saturating_sub(at) >= 8 {
        let stored = u32_at(bytes, at);
        let len = stored ^ LEN_MASK;
        if stored == FOOTER_MARK || len > MAX_RECORD_LEN || bytes.len() - at - 8 < len as usize {
            break;
        }
        count += 1;
        at += 8 + len as usize;
    }
    count
}

/// Parses a sealed segment strictly: header, every frame, footer at the very end.
pub fn parse_sealed(bytes: &[u8]) -> Result<Scan, FormatError> {
    let scan = scan(bytes)?;
    if let Some(damage) = scan.damage {
        return Err(damage);
    }
    if !scan.sealed {
        return fail(scan.valid_len as u64, "segment has no footer (not sealed)");
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64) -> Header {
        Header {
            origin: "node-a".into(),
            seq,
            first_record: 10,
            created_unix_ms: 1_700_000_000_000,
            prev: (seq > 0).then(|| Digest::new(Algorithm::Blake3, [9; 32])),
        }
    }

    fn segment(records: &[&[u8]], sealed: bool) -> Vec<u8> {
        let mut out = header(1).encode();
        for (i, r) in records.iter().enumerate() {
            encode_frame(&mut out, 10 + i as u64, r);
        }
        if sealed {
            let body = out.len() as u64;
            out.extend_from_slice(&encode_footer(records.len() as u64, body));
        }
        out
    }

    #[test]
    fn header_round_trips() {
        for seq in [0, 1, MAX_NUMBER] {
            let bytes = header(seq).encode();
            assert_eq!(Header::decode(&bytes).unwrap(), (header(seq), bytes.len()));
        }
    }

    #[test]
    fn sealed_segment_parses_and_records_come_back() {
        let bytes = segment(&[b"a", b"", b"ccc"], true);
        let scan = parse_sealed(&bytes).unwrap();
        let got: Vec<&[u8]> = scan
            .records
            .iter()
            .map(|s| &bytes[s.start..s.start + s.len])
            .collect();
        assert_eq!(got, vec![&b"a"[..], b"", b"ccc"]);
        assert_eq!(scan.records[2].record_no, 12);
    }

    #[test]
    fn duplicated_frame_is_damage() {
        let mut bytes = segment(&[b"same"], false);
        let frame = bytes[bytes.len() - 12..].to_vec();
        bytes.extend_from_slice(&frame);
        let scan = scan(&bytes).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert!(scan.damage.unwrap().reason.contains("checksum"));
    }

    #[test]
    fn every_single_byte_flip_is_caught() {
        let bytes = segment(&[b"hello", b"world"], true);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(parse_sealed(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn torn_tail_keeps_intact_prefix() {
        let bytes = segment(&[b"one", b"two"], false);
        for cut in 0..bytes.len() {
            match scan(&bytes[..cut]) {
                Ok(s) => assert!(s.valid_len <= cut && s.records.len() <= 2),
                Err(_) => assert!(cut < header(1).encode().len()),
            }
        }
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        let mut h = header(1);
        h.seq = MAX_NUMBER + 1;
        assert!(Header::decode(&h.encode()).is_err());
        let mut h = header(1);
        h.first_record = u64::MAX;
        assert!(Header::decode(&h.encode()).is_err());
    }

    #[test]
    fn zero_bytes_never_read_as_a_frame() {
        let mut bytes = segment(&[b"kept"], false);
        let end = bytes.len();
        bytes.extend_from_slice(&[0u8; 4096]);
        let scan = scan(&bytes).unwrap();
        assert_eq!((scan.records.len(), scan.valid_len), (1, end));
        assert!(bytes[scan.valid_len..].iter().all(|b| *b == 0));
    }

    #[test]
    fn origin_rules() {
        assert!(validate_origin("node-a").is_ok());
        assert!(validate_origin("").is_err());
        assert!(validate_origin("a b").is_err());
        assert!(validate_origin("a/b").is_err());
        assert!(validate_origin(&"x".repeat(256)).is_err());
    }
}
