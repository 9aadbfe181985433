use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything the segment store can refuse or fail with. Each message names
/// what is wrong and where. `Clone` so one failed group commit can be reported
/// to every appender that shared it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// INV-04: the write would cross the ceiling, or the file system itself is full.
    #[error(
        "store full: {needed} more bytes needed, {used} of {ceiling} bytes used, \
         {evictable} bytes held by acknowledged segments that could be evicted{}",
        detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    Full {
        /// Bytes on disk the write would have added.
        needed: u64,
        /// Bytes on disk in the store directory now.
        used: u64,
        /// The configured ceiling, in bytes.
        ceiling: u64,
        /// Bytes held by acknowledged sealed segments, which eviction could free.
        evictable: u64,
        /// More about the cause: the file system's own error, or no room to record an eviction.
        detail: Option<String>,
    },
    /// INV-01: another open store (in this process or another) holds the
    /// directory's lock.
    #[error("store {path} is locked by another open store (one process, one store: INV-01)")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// INV-01: the directory fails a check made at open; nothing was written to it.
    #[error("store directory {path} refused by the {check} check: {path} {detail}")]
    Refused {
        /// Which check refused it: `directory`, `local-filesystem`, `owner` or `permissions`.
        check: String,
        /// The store directory.
        path: PathBuf,
        /// What the check found, worded to follow the path.
        detail: String,
    },
    /// Bytes that are not a well-formed segment, or not the segment they were
    /// named as (an id that does not match the bytes, a broken chain).
    #[error("corrupt segment: {0}")]
    Corrupt(String),
    /// The store holds no segment with this id (never stored, or evicted).
    #[error("no segment {0} in the store")]
    NotFound(String),
    /// The request cannot be carried out as asked: a setting out of bounds, a
    /// malformed id, a record over the size bound, a write to a store opened
    /// read-only. The message says which; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// A file operation failed; [`StoreError::is_out_of_space`] tells a full
    /// disk or quota apart.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, as the message words it (`read segment`, `sync directory`, …).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error, shared by every appender of a failed group commit.
        source: Arc<io::Error>,
    },
    /// The store was closed; nothing more can be done with this handle.
    #[error("store is closed")]
    Closed,
    /// The store has stopped writing: a write failed and could not be undone,
    /// or the directory was deleted, moved or replaced. Records still queued
    /// when it stopped (or when it was reopened) fail with it. Reopening
    /// recovers the store from what is on disk.
    #[error("store stopped after a failure it could not undo ({0}); reopen it to recover")]
    Failed(String),
}

impl StoreError {
    /// An [`StoreError::Io`] for operation `op` on `path`.
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    /// True when the operating system reported the disk or quota as full.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(code)
                if code == rustix::io::Errno::NOSPC.raw_os_error()
                    || code == rustix::io::Errno::DQUOT.raw_os_error()))
    }
}

pub(super) type Result<T, E = StoreError> = std::result::Result<T, E>;
