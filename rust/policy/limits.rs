//! Every bound the policy engine applies, in one typed place with defaults.

use std::time::Duration;

/// Bounds on a bundle read from a directory or a `.tar.gz`.
///
/// Enforces the bundle size rules of `docs/contracts.md`: a bundle that
/// crosses any of them is refused whole, naming the file and the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleLimits {
    /// Bytes of the `.tar.gz` itself.
    pub max_compressed_bytes: u64,
    /// Bytes of the tar stream after decompression (headers included), or of
    /// all files of a directory: the zip-bomb bound.
    pub max_decompressed_bytes: u64,
    /// Entries in the archive or directory tree (files and directories).
    pub max_entries: usize,
    /// Bytes of one file.
    pub max_file_bytes: u64,
    /// Bytes of one path inside the bundle.
    pub max_path_bytes: usize,
    /// Segments of one path inside the bundle.
    pub max_path_depth: usize,
}

impl Default for BundleLimits {
    fn default() -> BundleLimits {
        BundleLimits {
            max_compressed_bytes: 32 * 1024 * 1024,
            max_decompressed_bytes: 128 * 1024 * 1024,
            max_entries: 10_000,
            max_file_bytes: 64 * 1024 * 1024,
            max_path_bytes: 1024,
            max_path_depth: 32,
        }
    }
}

/// Bounds on one evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalLimits {
    /// Wall-clock time one evaluation may take before it is stopped and denied.
    pub time_limit: Duration,
}

impl EvalLimits {
    /// The longest time limit a caller may set.
    pub const MAX_SECONDS: f64 = 3600.0;

    /// Limits with a time limit of `seconds`, which must be in (0, 3600].
    pub fn from_seconds(seconds: f64) -> Result<EvalLimits, String> {
        if !seconds.is_finite() || seconds <= 0.0 || seconds > Self::MAX_SECONDS {
            return Err(format!(
                "time_limit must be a number of seconds in (0, 3600], got {seconds}"
            ));
        }
        Ok(EvalLimits {
            time_limit: Duration::from_secs_f64(seconds),
        })
    }
}

impl Default for EvalLimits {
    fn default() -> EvalLimits {
        EvalLimits {
            time_limit: Duration::from_millis(100),
        }
    }
}

/// Bounds on an agent manifest.
pub const MAX_AGENT_MANIFEST_BYTES: usize = 1024 * 1024;
