//! The public face of the segment store: [`Store`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::catalog::{Catalog, Entry};
use super::commit::{SegmentMeta, Shared, OPEN_FILE};
use super::error::{Result, StoreError};
use super::format::validate_origin;
use super::fscheck::{self, DirLock};
use super::io::{on_disk, ReadOnly, RealStorage, Storage};
use super::recovery::{self, RecoveryReport};
use super::{Durability, StoreConfig};
use crate::hashing::{require_role, Digest, HashRole};

pub use super::commit::{CommitStats, SegmentInfo, Store, Usage};

/// The largest origin-signature sidecar the store keeps.
pub const MAX_SIGNATURE_BYTES: usize = 4096;

/// Interval mode: queued bytes are written (not synced) once this many pile up…
const INTERVAL_WRITE_BYTES: usize = 1 << 20;
/// …and appends wait while this many are queued behind a write in flight.
const INTERVAL_QUEUE_MAX_BYTES: usize = 8 << 20;

impl Store {
    /// Opens the store in `dir` on the real file system: INV-01 checks, the
    /// exclusive lock, then recovery.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store> {
        config.validate()?;
        fscheck::check_dir(dir)?;
        let lock = DirLock::acquire(dir)?;
        let storage = RealStorage::new(fscheck::block_size(dir)?)
            .holding_dir(dir)
            .map_err(|err| StoreError::io("open store directory", dir, err))?;
        let mut shared = recovery::open(Arc::new(storage), dir, config, Some(lock))?;
        shared.home = std::fs::metadata(dir).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            super::commit::Home {
                dev: m.dev(),
                ino: m.ino(),
            }
        });
        recovery::write_meta(&shared)?;
        Store::start(shared)
    }

    /// Opens `dir` for reading only, with the node id and ceiling it was last
    /// opened with: no lock (another process may hold the store), and nothing
    /// on disk changes. Recovery still runs in memory, so damage is reported
    /// and damaged segments are left out, but nothing is cut, moved or removed.
    /// What it reads is a snapshot that a live writer may move on from.
    pub fn open_read_only(dir: &Path) -> Result<Store> {
        let (node_id, ceiling) = Store::recorded_config(dir)?;
        let config = StoreConfig::new(ceiling, node_id);
        let storage = Arc::new(ReadOnly::new(RealStorage::new(fscheck::block_size(dir)?)));
        let mut shared = recovery::open(storage, dir, config, None)?;
        shared.read_only = true;
        Ok(Store {
            shared: Arc::new(shared),
            flusher: None,
        })
    }

    /// The node id and ceiling `dir` was last opened with (for tools).
    pub fn recorded_config(dir: &Path) -> Result<(String, u64)> {
        recovery::read_meta(&RealStorage::new(4096), dir)
    }

    /// Opens a store on any storage (tests use the crash simulator); no
    /// directory checks and no lock.
    pub fn open_with(storage: Arc<dyn Storage>, dir: &Path, config: StoreConfig) -> Result<Store> {
        if storage.list(dir).is_err() {
            storage
                .create_dir(dir)
                .map_err(|err| StoreError::io("create store directory", dir, err))?;
        }
        let shared = recovery::open(storage, dir, config, None)?;
        recovery::write_meta(&shared)?;
        Store::start(shared)
    }

    fn start(shared: Shared) -> Result<Store> {
        let shared = Arc::new(shared);
        {
            // A ceiling lowered since the last open: evict what may be evicted.
            let mut st = shared.lock();
            let _ = shared.ensure_room(&mut st, 0, false);
        }
        let flusher = match shared.config.durability {
            Durability::Durable => None,
            Durability::Interval(every) => {
                let weak = Arc::downgrade(&shared);
                let spawned = std::thread::Builder::new()
                    .name("vedette-store-sync".into())
                    .spawn(move || sync_every(&weak, every));
                Some(spawned.map_err(|err| StoreError::io("start sync thread", &shared.dir, err))?)
            }
        };
        Ok(Store { shared, flusher })
    }

    /// The configuration the store runs under; for a read-only open, the recorded node id and
    /// ceiling with every other setting at its default.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What recovery found and did at the latest open or reopen.
    pub fn recovery(&self) -> RecoveryReport {
        self.shared
            .recovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Appends one record; in durable mode returns once it is on stable
    /// storage. Returns the record's position (its record number).
    pub fn append(&self, record: &[u8]) -> Result<u64> {
        self.append_many(&[record])
    }

    /// Appends records as one batch with consecutive positions; returns the first.
    /// Either all are admitted or none (a refused batch queues nothing).
    pub fn append_many(&self, records: &[&[u8]]) -> Result<u64> {
        let shared = &*self.shared;
        let (mut st, first, outcome) = match shared.enqueue(shared.lock(), records) {
            Ok(queued) => queued,
            Err(err) => {
                if matches!(err, StoreError::Full { .. }) {
                    shared.lock().full = true;
                }
                return Err(err);
            }
        };
        match shared.config.durability {
            Durability::Interval(_) => {
                // Hand big batches to the OS now; the sync thread makes them durable.
                // A writer faster than the disk waits rather than queue without
                // bound (INV-07).
                while st.flushing && st.pending.len() >= INTERVAL_QUEUE_MAX_BYTES {
                    st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.pending.len() >= INTERVAL_WRITE_BYTES && !st.flushing {
                    st = shared.commit(st, false);
                }
                drop(st);
                match outcome.get() {
                    Some(Err(err)) => Err(err.clone()),
                    _ => Ok(first),
                }
            }
            Durability::Durable => {
                // Whoever finds no commit under way leads the next one: first it
                // gathers the writers the last sync released, then (the state
                // looked at again, as another commit may have taken the batch
                // meanwhile) it commits.
                let mut gathered = false;
                loop {
                    if let Some(result) = outcome.get() {
                        return result.clone().map(|()| first);
                    }
                    shared.usable(&st)?;
                    if st.flushing || st.forming {
                        st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                    } else if !gathered {
                        gathered = true;
                        st = shared.gather(st);
                    } else {
                        st = shared.commit(st, true);
                    }
                }
            }
        }
    }

    /// Makes everything appended so far durable (useful in interval mode).
    pub fn flush(&self) -> Result<()> {
        self.shared.drain(self.shared.lock()).map(|_| ())
    }

    /// Seals the open segment now, if it has records. Returns the new segment id.
    pub fn seal(&self) -> Result<Option<Digest>> {
        let st = self.shared.lock();
        self.shared.writable(&st)?;
        self.shared.seal_locked(st).map(|(_, id)| id)
    }

    /// Records, durably, that `by` (a peer or upstream) holds sealed segment `id`;
    /// acknowledged segments may be evicted under the ceiling.
    pub fn ack(&self, id: &Digest, by: &str) -> Result<()> {
        self.ack_all(std::slice::from_ref(id), by)
    }

    /// [`Store::ack`] for several segments with one catalog write and one sync
    /// (an uplink acknowledging a window of segments at once). Every id must
    /// be a segment the store holds, or nothing is recorded.
    pub fn ack_all(&self, ids: &[Digest], by: &str) -> Result<()> {
        for id in ids {
            require_role(id, HashRole::SegmentId)
                .map_err(|err| StoreError::Invalid(err.to_string()))?;
        }
        validate_origin(by).map_err(|e| StoreError::Invalid(format!("acknowledger: {e}")))?;
        let shared = &*self.shared;
        let mut st = shared.lock();
        shared.writable(&st)?;
        if let Some(missing) = ids.iter().find(|id| !st.segments.contains_key(*id)) {
            return Err(StoreError::NotFound(missing.to_string()));
        }
        let mut queued = HashSet::with_capacity(ids.len());
        let entries: Vec<Entry> = ids
            .iter()
            .filter(|id| {
                !st.catalog
                    .acks
                    .get(*id)
                    .is_some_and(|held| held.contains(by))
            })
            .filter(|id| queued.insert(**id))
            .map(|id| Entry::Ack {
                id: *id,
                by: by.to_string(),
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let added: u64 = entries.iter().map(Catalog::entry_len).sum();
        let growth =
            on_disk(st.catalog.len + added, shared.block) - on_disk(st.catalog.len, shared.block);
        shared.ensure_room(&mut st, growth, true)?;
        let storage = Arc::clone(&shared.storage);
        st.catalog
            .append_all(storage.as_ref(), entries)
            .map_err(|err| shared.out_of_space(&st, err, growth))?;
        // The acknowledged segments can be evicted for the next write, so the
        // store no longer refuses appends: health must not keep saying so
        // until some call happens to succeed (docs/operations.md).
        st.full = false;
        Ok(())
    }

    /// Every segment held: sealed ones by origin and sequence, then the open one.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = self.shared.lock();
        let mut out: Vec<SegmentInfo> = st
            .by_origin
            .values()
            .filter_map(|id| st.segments.get(id))
            .map(|meta| info(meta, st.catalog.acks.get(&meta.id)))
            .collect();
        if let Some(open) = &st.open {
            out.push(SegmentInfo {
                id: None,
                origin: open.header.origin.clone(),
                seq: open.header.seq,
                size: open.written_len,
                sealed: false,
                first_record: open.header.first_record,
                records: open.written_records,
                created_unix_ms: open.header.created_unix_ms,
                prev: open.header.prev,
                acked_by: Vec::new(),
            });
        }
        out
    }

    /// Durable commits made since the store was opened, and what they carried.
    pub fn commit_stats(&self) -> CommitStats {
        self.shared.lock().commits
    }

    /// Bytes on disk now, by kind, against the ceiling.
    pub fn usage(&self) -> Usage {
        let shared = &*self.shared;
        let st = shared.lock();
        Usage {
            bytes_used: shared.used(&st),
            ceiling_bytes: shared.config.ceiling_bytes,
            sealed_bytes: st.sealed_bytes,
            open_bytes: st
                .open
                .as_ref()
                .map_or(0, |o| on_disk(o.written_len.max(o.allocated), shared.block)),
            evictable_bytes: shared.evictable(&st),
            quarantine_bytes: st.quarantine_bytes,
            segments: st.segments.len() as u64 + u64::from(st.open.is_some()),
        }
    }

    /// Per origin: the newest sealed segment held and the next sequence number expected.
    pub fn chain_heads(&self) -> Vec<(String, u64, Digest)> {
        let st = self.shared.lock();
        let mut heads: Vec<(String, u64, Digest)> = Vec::new();
        for ((origin, seq), id) in &st.by_origin {
            match heads.last_mut() {
                Some(last) if &last.0 == origin => *last = (origin.clone(), *seq, *id),
                _ => heads.push((origin.clone(), *seq, *id)),
            }
        }
        heads
    }

    /// Syncs what is queued and closes; later calls fail with `Closed`.
    pub fn close(&self) -> Result<()> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        if st.closed {
            return Ok(());
        }
        // Imports writing now finish before the directory is given up.
        while !st.importing.is_empty() {
            st = shared.wait(st);
        }
        let result = shared.drain(st).map(|mut st| {
            st.closed = true;
        });
        let mut st = shared.lock();
        st.closed = true;
        shared.wake.notify_all();
        drop(st);
        *shared.dir_lock.lock().unwrap_or_else(|p| p.into_inner()) = None;
        result
    }

    /// Runs recovery again in this process: after a stop (a failure the
    /// store could not undo) this brings it back without a restart. What is
    /// queued fails; the open segment is re-read, damage is quarantined with
    /// a report. Refused while the directory is not the one opened.
    pub fn reopen(&self) -> Result<()> {
        let shared = &*self.shared;
        if shared.read_only {
            return Err(StoreError::Invalid("store is open read-only".into()));
        }
        let mut st = shared.lock();
        if st.closed {
            return Err(StoreError::Closed);
        }
        while st.flushing || !st.importing.is_empty() {
            st = shared.wait(st);
        }
        if let Some(reason) = shared.home_problem() {
            shared.mark_gone(&mut st, &reason);
            return Err(StoreError::Failed(reason));
        }
        let queued = std::mem::take(&mut st.pending_outcome);
        st.pending.clear();
        st.pending_records = 0;
        st.pending_writers = 0;
        let _ = queued.set(Err(StoreError::Failed("the store was reopened".into())));
        st.open = None;
        let before = st.failed.clone();
        match recovery::recover(shared.storage.as_ref(), &shared.dir, &shared.config) {
            Ok((mut fresh, report)) => {
                let mut events = std::mem::take(&mut st.events);
                events.append(&mut fresh.events);
                fresh.events = events;
                *st = fresh;
                let detail = match before {
                    Some(reason) => format!("reopened after: {reason}"),
                    None => "reopened".to_string(),
                };
                shared.event(&mut st, super::commit::StoreEvent::new("reopened", detail));
                *shared.recovery.lock().unwrap_or_else(|p| p.into_inner()) = report;
                let _ = shared.ensure_room(&mut st, 0, false);
                shared.wake.notify_all();
                Ok(())
            }
            Err(err) => {
                st.failed = Some(format!("reopen failed: {err}"));
                shared.event(
                    &mut st,
                    super::commit::StoreEvent::new("reopen_failed", err.to_string()),
                );
                Err(err)
            }
        }
    }

    /// The periodic check (cheap; call it about once a second): takes back a
    /// reserved descriptor, retries a deferred directory sync, makes sure the
    /// directory is still the one opened and the open segment still has a
    /// name, refreshes quarantine acknowledgements, and reopens a stopped
    /// store (with backoff). Returns the health after the check.
    pub fn check(&self) -> StoreHealth {
        let shared = &*self.shared;
        shared.storage.restore_reserve();
        let mut reopen = false;
        {
            let mut st = shared.lock();
            if !st.closed && !shared.read_only {
                if st.dir_sync_owed && shared.sync_dir(&shared.dir).is_ok() {
                    st.dir_sync_owed = false;
                }
                if st.gone.is_none() {
                    if let Some(reason) = shared.home_problem() {
                        shared.mark_gone(&mut st, &reason);
                    }
                }
                let unlinked = st
                    .open
                    .as_ref()
                    .and_then(|o| o.writer.as_ref())
                    .is_some_and(|w| matches!(w.file.links(), Ok(0)));
                if unlinked && st.failed.is_none() {
                    let reason = "the open segment was deleted while in use".to_string();
                    st.failed = Some(reason.clone());
                    shared.event(&mut st, super::commit::StoreEvent::new("stopped", reason));
                }
                if let Some(reason) = st.failed.clone() {
                    if !st.stop_reported {
                        st.stop_reported = true;
                        shared.event(&mut st, super::commit::StoreEvent::new("stopped", reason));
                    }
                    let now = super::commit::now_unix_ms();
                    if now >= st.next_reopen_ms
                        && (st.gone.is_none() || shared.home_problem().is_none())
                    {
                        let backoff = 1000u64 << st.reopen_attempts.min(6);
                        st.reopen_attempts += 1;
                        st.next_reopen_ms = now + backoff;
                        reopen = true;
                    }
                }
            }
            if st.quarantine.iter().any(|r| r.acknowledged.is_none()) {
                let storage = Arc::clone(&shared.storage);
                super::quarantine::refresh_acks(storage.as_ref(), &shared.dir, &mut st.quarantine);
            }
        }
        if reopen {
            let _ = self.reopen();
        }
        self.health()
    }

    /// The store's state for health checks, status and metrics.
    pub fn health(&self) -> StoreHealth {
        let shared = &*self.shared;
        let st = shared.lock();
        let used = shared.used(&st);
        let ceiling = shared.config.ceiling_bytes;
        let mut sealed = 0u64;
        let mut acked = 0u64;
        let mut unacked_bytes = 0u64;
        let mut acked_bytes = 0u64;
        let mut oldest: Option<u64> = None;
        for meta in st.segments.values() {
            sealed += 1;
            if st
                .catalog
                .acks
                .get(&meta.id)
                .is_some_and(|by| !by.is_empty())
            {
                acked += 1;
                acked_bytes += on_disk(meta.size, shared.block);
            } else {
                unacked_bytes += on_disk(meta.size, shared.block);
                let t = meta.header.created_unix_ms;
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        let unacked_q = st
            .quarantine
            .iter()
            .filter(|r| r.acknowledged.is_none())
            .count() as u64;
        let fraction = used as f64 / ceiling.max(1) as f64;
        // Segments acknowledged off-node are evicted the moment room is needed:
        // only what is still waiting to leave is pressure (docs/operations.md).
        let pressure = used.saturating_sub(acked_bytes) as f64 / ceiling.max(1) as f64;
        let high_water = shared.config.high_water;
        let state = if st.gone.is_some() {
            "directory_gone"
        } else if st.closed || st.failed.is_some() {
            "stopped"
        } else if shared.read_only {
            "read_only"
        } else if st.full {
            "full"
        } else if unacked_q > 0 {
            "damaged"
        } else {
            "ok"
        };
        let mut reasons = Vec::new();
        match state {
            "directory_gone" | "stopped" => reasons.push(format!(
                "evidence store stopped: {}",
                st.gone
                    .clone()
                    .or_else(|| st.failed.clone())
                    .unwrap_or_else(|| "closed".into())
            )),
            "read_only" => reasons.push("evidence store is open read-only".into()),
            "full" => reasons.push("evidence store full: calls are denied".into()),
            _ => {}
        }
        if unacked_q > 0 {
            reasons.push(format!(
                "{unacked_q} quarantine report(s) not acknowledged (vedette store quarantine list)"
            ));
        }
        reasons.push(format!(
            "evidence store {:.0}% full; {acked} of {sealed} sealed segments acknowledged off-node",
            pressure * 100.0
        ));
        let verdict = match state {
            "directory_gone" | "stopped" | "read_only" | "full" => "failing",
            "damaged" => "degraded",
            _ if pressure >= high_water => "degraded",
            _ => "ok",
        };
        StoreHealth {
            state: state.to_string(),
            verdict: verdict.to_string(),
            reason: reasons.join("; "),
            usage_fraction: fraction,
            high_water,
            bytes_used: used,
            ceiling_bytes: ceiling,
            unacked_sealed_bytes: unacked_bytes,
            sealed_segments: sealed,
            acked_segments: acked,
            oldest_unacked_age_s: oldest
                .map(|t| super::commit::now_unix_ms().saturating_sub(t) as f64 / 1000.0),
            quarantine_unacked: unacked_q,
        }
    }

    /// Returns and clears the events recorded since the last call.
    pub fn take_events(&self) -> Vec<super::commit::StoreEvent> {
        std::mem::take(&mut self.shared.lock().events)
    }

    /// Every quarantine report, acknowledgements refreshed from disk.
    pub fn quarantine(&self) -> Vec<super::quarantine::QuarantineReport> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        let storage = Arc::clone(&shared.storage);
        super::quarantine::refresh_acks(storage.as_ref(), &shared.dir, &mut st.quarantine);
        st.quarantine.clone()
    }

    /// Records that `by` acknowledged quarantine report `id` (a durable
    /// `quarantine/<id>.ack`; the evidence stays). Works beside a running
    /// store: it takes no lock.
    pub fn acknowledge_quarantine_at(dir: &Path, id: &str, by: &str) -> Result<()> {
        let storage = RealStorage::new(4096);
        super::quarantine::acknowledge(&storage, dir, id, by)
    }

    /// Stores `blob` (opaque to the store, at most [`MAX_SIGNATURE_BYTES`])
    /// as the origin signature of sealed segment `id`: `<id>.seg.sig`,
    /// written durably (temp file, sync, rename, directory sync), counted
    /// against the ceiling, removed with its segment at eviction. Replaces an
    /// earlier one.
    pub fn put_origin_signature(&self, id: &Digest, blob: &[u8]) -> Result<()> {
        require_role(id, HashRole::SegmentId)
            .map_err(|err| StoreError::Invalid(err.to_string()))?;
        check_signature(blob)?;
        let shared = &*self.shared;
        let mut st = shared.lock();
        shared.writable(&st)?;
        let Some(old) = st.segments.get(id).map(|m| m.sig_len) else {
            return Err(StoreError::NotFound(id.to_string()));
        };
        let growth = on_disk(blob.len() as u64, shared.block);
        // The new file exists beside the old one until the rename.
        shared.ensure_room(&mut st, growth, false)?;
        let path = shared.path(&format!("{}.seg.sig", id.hex()));
        let tmp = shared.path(&format!("{}.seg.sig.tmp", id.hex()));
        let _ = shared.storage.remove(&tmp);
        let written = shared
            .storage
            .open_append(&tmp, true)
            .and_then(|mut file| {
                file.append(blob)?;
                file.sync_data()
            })
            .and_then(|()| shared.storage.rename(&tmp, &path));
        if let Err(err) = written {
            let _ = shared.storage.remove(&tmp);
            return Err(shared.out_of_space(
                &st,
                StoreError::io("write origin signature", &path, err),
                growth,
            ));
        }
        shared.sync_dir(&shared.dir)?;
        st.sealed_bytes = st.sealed_bytes.saturating_sub(on_disk(old, shared.block)) + growth;
        if let Some(meta) = st.segments.get_mut(id) {
            meta.sig_len = blob.len() as u64;
        }
        Ok(())
    }

    /// The origin signature stored for sealed segment `id`, if any.
    pub fn origin_signature(&self, id: &Digest) -> Result<Option<Vec<u8>>> {
        require_role(id, HashRole::SegmentId)
            .map_err(|err| StoreError::Invalid(err.to_string()))?;
        let path = self.shared.path(&format!("{}.seg.sig", id.hex()));
        match self.shared.storage.read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::io("read origin signature", &path, err)),
        }
    }

    pub(super) fn segment_path(&self, id: &Digest) -> std::path::PathBuf {
        self.shared.path(&format!("{}.seg", id.hex()))
    }

    pub(super) fn open_path(&self) -> std::path::PathBuf {
        self.shared.path(OPEN_FILE)
    }
}

/// An origin signature is 1 to [`MAX_SIGNATURE_BYTES`] bytes.
pub(super) fn check_signature(blob: &[u8]) -> Result<()> {
    if blob.is_empty() || blob.len() > MAX_SIGNATURE_BYTES {
        return Err(StoreError::Invalid(format!(
            "an origin signature is 1 to {MAX_SIGNATURE_BYTES} bytes, got {}",
            blob.len()
        )));
    }
    Ok(())
}

pub(super) fn info(
    meta: &SegmentMeta,
    acks: Option<&std::collections::BTreeSet<String>>,
) -> SegmentInfo {
    SegmentInfo {
        id: Some(meta.id),
        origin: meta.header.origin.clone(),
        seq: meta.header.seq,
        size: meta.size,
        sealed: true,
        first_record: meta.header.first_record,
        records: meta.record_count,
        created_unix_ms: meta.header.created_unix_ms,
        prev: meta.header.prev,
        acked_by: acks
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default(),
    }
}

/// See [`Store::health`].
#[derive(Clone, Debug, PartialEq)]
pub struct StoreHealth {
    /// `ok`, `damaged`, `full`, `read_only`, `stopped` or `directory_gone`.
    pub state: String,
    /// `ok`, `degraded` or `failing` (failing: appends are refused).
    pub verdict: String,
    /// Why, in words for the operator: what stopped the store (if anything), unacknowledged
    /// quarantine reports, and how full it is.
    pub reason: String,
    /// Bytes used over the ceiling, from 0 to 1.
    pub usage_fraction: f64,
    /// The configured fraction of the ceiling above which the bytes not yet acknowledged off-node
    /// make the verdict `degraded`.
    pub high_water: f64,
    /// Bytes on disk in the store directory, everything counted at its allocated size.
    pub bytes_used: u64,
    /// The ceiling the store is held under, in bytes (see docs/architecture.md, INV-04).
    pub ceiling_bytes: u64,
    /// Bytes on disk of sealed segments that nothing has acknowledged yet.
    pub unacked_sealed_bytes: u64,
    /// Sealed segments held, local and imported.
    pub sealed_segments: u64,
    /// Sealed segments acknowledged by a peer, the archive or media: evicted first when room is
    /// needed.
    pub acked_segments: u64,
    /// Age in seconds of the oldest unacknowledged sealed segment, counted from when it was opened;
    /// `None` when there is none.
    pub oldest_unacked_age_s: Option<f64>,
    /// Quarantine reports an operator has not acknowledged yet.
    pub quarantine_unacked: u64,
}

/// Interval mode's sync thread: syncs queued and written records every `every`.
fn sync_every(shared: &std::sync::Weak<Shared>, every: Duration) {
    let mut last_sync = std::time::Instant::now();
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let st = shared.lock();
        let (st, _) = shared
            .wake
            .wait_timeout(st, every)
            .unwrap_or_else(|p| p.into_inner());
        if st.closed {
            return;
        }
        if last_sync.elapsed() < every {
            continue;
        }
        if st.failed.is_none() && !st.flushing && (!st.pending.is_empty() || st.unsynced) {
            drop(shared.commit(st, true));
        }
        last_sync = std::time::Instant::now();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
        if let Some(thread) = self.flusher.take() {
            let _ = thread.join();
        }
    }
}
