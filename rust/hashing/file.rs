//! Hashing whole files: memory-mapped, and BLAKE3 spread over threads when the
//! file is large enough for that to pay off.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::digest::Algorithm;
use super::hasher::Hasher;
use super::Digest;

/// Most threads one file hash may use, whatever the caller asks for.
pub const MAX_FILE_HASH_THREADS: usize = 16;

/// Below this size a file is read, not mapped: a mapping costs more than it saves.
const MMAP_MIN_BYTES: u64 = 64 * 1024;

/// Below this size BLAKE3 stays on one thread (the blake3 crate's own advice
/// is that multithreading starts to pay off around 128 KiB).
const PARALLEL_MIN_BYTES: u64 = 1 << 20;

const READ_CHUNK: usize = 64 * 1024;

/// A file could not be hashed: it could not be opened, read or mapped, or no thread pool could be
/// started for it.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash {path}: {source}")]
pub struct FileHashError {
    /// The file that was to be hashed.
    pub path: PathBuf,
    /// The cause: the operating system's error, or the thread pool's.
    #[source]
    pub source: io::Error,
}

/// Hashes a file's contents.
///
/// `threads`: `None` uses every available core (capped at
/// [`MAX_FILE_HASH_THREADS`]); `Some(1)` stays on the calling thread. Only
/// BLAKE3 is parallel; SHA-256 is inherently sequential.
///
/// Regular files of 64 KiB or more are memory-mapped. As with any mapped
/// read, a file truncated by another process while it is hashed can fault;
/// hash files that are not being written.
pub fn hash_file(
    path: &Path,
    algorithm: Algorithm,
    threads: Option<usize>,
) -> Result<Digest, FileHashError> {
    let with_path = |source| FileHashError {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(with_path)?;
    let metadata = file.metadata().map_err(with_path)?;
    let mut hasher = Hasher::new(algorithm);
    if metadata.is_file() && metadata.len() >= MMAP_MIN_BYTES {
        // Mapping a file is unsafe in Rust's terms: another process may change it.
        // SAFETY: the map is read-only and dropped before returning; see the
        // doc comment for the concurrent-truncation caveat shared by all mmap readers.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(with_path)?;
        let parallel = effective_threads(threads);
        match &mut hasher {
            Hasher::Blake3(blake) if parallel > 1 && metadata.len() >= PARALLEL_MIN_BYTES => {
                thread_pool(parallel)
                    .map_err(with_path)?
                    .install(|| blake.update_rayon(&map));
            }
            _ => hasher.update(&map),
        }
    } else {
        read_into(file, &mut hasher).map_err(with_path)?;
    }
    Ok(hasher.digest())
}

fn read_into(mut file: File, hasher: &mut Hasher) -> io::Result<()> {
    let mut buffer = vec![0u8; READ_CHUNK];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

fn effective_threads(requested: Option<usize>) -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    requested
        .unwrap_or(available)
        .clamp(1, MAX_FILE_HASH_THREADS)
}

/// One pool per thread count, made on first use and kept: a pool costs thread
/// spawns, and the set of counts is bounded by [`MAX_FILE_HASH_THREADS`].
fn thread_pool(threads: usize) -> io::Result<Arc<rayon_core::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon_core::ThreadPool>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(Default::default);
    let mut pools = pools
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(pool) = pools.get(&threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon_core::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("vedette-hash-{i}"))
        .build()
        .map_err(io::Error::other)?;
    let pool = Arc::new(pool);
    pools.insert(threads, Arc::clone(&pool));
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::hashing::{blake3, sha256};

    #[test]
    fn file_hash_equals_one_shot_at_every_path() {
        // Sizes on each side of the read/mmap and single/parallel thresholds.
        for size in [0usize, 1, 65_535, 65_536, 1_048_575, 1_048_576, 3_000_001] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut file = tempfile::NamedTempFile::new().unwrap();
            file.write_all(&data).unwrap();
            for threads in [None, Some(1), Some(2), Some(1000)] {
                let got = hash_file(file.path(), Algorithm::Blake3, threads).unwrap();
                assert_eq!(got, blake3(&data), "size {size} threads {threads:?}");
            }
            let got = hash_file(file.path(), Algorithm::Sha256, None).unwrap();
            assert_eq!(got, sha256(&data), "size {size}");
        }
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let err = hash_file(Path::new("/nonexistent/x"), Algorithm::Blake3, None).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/nonexistent/x"));
    }

    #[test]
    fn directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(hash_file(dir.path(), Algorithm::Sha256, None).is_err());
    }
}
