//! The storage the segment store writes through.
//!
//! Every byte the store puts on disk goes through [`Storage`], so tests can
//! swap in [`super::sim::CrashSim`], which forgets unsynced writes and
//! un-fsynced directory changes at a simulated power cut. [`RealStorage`] is
//! the file system.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One directory entry as the store sees it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The entry's file name, without the directory.
    pub name: String,
    /// Whether the entry is a directory.
    pub is_dir: bool,
    /// Bytes the entry occupies on disk (allocated blocks, as `du` counts them).
    pub allocated: u64,
    /// The file's length in bytes.
    pub len: u64,
}

/// A file the store appends to. The handle keeps its own end of data, which
/// may lie before the file's length when space was preallocated.
pub trait AppendFile: Send {
    /// Writes all of `data` at the end of data and moves the end (not yet durable).
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Starts writing what was written so far to the disk without waiting
    /// (no durability promised: `sync_data` still decides). Lets a batch of
    /// files reach the disk together, so their `sync_data` calls find the work
    /// done. Doing nothing is correct.
    fn start_writeback(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Cuts the file to `len` bytes and puts the end of data there.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Moves the end of data to `end` (at open, past the records already there).
    fn set_end(&mut self, end: u64);
    /// Reserves the file up to `len` bytes (zero-filled). Appends inside
    /// reserved space do not change the file's size, so `fdatasync` has no
    /// size update to journal. A file system without support is no error.
    fn allocate(&mut self, len: u64) -> io::Result<()>;
    /// How many names the file has (0 once it was deleted while open).
    fn links(&self) -> io::Result<u64> {
        Ok(1)
    }
}

/// The file-system operations the store needs, and nothing else.
pub trait Storage: Send + Sync {
    /// Creates the directory `path`, private to the user (0700).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Every entry of `dir` (its subdirectories are not entered).
    fn list(&self, dir: &Path) -> io::Result<Vec<Entry>>;
    /// The whole contents of the file `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens `path` for appending; creates it (failing if it exists) when `create` is set.
    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn AppendFile>>;
    /// Creates `path` (failing if it exists) holding `data`, with write-back
    /// started, and returns it open: not durable before its `sync_data`.
    fn create_with(&self, path: &Path, data: &[u8]) -> io::Result<Box<dyn AppendFile>> {
        self.open_append(path, true)?;
        self.fill(path, data)
    }
    /// Writes `data` into the empty file `path`, with write-back started, and
    /// returns it open: not durable before its `sync_data`. (Creating a file
    /// takes its directory's lock and filling it does not, so a batch creates
    /// its files one by one and fills them side by side.)
    fn fill(&self, path: &Path, data: &[u8]) -> io::Result<Box<dyn AppendFile>> {
        let mut file = self.open_append(path, false)?;
        file.append(data)?;
        file.start_writeback()?;
        Ok(file)
    }
    /// Cuts the file `path` to `len` bytes and makes that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Renames `from` to `to`, replacing any file there; durable once the directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`; durable once the directory is synced.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes renames, creations and removals in `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Bytes `path` occupies on disk (a directory's own blocks).
    fn allocated(&self, path: &Path) -> io::Result<u64>;
    /// The allocation unit: a file of n bytes occupies n rounded up to this.
    fn block_size(&self) -> u64;
    /// Takes back a reserved descriptor given away when the process ran out
    /// (called from the store's periodic check). Doing nothing is correct.
    fn restore_reserve(&self) {}
}

/// The real file system. Files are created 0600 and directories 0700.
///
/// Transient errors never stop the store on their own (docs/contracts.md,
/// "Transient resource errors"): `EINTR` and `EAGAIN` are retried; an open
/// that fails with `EMFILE`/`ENFILE` gives back the reserved descriptor (an
/// open `/dev/null`) and tries once more; the store directory is synced
/// through a descriptor held from open, so a seal and its directory sync need
/// no new descriptor at all.
pub struct RealStorage {
    block_size: u64,
    /// The store directory and a descriptor of it held while the store is open.
    home: Option<(PathBuf, File)>,
    /// A descriptor kept in reserve, released when the process runs out.
    spare: std::sync::Mutex<Option<File>>,
}

impl RealStorage {
    /// The file system, with an allocation unit of `block_size` bytes (at least 512); no directory
    /// held yet.
    pub fn new(block_size: u64) -> RealStorage {
        RealStorage {
            block_size: block_size.max(512),
            home: None,
            spare: std::sync::Mutex::new(File::open("/dev/null").ok()),
        }
    }

    /// Holds a descriptor of `dir` so that syncing it never needs a new one.
    pub fn holding_dir(mut self, dir: &Path) -> io::Result<RealStorage> {
        let file = retry(|| File::open(dir))?;
        self.home = Some((dir.to_path_buf(), file));
        Ok(self)
    }

    /// Runs `open`, retrying once with the reserved descriptor given back
    /// when the process (or the system) is out of descriptors.
    fn with_fd<T>(&self, mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        match retry(&mut open) {
            Err(err) if out_of_descriptors(&err) => {
                let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
                if spare.is_none() {
                    return Err(err);
                }
                drop(spare);
                let result = retry(&mut open);
                self.restore_spare();
                result
            }
            other => other,
        }
    }

    /// Takes the reserved descriptor again if it was given away (best effort).
    pub fn restore_spare(&self) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.is_none() {
            *spare = File::open("/dev/null").ok();
        }
    }

    /// True while the reserved descriptor is held.
    pub fn has_spare(&self) -> bool {
        self.spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// How often a transient error (`EINTR`, `EAGAIN`) is retried before it is reported.
const TRANSIENT_RETRIES: u32 = 8;

/// True for errors that say "try again" rather than "this failed".
pub fn is_transient(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == libc::EINTR || code == libc::EAGAIN)
        || err.kind() == io::ErrorKind::Interrupted
}

/// True when the process or the system has no descriptor left.
pub fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE)
}

/// Runs `op` again while it fails with a transient error (a few times, with
/// a short pause after the first retries).
pub fn retry<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut attempt = 0;
    loop {
        match op() {
            Err(err) if is_transient(&err) && attempt < TRANSIENT_RETRIES => {
                if attempt >= 2 {
                    std::thread::sleep(std::time::Duration::from_millis(1 << attempt.min(6)));
                }
                attempt += 1;
            }
            other => return other,
        }
    }
}

struct RealFile {
    file: File,
    end: u64,
}

impl AppendFile for RealFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let (file, end) = (&self.file, self.end);
        retry(|| file.write_all_at(data, end))?;
        self.end += data.len() as u64;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        retry(|| self.file.sync_data())
    }
    fn start_writeback(&mut self) -> io::Result<()> {
        start_writeback(&self.file)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        retry(|| self.file.set_len(len))?;
        self.end = len;
        Ok(())
    }
    fn links(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.nlink())
    }
    fn set_end(&mut self, end: u64) {
        self.end = end;
    }
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)` over the whole file: queues its
/// dirty pages for write-back and returns. Linux only; elsewhere nothing.
// libc, because rustix lacks `sync_file_range`; the store's only `unsafe`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain system call on a descriptor `file` keeps open; no memory is passed.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Offsets, lengths and buffer addresses of `O_DIRECT` writes are multiples
/// of this (the largest logical block size in common use).
const DIRECT_ALIGN: usize = 4096;
/// `O_DIRECT` writes go through a reused buffer of this size per thread.
const DIRECT_CHUNK: usize = 1 << 20;

thread_local! {
    static DIRECT_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes the whole `DIRECT_ALIGN` blocks at the start of `data` into the
/// existing file `path` with `O_DIRECT`; returns how many bytes that is, 0
/// when the file system refuses `O_DIRECT` (nothing written then).
#[cfg(target_os = "linux")]
fn write_direct(path: &Path, data: &[u8]) -> io::Result<u64> {
    let aligned = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    if aligned == 0 {
        return Ok(0);
    }
    let refused = |err: &io::Error| err.raw_os_error() == Some(libc::EINVAL);
    let file = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if refused(&err) => return Ok(0),
        Err(err) => return Err(err),
    };
    DIRECT_BUFFER.with(|cell| {
        let mut buffer = cell.borrow_mut();
        if buffer.len() < DIRECT_CHUNK + DIRECT_ALIGN {
            buffer.resize(DIRECT_CHUNK + DIRECT_ALIGN, 0);
        }
        let start = buffer.as_ptr().align_offset(DIRECT_ALIGN);
        if start >= DIRECT_ALIGN {
            return Ok(0);
        }
        let window = &mut buffer[start..start + DIRECT_CHUNK];
        let mut at = 0;
        while at < aligned {
            let n = (aligned - at).min(DIRECT_CHUNK);
            window[..n].copy_from_slice(&data[at..at + n]);
            match file.write_all_at(&window[..n], at as u64) {
                Ok(()) => at += n,
                Err(err) if at == 0 && refused(&err) => return Ok(0),
                Err(err) => return Err(err),
            }
        }
        Ok(aligned as u64)
    })
}

#[cfg(not(target_os = "linux"))]
fn write_direct(_path: &Path, _data: &[u8]) -> io::Result<u64> {
    Ok(0)
}

impl Storage for RealStorage {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new().mode(0o700).create(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for entry in self.with_fd(|| fs::read_dir(dir))? {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Removed between readdir and stat: not there any more.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            out.push(Entry {
                name: entry.file_name().to_string_lossy().into_owned(),
                is_dir: meta.is_dir(),
                allocated: meta.blocks() * 512,
                len: meta.len(),
            });
        }
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.with_fd(|| fs::read(path))
    }

    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn AppendFile>> {
        let file = self.with_fd(|| {
            OpenOptions::new()
                .write(true)
                .create_new(create)
                .mode(0o600)
                .open(path)
        })?;
        let end = file.metadata()?.len();
        Ok(Box::new(RealFile { file, end }))
    }

    /// Writes the block-aligned part of `data` past the page cache
    /// (`O_DIRECT`) and the rest through it. Copying a whole segment into
    /// fresh page-cache pages costs more CPU than the disk needs to take it
    /// (about 3 ms a MiB on the virtual machines measured, against 0.1 ms
    /// through a reused buffer); a segment written once and read rarely has
    /// no use for the cache. Where `O_DIRECT` is refused, all of it goes
    /// through the cache.
    fn fill(&self, path: &Path, data: &[u8]) -> io::Result<Box<dyn AppendFile>> {
        let file = self.with_fd(|| OpenOptions::new().write(true).open(path))?;
        let direct = write_direct(path, data)?;
        let mut file = RealFile { file, end: direct };
        file.append(&data[direct as usize..])?;
        file.start_writeback()?;
        Ok(Box::new(file))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = self.with_fd(|| OpenOptions::new().write(true).open(path))?;
        retry(|| file.set_len(len))?;
        retry(|| file.sync_all())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        retry(|| fs::rename(from, to))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        retry(|| fs::remove_file(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if let Some((home, file)) = &self.home {
            if home == dir {
                return retry(|| file.sync_all());
            }
        }
        let file = self.with_fd(|| File::open(dir))?;
        retry(|| file.sync_all())
    }

    fn allocated(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.blocks() * 512)
    }

    fn block_size(&self) -> u64 {
        self.block_size
    }

    fn restore_reserve(&self) {
        self.restore_spare();
    }
}

/// `n` rounded up to whole blocks: what a file of `n` bytes occupies.
pub fn on_disk(n: u64, block: u64) -> u64 {
    n.div_ceil(block) * block
}

/// The path of the file `name` in the directory `dir`.
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// A view of a store that changes nothing on disk, for tools that inspect a
/// store another process may have open. Recovery runs against it unchanged:
/// removals, truncations and writes are skipped, and a rename is remembered
/// so the file can still be read under its new name.
pub struct ReadOnly<S: Storage> {
    inner: S,
    renamed: std::sync::Mutex<std::collections::HashMap<PathBuf, PathBuf>>,
}

impl<S: Storage> ReadOnly<S> {
    /// A view of `inner` that changes nothing on disk.
    pub fn new(inner: S) -> ReadOnly<S> {
        ReadOnly {
            inner,
            renamed: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

struct DiscardFile;

impl AppendFile for DiscardFile {
    fn append(&mut self, _data: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn truncate(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn set_end(&mut self, _end: u64) {}
    fn allocate(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

impl<S: Storage> Storage for ReadOnly<S> {
    fn create_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<Entry>> {
        match self.inner.list(dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            other => other,
        }
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let alias = self
            .renamed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned();
        match alias.map(|from| self.inner.read(&from)) {
            Some(Ok(bytes)) => Ok(bytes),
            _ => self.inner.read(path),
        }
    }
    fn open_append(&self, _path: &Path, _create: bool) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(DiscardFile))
    }
    fn truncate(&self, _path: &Path, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.renamed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(to.to_path_buf(), from.to_path_buf());
        Ok(())
    }
    fn remove(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn allocated(&self, path: &Path) -> io::Result<u64> {
        self.inner.allocated(path)
    }
    fn block_size(&self) -> u64 {
        self.inner.block_size()
    }
}
