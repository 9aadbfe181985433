//! The segment store: durable, tamper-evident evidence under a hard disk ceiling.
//!
//! Records are framed and checksummed into the open segment; group commit
//! makes concurrent appends share one write and one `fdatasync`. A segment is
//! sealed at a size or age bound: a footer is written and the file is renamed
//! to the BLAKE3 of its bytes, its [`HashRole::SegmentId`](crate::hashing::HashRole).
//! Each header names the previous segment of its origin, a hash chain per node.
//!
//! Layout of a store directory (0700, one process at a time):
//!
//! ```text
//! LOCK                  flock held while open (INV-01)
//! meta                  node id and ceiling of the last open, for tools
//! catalog               acknowledgements and evictions (see catalog.rs)
//! open.seg              the local open segment, if any
//! <64 hex>.seg          sealed segments (local and imported), named by BLAKE3
//! *.tmp                 writes in progress; removed at open
//! quarantine/           damaged files moved aside at open, never served
//! ```
//!
//! The format is specified in `docs/contracts.md` ("Segment store format").

mod api;
mod catalog;
mod ceiling;
mod commit;
mod error;
mod exchange;
pub mod format;
mod fscheck;
mod import;
pub mod io;
mod quarantine;
pub mod queue;
mod recovery;
pub mod sim;
mod verify;

pub use api::{CommitStats, SegmentInfo, Store, StoreHealth, Usage, MAX_SIGNATURE_BYTES};
pub use commit::StoreEvent;
pub use error::StoreError;
pub use exchange::SegmentStatus;
pub use fscheck::{shared_fs_name, SHARED_FS_MAGIC};
pub use import::{SealedSegment, VerifiedSegment};
pub use quarantine::{QuarantineAck, QuarantineReport};
pub use recovery::RecoveryReport;
pub use verify::VerifyReport;

use std::time::Duration;

/// When `append` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After the record is on stable storage (`fdatasync` done). The default.
    Durable,
    /// At once; records are synced at least every `interval`. Lossy: a power
    /// cut loses up to one interval of records that `append` already returned.
    Interval(Duration),
}

/// How a store is opened. Limits live here, not as literals in the code.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// INV-04: bytes on disk never exceed this, everything in the directory counted.
    pub ceiling_bytes: u64,
    /// The origin written into local segment headers.
    pub node_id: String,
    /// When `append` returns: after `fdatasync` (the default) or at once, with syncs on an
    /// interval.
    pub durability: Durability,
    /// Seal the open segment before it would grow past this many bytes.
    pub segment_max_bytes: u64,
    /// Seal a non-empty open segment once it is this old (checked at each append).
    pub segment_max_age: Option<Duration>,
    /// The largest record `append` accepts.
    pub max_record_bytes: u64,
    /// Usage fraction of the ceiling above which health is degraded.
    pub high_water: f64,
}

/// The smallest ceiling a store accepts: room for its files and a few segments.
pub const MIN_CEILING_BYTES: u64 = 64 << 10;

impl StoreConfig {
    /// The defaults for a store under `ceiling_bytes` whose local segments name `node_id`: durable
    /// appends, segments sealed at an eighth of the ceiling (16 KiB to 16 MiB), no age bound,
    /// records up to 1 MiB, health degraded above 80% of the ceiling.
    pub fn new(ceiling_bytes: u64, node_id: impl Into<String>) -> StoreConfig {
        StoreConfig {
            ceiling_bytes,
            node_id: node_id.into(),
            durability: Durability::Durable,
            // Small against the ceiling, so eviction frees space in useful steps.
            segment_max_bytes: (ceiling_bytes / 8).clamp(16 << 10, 16 << 20),
            segment_max_age: None,
            max_record_bytes: 1 << 20,
            high_water: 0.8,
        }
    }

    /// Refuses a configuration a store cannot honour, naming the setting and its bounds
    /// ([`StoreError::Invalid`]): a bad node id, a ceiling under [`MIN_CEILING_BYTES`], a segment
    /// bound outside 4096 bytes to half the ceiling, a record bound outside 1 byte to
    /// [`format::MAX_RECORD_LEN`], a high-water mark outside (0, 1], or a sync interval of 0 or
    /// over 60 s.
    pub fn validate(&self) -> Result<(), StoreError> {
        format::validate_origin(&self.node_id).map_err(StoreError::Invalid)?;
        if self.ceiling_bytes < MIN_CEILING_BYTES {
            return Err(StoreError::Invalid(format!(
                "ceiling_bytes must be at least {MIN_CEILING_BYTES}, got {}",
                self.ceiling_bytes
            )));
        }
        if self.segment_max_bytes < 4096 || self.segment_max_bytes > self.ceiling_bytes / 2 {
            return Err(StoreError::Invalid(format!(
                "segment_max_bytes must be between 4096 and half the ceiling ({}), got {}",
                self.ceiling_bytes / 2,
                self.segment_max_bytes
            )));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > u64::from(format::MAX_RECORD_LEN) {
            return Err(StoreError::Invalid(format!(
                "max_record_bytes must be between 1 and {}, got {}",
                format::MAX_RECORD_LEN,
                self.max_record_bytes
            )));
        }
        if !(self.high_water > 0.0 && self.high_water <= 1.0) {
            return Err(StoreError::Invalid(format!(
                "high_water must be above 0 and at most 1, got {}",
                self.high_water
            )));
        }
        if let Durability::Interval(every) = self.durability {
            if every.is_zero() || every > Duration::from_secs(60) {
                return Err(StoreError::Invalid(format!(
                    "the sync interval must be between 1 ms and 60 s, got {every:?}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod import_tests;
#[cfg(test)]
mod tests;
