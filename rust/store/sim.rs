//! A crash-simulating [`Storage`] for tests, in the spirit of SQLite's test VFS.
//!
//! Files live in memory. Writes become durable only at `sync_data`; creations,
//! renames and removals only when their directory is synced. [`CrashSim::crash`]
//! models a power cut: each file keeps its synced bytes plus a random prefix of
//! what was written after (the last part possibly garbage, a torn sector), and
//! each directory keeps its synced entries plus a random prefix of the changes
//! made after.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::io::{AppendFile, Entry, Storage};

type Inode = u64;

/// A change to a file's bytes since its last sync.
#[derive(Clone)]
enum FileOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Clone, Default)]
struct Data {
    synced: Vec<u8>,
    current: Vec<u8>,
    unsynced: Vec<FileOp>,
}

fn apply(bytes: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write(offset, data) => {
            let end = *offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[*offset as usize..end].copy_from_slice(data);
        }
        FileOp::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

impl Data {
    fn change(&mut self, op: FileOp) {
        apply(&mut self.current, &op);
        self.unsynced.push(op);
    }
    fn sync(&mut self) {
        self.synced = self.current.clone();
        self.unsynced.clear();
    }
}

#[derive(Clone)]
enum DirOp {
    Link(PathBuf, Inode),
    Unlink(PathBuf),
}

#[derive(Default)]
struct State {
    data: HashMap<Inode, Data>,
    names: BTreeMap<PathBuf, Inode>,
    synced_names: BTreeMap<PathBuf, Inode>,
    pending: BTreeMap<PathBuf, Vec<DirOp>>,
    dirs: BTreeSet<PathBuf>,
    next_inode: Inode,
    write_fault: Option<i32>,
    fault_after: Option<(u64, i32)>,
    bytes_written: u64,
}

/// The simulated disk; clone the `Arc` to reopen a store on it after a crash.
pub struct CrashSim {
    state: Mutex<State>,
    block: u64,
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl CrashSim {
    /// An empty simulated disk whose allocation unit is `block` bytes (files occupy whole blocks).
    pub fn new(block: u64) -> Arc<CrashSim> {
        Arc::new(CrashSim {
            state: Mutex::new(State::default()),
            block,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test thread that panicked holding the lock leaves consistent data behind.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes every later write, sync and directory change fail with `errno` (None: stop).
    pub fn set_write_fault(&self, errno: Option<i32>) {
        self.lock().write_fault = errno;
    }

    /// Lets `ops` more writes, syncs, creations, renames and directory syncs
    /// succeed, then fails every later one with `errno`: a process stopped at
    /// an exact point of its work, before a [`CrashSim::crash`].
    pub fn set_fault_after(&self, ops: u64, errno: i32) {
        self.lock().fault_after = Some((ops, errno));
    }

    /// Bytes handed to `append` so far (for write-amplification checks).
    pub fn bytes_written(&self) -> u64 {
        self.lock().bytes_written
    }

    /// A power cut. `choose(n)` returns a number in `0..=n` (the test's randomness).
    pub fn crash(&self, choose: &mut dyn FnMut(u64) -> u64) {
        let mut st = self.lock();
        let st = &mut *st;
        for (dir, ops) in std::mem::take(&mut st.pending) {
            let keep = choose(ops.len() as u64) as usize;
            for op in ops.into_iter().take(keep) {
                match op {
                    DirOp::Link(path, inode) => {
                        st.synced_names.insert(path, inode);
                    }
                    DirOp::Unlink(path) => {
                        st.synced_names.remove(&path);
                    }
                }
            }
            let _ = dir;
        }
        st.names = st.synced_names.clone();
        for data in st.data.values_mut() {
            // The changes made since the last sync reach the disk in order, up
            // to a random point; the last one that does may be torn.
            let mut kept = data.synced.clone();
            let ops = std::mem::take(&mut data.unsynced);
            let whole = choose(ops.len() as u64) as usize;
            for op in &ops[..whole] {
                apply(&mut kept, op);
            }
            if let Some(FileOp::Write(offset, bytes)) = ops.get(whole) {
                let part = choose(bytes.len() as u64) as usize;
                let mut torn = bytes[..part].to_vec();
                if choose(2) == 0 {
                    for (i, byte) in torn.iter_mut().rev().take(16).enumerate() {
                        *byte = (choose(255) as u8) ^ (i as u8);
                    }
                }
                apply(&mut kept, &FileOp::Write(*offset, torn));
            }
            data.synced = kept.clone();
            data.current = kept;
        }
    }

    fn fault(&self, st: &mut State) -> io::Result<()> {
        if let Some((left, errno)) = st.fault_after {
            if left == 0 {
                st.write_fault = Some(errno);
                st.fault_after = None;
            } else {
                st.fault_after = Some((left - 1, errno));
            }
        }
        match st.write_fault {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn link(st: &mut State, path: &Path, inode: Inode) {
        st.names.insert(path.to_path_buf(), inode);
        st.pending
            .entry(parent(path))
            .or_default()
            .push(DirOp::Link(path.to_path_buf(), inode));
    }

    fn unlink(st: &mut State, path: &Path) {
        st.names.remove(path);
        st.pending
            .entry(parent(path))
            .or_default()
            .push(DirOp::Unlink(path.to_path_buf()));
    }
}

struct SimFile {
    sim: Arc<CrashSim>,
    inode: Inode,
    end: u64,
}

impl AppendFile for SimFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.sim.lock();
        self.sim.fault(&mut st)?;
        st.bytes_written += bytes.len() as u64;
        let data = st.data.entry(self.inode).or_default();
        data.change(FileOp::Write(self.end, bytes.to_vec()));
        self.end += bytes.len() as u64;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.sim.lock();
        let dirty = st
            .data
            .get(&self.inode)
            .is_some_and(|d| d.unsynced.iter().any(|op| matches!(op, FileOp::Write(..))));
        if dirty {
            // Like a real disk: a sync with nothing new to write cannot run out of space.
            self.sim.fault(&mut st)?;
        }
        st.data.entry(self.inode).or_default().sync();
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.sim.lock();
        st.data
            .entry(self.inode)
            .or_default()
            .change(FileOp::SetLen(len));
        self.end = len;
        Ok(())
    }
    fn set_end(&mut self, end: u64) {
        self.end = end;
    }
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.sim.lock();
        self.sim.fault(&mut st)?;
        let data = st.data.entry(self.inode).or_default();
        if (data.current.len() as u64) < len {
            data.change(FileOp::SetLen(len));
        }
        Ok(())
    }
}

/// The handle the store uses; holds the simulated disk.
pub struct SimStorage(pub Arc<CrashSim>);

impl Storage for SimStorage {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        // Directories themselves are durable at once: the store creates them at open only.
        self.0.lock().dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<Entry>> {
        let st = self.0.lock();
        let mut out = Vec::new();
        for sub in st.dirs.iter().filter(|d| parent(d) == dir) {
            out.push(Entry {
                name: sub
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                is_dir: true,
                allocated: self.0.block,
                len: self.0.block,
            });
        }
        for (path, inode) in st.names.iter().filter(|(p, _)| parent(p) == dir) {
            let len = st.data.get(inode).map_or(0, |d| d.current.len() as u64);
            out.push(Entry {
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                is_dir: false,
                allocated: len.div_ceil(self.0.block) * self.0.block,
                len,
            });
        }
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.0.lock();
        let inode = st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(st
            .data
            .get(inode)
            .map(|d| d.current.clone())
            .unwrap_or_default())
    }

    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn AppendFile>> {
        let mut st = self.0.lock();
        let inode = match (st.names.get(path).copied(), create) {
            (Some(_), true) => return Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            (Some(inode), false) => inode,
            (None, false) => return Err(not_found(path)),
            (None, true) => {
                self.0.fault(&mut st)?;
                st.next_inode += 1;
                let inode = st.next_inode;
                st.data.insert(inode, Data::default());
                CrashSim::link(&mut st, path, inode);
                inode
            }
        };
        let end = st.data.get(&inode).map_or(0, |d| d.current.len() as u64);
        Ok(Box::new(SimFile {
            sim: Arc::clone(&self.0),
            inode,
            end,
        }))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.0.lock();
        let inode = *st.names.get(path).ok_or_else(|| not_found(path))?;
        let data = st.data.entry(inode).or_default();
        data.change(FileOp::SetLen(len));
        data.sync();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.0.lock();
        self.0.fault(&mut st)?;
        let inode = *st.names.get(from).ok_or_else(|| not_found(from))?;
        CrashSim::unlink(&mut st, from);
        CrashSim::link(&mut st, to, inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.0.lock();
        if !st.names.contains_key(path) {
            return Err(not_found(path));
        }
        CrashSim::unlink(&mut st, path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.0.lock();
        self.0.fault(&mut st)?;
        for op in st.pending.remove(dir).unwrap_or_default() {
            match op {
                DirOp::Link(path, inode) => {
                    st.synced_names.insert(path, inode);
                }
                DirOp::Unlink(path) => {
                    st.synced_names.remove(&path);
                }
            }
        }
        Ok(())
    }

    fn allocated(&self, _path: &Path) -> io::Result<u64> {
        Ok(self.0.block)
    }

    fn block_size(&self) -> u64 {
        self.0.block
    }
}
