//! The state shared by a store's handles: group commit, sealing, rotation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::catalog::{Catalog, Entry};
use super::error::{Result, StoreError};
use super::format::{self, Header, FOOTER_LEN, FRAME_OVERHEAD};
use super::fscheck::DirLock;
use super::io::{on_disk, AppendFile, Storage};
use super::quarantine::QuarantineReport;
use super::recovery::RecoveryReport;
use super::{Durability, StoreConfig};
use crate::hashing::{Algorithm, Digest};

pub(super) const OPEN_FILE: &str = "open.seg";

/// Durable commits (each one write and one `fdatasync`) and what they carried:
/// `records / syncs` is the group commit's batch size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Durable commits made.
    pub syncs: u64,
    /// Records they carried.
    pub records: u64,
    /// Appends (calls) they carried.
    pub appends: u64,
}

/// A sealed segment held by the store.
#[derive(Clone, Debug)]
pub(super) struct SegmentMeta {
    pub id: Digest,
    pub header: Header,
    pub record_count: u64,
    pub size: u64,
    /// Length of its origin-signature sidecar (`<id>.seg.sig`), 0 if none.
    pub sig_len: u64,
}

/// The open segment's file and the running hash of everything written to it.
pub(super) struct Writer {
    pub file: Box<dyn AppendFile>,
    pub hasher: blake3::Hasher,
    /// How far the file has actually been reserved (`AppendFile::allocate`).
    pub allocated: u64,
}

/// A batch being written: everything a commit needs without the state lock.
struct InFlight {
    writer: Writer,
    batch: Vec<u8>,
    records: u64,
    /// Appends (calls, not records) whose records the batch carries.
    writers: u64,
    outcome: Outcome,
    sync: bool,
    reserve: u64,
}

impl InFlight {
    fn write(&mut self) -> std::io::Result<()> {
        let writer = &mut self.writer;
        if self.reserve > writer.allocated {
            // Reserving ahead only saves work; without it (no space for the whole
            // step, say) the write below still goes through or fails on its own.
            let _ = writer.file.allocate(self.reserve);
            writer.allocated = self.reserve;
        }
        writer.file.append(&self.batch)?;
        if self.sync {
            writer.file.sync_data()?;
        }
        writer.hasher.update(&self.batch);
        Ok(())
    }
}

/// Space for the open segment is reserved in steps of at most this much.
const PREALLOCATE_STEP: u64 = 1 << 20;

/// The longest a leader holds a batch open for released writers (`Shared::gather`).
const MAX_GATHER_WAIT: Duration = Duration::from_millis(2);
/// Released writers a leader waits for at most.
const MAX_GATHER_WRITERS: u64 = 256;

pub(super) struct OpenSegment {
    pub header: Header,
    /// Bytes written (durable mode: and synced); the file's length.
    pub written_len: u64,
    /// The file's length: written bytes plus zero-filled space reserved ahead
    /// (counted against the ceiling as soon as it is reserved).
    pub allocated: u64,
    pub written_records: u64,
    /// `None` while a group commit has it out.
    pub writer: Option<Writer>,
}

type Outcome = Arc<OnceLock<Result<()>>>;

pub(super) struct State {
    pub closed: bool,
    pub failed: Option<String>,
    pub segments: HashMap<Digest, SegmentMeta>,
    pub by_origin: BTreeMap<(String, u64), Digest>,
    pub catalog: Catalog,
    pub open: Option<OpenSegment>,
    pub pending: Vec<u8>,
    pub pending_records: u64,
    /// Appends (calls) whose records are in `pending`.
    pub pending_writers: u64,
    pub pending_outcome: Outcome,
    pub flushing: bool,
    /// A leader is holding the pending batch open for the writers the last
    /// sync released (`Shared::gather`); other appenders wait for its commit.
    pub forming: bool,
    /// Appends seen around the last durable commit: those it carried and those
    /// that queued behind it while it synced.
    pub active_writers: u64,
    /// How long the last durable commit's write and sync took.
    pub last_sync: Duration,
    /// Durable commits made, and the records and appends they carried.
    pub commits: CommitStats,
    /// Interval mode: bytes written but not yet synced.
    pub unsynced: bool,
    pub next_seq: u64,
    pub next_record: u64,
    pub head: Option<Digest>,
    /// Bytes on disk outside segments and catalog: directories, quarantine, unknown files.
    pub other_bytes: u64,
    pub quarantine_bytes: u64,
    pub sealed_bytes: u64,
    /// (origin, seq) of segments an import is writing right now (their room
    /// is already counted in `sealed_bytes`).
    pub importing: std::collections::HashSet<(String, u64)>,
    /// A directory sync after a seal failed; retried by the next check or seal.
    pub dir_sync_owed: bool,
    /// The last append was refused for want of space (ceiling or file system).
    pub full: bool,
    /// Why the store directory is no longer the one opened (deleted, moved).
    pub gone: Option<String>,
    /// Events not yet taken by `Store::take_events`.
    pub events: Vec<StoreEvent>,
    /// Quarantine reports (from disk and from this open's recovery).
    pub quarantine: Vec<QuarantineReport>,
    /// Reopen attempts made by `check` after a stop, and when the next is due.
    pub reopen_attempts: u32,
    pub next_reopen_ms: u64,
    /// The current stop has been reported as an event.
    pub stop_reported: bool,
}

/// Something the store did or found that the runtime should record as evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreEvent {
    /// `quarantined`, `reopened`, `reopen_failed`, `stopped`, `directory_gone`, `evicted`.
    pub kind: String,
    /// What happened, in words for the operator.
    pub detail: String,
    /// When it happened, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl StoreEvent {
    /// An event of `kind` stamped with the current time.
    pub fn new(kind: &str, detail: impl Into<String>) -> StoreEvent {
        StoreEvent {
            kind: kind.to_string(),
            detail: detail.into(),
            unix_ms: now_unix_ms(),
        }
    }
}

/// The identity of the store directory at open (see `Shared::check_home`).
#[derive(Clone, Debug)]
pub(super) struct Home {
    pub dev: u64,
    pub ino: u64,
}

/// Events kept for `take_events` at most; older ones are dropped (and counted).
pub(super) const MAX_EVENTS: usize = 1024;

pub(super) struct Shared {
    pub config: StoreConfig,
    pub storage: Arc<dyn Storage>,
    pub dir: PathBuf,
    pub block: u64,
    pub state: Mutex<State>,
    pub wake: Condvar,
    /// Wakes a leader that is gathering a batch (`Shared::gather`) when an append queues.
    pub gathered: Condvar,
    pub recovery: Mutex<RecoveryReport>,
    /// The directory's identity at open; `None` for simulated storage.
    pub home: Option<Home>,
    /// Opened by a tool with `Store::open_read_only`: every change is refused.
    pub read_only: bool,
    /// Held until `close`; dropping it releases the directory for the next opener.
    pub dir_lock: Mutex<Option<DirLock>>,
}

/// A segment store opened by one process. All methods take `&self` and may be
/// called from many threads; appends that overlap share a commit.
pub struct Store {
    pub(super) shared: Arc<Shared>,
    pub(super) flusher: Option<JoinHandle<()>>,
}

/// What a caller sees of one segment.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// The segment's BLAKE3 id; `None` for the open segment, which has no id until it is sealed.
    pub id: Option<Digest>,
    /// The node that wrote the segment.
    pub origin: String,
    /// Its place in its origin's hash chain, from 0.
    pub seq: u64,
    /// Its length in bytes: the whole file when sealed, the bytes written so far when open.
    pub size: u64,
    /// Whether it is sealed; false only for the local open segment.
    pub sealed: bool,
    /// Record number of its first record (numbers run on across an origin's segments).
    pub first_record: u64,
    /// Records it holds.
    pub records: u64,
    /// When it was opened, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The id of the origin's previous segment; `None` only for seq 0.
    pub prev: Option<Digest>,
    /// Who has acknowledged holding it (peers, the archive, media), in name order; empty until
    /// someone has.
    pub acked_by: Vec<String>,
}

/// Bytes on disk against the ceiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes on disk in the store directory, everything counted at its allocated size.
    pub bytes_used: u64,
    /// The ceiling the store is held under, in bytes.
    pub ceiling_bytes: u64,
    /// Bytes on disk of sealed segments and their origin-signature files.
    pub sealed_bytes: u64,
    /// Bytes on disk of the open segment, space reserved ahead included.
    pub open_bytes: u64,
    /// Held by acknowledged sealed segments: what eviction can free.
    pub evictable_bytes: u64,
    /// Bytes on disk in `quarantine/`: damaged files and their reports.
    pub quarantine_bytes: u64,
    /// Segments held, the open one included.
    pub segments: u64,
}

pub(super) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of State is completed before its guard drops, so a
        // panic elsewhere cannot leave it half-changed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(super) fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.storage
            .sync_dir(dir)
            .map_err(|err| StoreError::io("sync directory", dir, err))
    }

    /// Refuses changes to a store opened read-only.
    pub(super) fn writable(&self, st: &State) -> Result<()> {
        if self.read_only {
            return Err(StoreError::Invalid(format!(
                "store {} is open read-only",
                self.dir.display()
            )));
        }
        self.usable(st)
    }

    pub(super) fn usable(&self, st: &State) -> Result<()> {
        if st.closed {
            return Err(StoreError::Closed);
        }
        if let Some(reason) = &st.failed {
            return Err(StoreError::Failed(reason.clone()));
        }
        Ok(())
    }

    pub(super) fn wait<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.wake
            .wait(st)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the pending batch (and syncs it if `sync`), with the state lock
    /// released during the I/O so more appends can queue for the next batch.
    pub(super) fn commit<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        sync: bool,
    ) -> MutexGuard<'a, State> {
        let Some(mut flight) = self.begin(&mut st, sync) else {
            return st;
        };
        st.flushing = true;
        drop(st);
        let began = Instant::now();
        let result = flight.write();
        let took = began.elapsed();
        let carried = flight.writers;
        let records = flight.records;
        let mut st = self.lock();
        st.flushing = false;
        self.finish(&mut st, flight, result);
        if sync {
            st.last_sync = took;
            st.active_writers = carried + st.pending_writers;
            st.commits.syncs += 1;
            st.commits.records += records;
            st.commits.appends += carried;
        }
        st
    }

    /// Holds the pending batch open, briefly, for the writers the last sync
    /// released, before its leader commits it (docs/contracts.md,
    /// "Durability"). Without this, writers fall into two cohorts that take
    /// turns: those released by one sync come back while the next is already
    /// under way, so each sync carries half of them. Waits at most twice the last
    /// sync's time (and `MAX_GATHER_WAIT`), and only when fewer appends are
    /// queued than took part around the last commit: a lone writer never waits.
    /// Nothing is acknowledged before its sync, so crash safety is untouched.
    pub(super) fn gather<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let want = st.active_writers.min(MAX_GATHER_WRITERS);
        let patience = (st.last_sync * 2).min(MAX_GATHER_WAIT);
        if st.pending_writers >= want || st.pending.is_empty() || patience.is_zero() {
            return st;
        }
        let deadline = Instant::now() + patience;
        st.forming = true;
        while st.pending_writers < want && !st.closed && st.failed.is_none() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .gathered
                .wait_timeout(st, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        st.forming = false;
        // Appenders that waited because a batch was forming look again: another
        // commit (a seal inside a batch, a drain) may have taken this batch
        // meanwhile, and then this leader leads nothing.
        self.wake.notify_all();
        st
    }

    /// Like `commit`, but keeps the lock: used when a batch must not be split
    /// by other appends (rotation in the middle of an `append_many`).
    fn commit_holding_lock(&self, st: &mut State, sync: bool) {
        if let Some(mut flight) = self.begin(st, sync) {
            let result = flight.write();
            self.finish(st, flight, result);
        }
    }

    /// Takes the queued batch and the writer out of the state.
    fn begin(&self, st: &mut State, sync: bool) -> Option<InFlight> {
        let Some(writer) = st.open.as_mut().and_then(|open| open.writer.take()) else {
            // Only reachable after a failure took the writer away: fail what is queued.
            let reason = st
                .failed
                .clone()
                .unwrap_or_else(|| "no open segment to write to".into());
            let _ = std::mem::take(&mut st.pending_outcome).set(Err(StoreError::Failed(reason)));
            st.pending.clear();
            st.pending_records = 0;
            st.pending_writers = 0;
            st.unsynced = false;
            self.wake.notify_all();
            return None;
        };
        Some(InFlight {
            writer,
            batch: std::mem::take(&mut st.pending),
            records: std::mem::replace(&mut st.pending_records, 0),
            writers: std::mem::replace(&mut st.pending_writers, 0),
            outcome: std::mem::take(&mut st.pending_outcome),
            sync,
            reserve: st.open.as_ref().map_or(0, |open| open.allocated),
        })
    }

    /// Puts the writer back and reports the batch's outcome to its appenders.
    fn finish(&self, st: &mut State, flight: InFlight, result: std::io::Result<()>) {
        let InFlight {
            mut writer,
            batch,
            records,
            outcome,
            sync,
            ..
        } = flight;
        match result {
            Ok(()) => {
                st.unsynced = !sync;
                st.full = false;
                if let Some(open) = st.open.as_mut() {
                    open.written_len += batch.len() as u64;
                    open.written_records += records;
                    open.writer = Some(writer);
                }
                let _ = outcome.set(Ok(()));
            }
            Err(err) => {
                let err = StoreError::io("write open segment", &self.path(OPEN_FILE), err);
                let err = self.out_of_space(st, err, batch.len() as u64);
                st.full |= matches!(err, StoreError::Full { .. });
                // Records queued behind the failed batch would follow a gap: fail them too.
                let queued = std::mem::take(&mut st.pending_outcome);
                st.pending.clear();
                st.pending_records = 0;
                st.pending_writers = 0;
                let _ = queued.set(Err(err.clone()));
                let _ = outcome.set(Err(err.clone()));
                let durable = self.config.durability == Durability::Durable;
                match st.open.as_mut() {
                    Some(open) if durable => {
                        let next_record = open.header.first_record + open.written_records;
                        let len = open.written_len;
                        open.allocated = len;
                        writer.allocated = len;
                        let undone = writer
                            .file
                            .truncate(len)
                            .and_then(|()| writer.file.sync_data());
                        match undone {
                            Ok(()) => open.writer = Some(writer),
                            Err(undo) => {
                                st.failed = Some(format!("{err}; undoing it failed: {undo}"))
                            }
                        }
                        st.next_record = next_record;
                        st.unsynced = false;
                    }
                    // Interval mode already returned these positions: stop rather than reuse them.
                    _ => st.failed = Some(err.to_string()),
                }
            }
        }
        self.wake.notify_all();
    }

    /// ENOSPC/EDQUOT become `Full` with the store's numbers; other errors pass through.
    pub(super) fn out_of_space(&self, st: &State, err: StoreError, needed: u64) -> StoreError {
        if !err.is_out_of_space() {
            return err;
        }
        StoreError::Full {
            needed,
            used: self.used(st),
            ceiling: self.config.ceiling_bytes,
            evictable: self.evictable(st),
            detail: Some(format!("the file system is out of space: {err}")),
        }
    }

    /// Waits until no commit is in flight, then commits whatever is queued.
    pub(super) fn drain<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>> {
        loop {
            self.usable(&st)?;
            if st.flushing {
                st = self.wait(st);
            } else if !st.pending.is_empty() || st.unsynced {
                let outcome = Arc::clone(&st.pending_outcome);
                st = self.commit(st, true);
                if let Some(Err(err)) = outcome.get() {
                    return Err(err.clone());
                }
            } else {
                return Ok(st);
            }
        }
    }

    /// Creates the open segment (header written and synced) if there is none.
    fn ensure_open<'a>(&'a self, st: &mut MutexGuard<'a, State>) -> Result<()> {
        if st.open.is_some() {
            return Ok(());
        }
        let header = Header {
            origin: self.config.node_id.clone(),
            seq: st.next_seq,
            first_record: st.next_record,
            created_unix_ms: now_unix_ms(),
            prev: st.head,
        };
        let bytes = header.encode();
        self.ensure_room(
            st,
            on_disk(bytes.len() as u64 + FOOTER_LEN, self.block),
            false,
        )?;
        let path = self.path(OPEN_FILE);
        let created = self.storage.open_append(&path, true).and_then(|mut file| {
            file.append(&bytes)?;
            file.sync_data()?;
            Ok(file)
        });
        let created = created
            .map_err(|err| StoreError::io("create open segment", &path, err))
            .and_then(|file| self.sync_dir(&self.dir).map(|()| file));
        let file = match created {
            Ok(file) => file,
            Err(err) => {
                let _ = self.storage.remove(&path);
                return Err(self.out_of_space(st, err, bytes.len() as u64));
            }
        };
        self.record(
            st,
            Entry::Opened {
                origin: header.origin.clone(),
                seq: header.seq,
                first_record: header.first_record,
            },
        );
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes);
        st.open = Some(OpenSegment {
            header,
            written_len: bytes.len() as u64,
            allocated: bytes.len() as u64,
            written_records: 0,
            writer: Some(Writer {
                file,
                hasher,
                allocated: bytes.len() as u64,
            }),
        });
        Ok(())
    }

    /// Seals the open segment if it has records: footer, sync, rename to its id,
    /// sync the directory. Returns the new segment's id.
    pub(super) fn seal_locked<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
    ) -> Result<(MutexGuard<'a, State>, Option<Digest>)> {
        let mut st = self.drain(st)?;
        let id = self.seal_in_place(&mut st)?;
        Ok((st, id))
    }

    /// Seals without releasing the lock. No commit may be in flight; what is
    /// queued is written and synced first.
    fn seal_in_place(&self, st: &mut State) -> Result<Option<Digest>> {
        if st.flushing {
            return Err(StoreError::Failed(
                "seal while a commit is in flight".into(),
            ));
        }
        if !st.pending.is_empty() {
            let outcome = Arc::clone(&st.pending_outcome);
            self.commit_holding_lock(st, true);
            if let Some(Err(err)) = outcome.get() {
                return Err(err.clone());
            }
        }
        let Some(mut open) = st.open.take() else {
            return Ok(None);
        };
        let Some(mut writer) = open.writer.take() else {
            st.open = Some(open);
            return Err(StoreError::Failed("open segment has no writer".into()));
        };
        if open.written_records == 0 {
            open.writer = Some(writer);
            st.open = Some(open);
            return Ok(None);
        }
        if let Some(reason) = self.home_problem() {
            open.writer = Some(writer);
            st.open = Some(open);
            self.mark_gone(st, &reason);
            return Err(StoreError::Failed(reason));
        }
        let footer = format::encode_footer(open.written_records, open.written_len);
        let path = self.path(OPEN_FILE);
        // Give back the reserved space first: a sealed segment is exactly its bytes.
        if let Err(err) = writer
            .file
            .truncate(open.written_len)
            .and_then(|()| writer.file.append(&footer))
            .and_then(|()| writer.file.sync_data())
        {
            let err = StoreError::io("write footer", &path, err);
            keep_open_after_failed_seal(st, open, writer, &err);
            return Err(self.out_of_space(st, err, FOOTER_LEN));
        }
        writer.hasher.update(&footer);
        let id = Digest::new(Algorithm::Blake3, *writer.hasher.finalize().as_bytes());
        let sealed_path = self.path(&format!("{}.seg", id.hex()));
        if let Err(err) = self.storage.rename(&path, &sealed_path) {
            // Not sealed after all: take the footer off again and keep writing.
            let err = StoreError::io("rename sealed segment", &path, err);
            keep_open_after_failed_seal(st, open, writer, &err);
            return Err(err);
        }
        if self.sync_dir(&self.dir).is_err() {
            // The rename is done but not yet durable. If power is lost first,
            // recovery finds the footer in open.seg and finishes the seal; the
            // sync is retried by the next check, seal or segment creation.
            st.dir_sync_owed = true;
        }
        let size = open.written_len + FOOTER_LEN;
        self.record(
            st,
            Entry::Sealed {
                id,
                origin: open.header.origin.clone(),
                seq: open.header.seq,
                next_record: open.header.first_record + open.written_records,
            },
        );
        st.sealed_bytes += on_disk(size, self.block);
        st.head = Some(id);
        st.next_seq = open.header.seq + 1;
        st.by_origin
            .insert((open.header.origin.clone(), open.header.seq), id);
        st.segments.insert(
            id,
            SegmentMeta {
                id,
                sig_len: 0,
                header: open.header,
                record_count: open.written_records,
                size,
            },
        );
        Ok(Some(id))
    }

    /// Writes a bookkeeping entry to the catalog, best effort: without it the
    /// store works on, only a later deletion of the segment it names would be
    /// found by the chain check alone.
    pub(super) fn record(&self, st: &mut State, entry: Entry) {
        let growth = on_disk(st.catalog.len + Catalog::entry_len(&entry), self.block)
            - on_disk(st.catalog.len, self.block);
        if self.used(st) + growth > self.config.ceiling_bytes {
            return;
        }
        let storage = Arc::clone(&self.storage);
        let _ = st.catalog.append(storage.as_ref(), entry);
    }

    /// Why the store directory is no longer the one opened, if it is not.
    pub(super) fn home_problem(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let home = self.home.as_ref()?;
        match std::fs::metadata(&self.dir) {
            Ok(m) if m.dev() == home.dev && m.ino() == home.ino && m.nlink() > 0 => None,
            Ok(_) => Some("the store directory was replaced by another one".into()),
            Err(_) => Some("the store directory was deleted or moved".into()),
        }
    }

    /// Stops appends: the directory is gone, so nothing more may be written
    /// into files no one can find.
    pub(super) fn mark_gone(&self, st: &mut State, reason: &str) {
        if st.gone.is_none() {
            self.event(st, StoreEvent::new("directory_gone", reason));
        }
        st.gone = Some(reason.to_string());
        st.failed = Some(reason.to_string());
        st.stop_reported = true;
    }

    /// Adds an event for `take_events` (bounded).
    pub(super) fn event(&self, st: &mut State, event: StoreEvent) {
        if st.events.len() >= MAX_EVENTS {
            st.events.remove(0);
        }
        st.events.push(event);
    }

    /// The open segment has records and `bytes` more would take it past the size bound.
    fn open_is_full(&self, st: &State, bytes: u64) -> bool {
        let Some(open) = &st.open else { return false };
        let assigned = open.written_len + st.pending.len() as u64;
        open.written_records + st.pending_records > 0
            && assigned + bytes + FOOTER_LEN > self.config.segment_max_bytes
    }

    /// The open segment has records and has reached the age bound.
    fn open_is_old(&self, st: &State) -> bool {
        let Some(open) = &st.open else { return false };
        open.written_records + st.pending_records > 0
            && self.config.segment_max_age.is_some_and(|age| {
                now_unix_ms().saturating_sub(open.header.created_unix_ms) >= age.as_millis() as u64
            })
    }

    /// Queues `records` behind the open segment (sealing and opening segments
    /// as bounds are reached) and returns the first record number and the
    /// outcome of the commit that will carry the last of them. The batch gets
    /// consecutive positions: the lock is not given up while it is queued.
    pub(super) fn enqueue<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        records: &[&[u8]],
    ) -> Result<(MutexGuard<'a, State>, u64, Outcome)> {
        self.writable(&st)?;
        if let Some(big) = records
            .iter()
            .find(|r| r.len() as u64 > self.config.max_record_bytes)
        {
            return Err(StoreError::Invalid(format!(
                "record of {} bytes exceeds max_record_bytes ({})",
                big.len(),
                self.config.max_record_bytes
            )));
        }
        if self.open_is_old(&st) {
            st = self.seal_locked(st)?.0;
        }
        let framed: u64 = records
            .iter()
            .map(|r| FRAME_OVERHEAD + r.len() as u64)
            .sum();
        if self.open_is_full(&st, framed) {
            // Sealing inside the batch needs the writer: wait for the commit in flight now.
            while st.flushing {
                st = self.wait(st);
                self.usable(&st)?;
            }
        }
        // Admit the whole batch up front (frames plus a block per segment it
        // may open), so a batch is refused before any of it is queued.
        let assigned = st.open.as_ref().map_or(0, |o| o.written_len) + st.pending.len() as u64;
        let rotations = (assigned + framed + FOOTER_LEN) / self.config.segment_max_bytes;
        let estimate = on_disk(assigned + framed + FOOTER_LEN, self.block)
            - on_disk(assigned + FOOTER_LEN, self.block)
            + rotations * self.block
            + if st.open.is_none() { self.block } else { 0 };
        self.ensure_room(&mut st, estimate.min(self.config.ceiling_bytes), false)?;
        let mark = (st.pending.len(), st.pending_records, st.next_record);
        let mut sealed_inside = false;
        let first = st.next_record;
        for record in records {
            let framed = FRAME_OVERHEAD + record.len() as u64;
            let queued = (|| {
                if self.open_is_full(&st, framed) && !st.flushing {
                    self.seal_in_place(&mut st)?;
                    sealed_inside = true;
                }
                self.ensure_open(&mut st)?;
                self.reserve(&mut st, framed)
            })();
            if let Err(err) = queued {
                if !sealed_inside {
                    // Nothing of this batch has been written: take it back out.
                    st.pending.truncate(mark.0);
                    st.pending_records = mark.1;
                    st.next_record = mark.2;
                }
                return Err(err);
            }
            let record_no = st.next_record;
            format::encode_frame(&mut st.pending, record_no, record);
            st.pending_records += 1;
            st.next_record += 1;
        }
        st.pending_writers += 1;
        if st.forming {
            self.gathered.notify_one();
        }
        let outcome = Arc::clone(&st.pending_outcome);
        Ok((st, first, outcome))
    }

    /// Admits `framed` more bytes into the open segment. Space is reserved
    /// ahead in steps (and counted at once), so most appends need no check and
    /// the leader's `fallocate` keeps the file size still while records land.
    fn reserve(&self, st: &mut MutexGuard<'_, State>, framed: u64) -> Result<()> {
        let Some(open) = st.open.as_ref() else {
            return Ok(());
        };
        let assigned = open.written_len + st.pending.len() as u64;
        let need = assigned + framed + FOOTER_LEN;
        let counted = open.allocated.max(assigned + FOOTER_LEN);
        if need <= counted {
            return Ok(());
        }
        let step = PREALLOCATE_STEP.min(self.config.segment_max_bytes);
        let target = on_disk(need.div_ceil(step) * step, self.block)
            .min(on_disk(self.config.segment_max_bytes.max(need), self.block));
        let growth = on_disk(target, self.block).saturating_sub(on_disk(counted, self.block));
        let target = match self.ensure_room(st, growth, false) {
            Ok(()) => target,
            // No room for a whole step: reserve only what this record needs.
            Err(StoreError::Full { .. }) => {
                let growth = on_disk(need, self.block).saturating_sub(on_disk(counted, self.block));
                self.ensure_room(st, growth, false)?;
                on_disk(need, self.block)
            }
            Err(err) => return Err(err),
        };
        if let Some(open) = st.open.as_mut() {
            open.allocated = target.max(open.allocated);
        }
        Ok(())
    }
}

/// A seal failed part-way: take the footer off again so the segment stays
/// open and writable; if even that fails, the store stops (it cannot say
/// what is on disk).
fn keep_open_after_failed_seal(
    st: &mut State,
    mut open: OpenSegment,
    mut writer: Writer,
    err: &StoreError,
) {
    match writer
        .file
        .truncate(open.written_len)
        .and_then(|()| writer.file.sync_data())
    {
        Ok(()) => {
            writer.allocated = open.written_len;
            open.allocated = open.written_len;
            open.writer = Some(writer);
            st.open = Some(open);
        }
        Err(undo) => st.failed = Some(format!("{err}; undoing it failed: {undo}")),
    }
}
