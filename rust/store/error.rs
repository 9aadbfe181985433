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
        needed: u64,
        used: u64,
        ceiling: u64,
        evictable: u64,
        detail: Option<String>,
    },
    #[error("store {path} is locked by another open store (one process, one store: INV-01)")]
    Locked { path: PathBuf },
    #[error("store directory {path} refused by the {check} check: {path} {detail}")]
    Refused {
        check: String,
        path: PathBuf,
        detail: String,
    },
    #[error("corrupt segment: {0}")]
    Corrupt(String),
    #[error("no segment {0} in the store")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("store is closed")]
    Closed,
    #[error("store stopped after a failure it could not undo ({0}); reopen it to recover")]
    Failed(String),
}

impl StoreError {
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
