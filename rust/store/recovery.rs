//! Opening a store: recovery from crashes and damage, then the in-memory index.
//!
//! Recovery never refuses to start over damage it can isolate, and never
//! destroys evidence silently: a torn or corrupt tail of the open segment is
//! copied to `quarantine/` with a report before it is cut off, a sealed segment
//! whose bytes do not match its name is moved to `quarantine/` with a report, a
//! segment the catalog says was sealed (or an open segment it says was created)
//! that is no longer there gets a report of its own; orphan temp files are
//! removed, a seal or eviction interrupted by a crash is finished. Running it
//! twice changes nothing the second time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::catalog::Catalog;
use super::commit::{OpenSegment, SegmentMeta, Shared, State, StoreEvent, Writer, OPEN_FILE};
use super::error::{Result, StoreError};
use super::format;
use super::fscheck::{DirLock, LOCK_FILE};
use super::io::{on_disk, Storage};
use super::quarantine::{self, QuarantineReport};
use super::StoreConfig;
use crate::hashing::{blake3, Digest, DIGEST_LEN};

pub(super) use super::quarantine::QUARANTINE_DIR;
pub(super) const META_FILE: &str = "meta";

/// What recovery found and did at open.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Bytes cut from a torn or corrupt tail of the open segment.
    pub truncated_bytes: u64,
    /// Intact-looking records among the cut bytes (an estimate; torn writes are never whole records).
    pub truncated_records: u64,
    /// Bytes cut from a torn tail of the catalog (an entry a crash left half-written).
    pub catalog_truncated_bytes: u64,
    /// Files moved to `quarantine/`, with the reason.
    pub quarantined: Vec<(String, String)>,
    /// `*.tmp` files of writes a crash interrupted, removed.
    pub temp_files_removed: Vec<String>,
    /// Files of evictions a crash interrupted (segments or their signatures), removed now that the
    /// catalog has recorded them.
    pub evictions_completed: u64,
    /// A segment whose seal a crash interrupted, sealed now.
    pub sealed_on_open: Option<Digest>,
    /// Quarantine reports this open wrote (or, read-only, would write).
    pub reports: Vec<QuarantineReport>,
    /// Segments the catalog records that are gone without an eviction.
    pub missing: Vec<String>,
    /// Files recovery does not know; left alone but counted against the ceiling.
    pub unknown_files: Vec<String>,
}

impl RecoveryReport {
    /// Whether the open found nothing to repair: no cut, no quarantine, no leftovers, no missing
    /// segment.
    pub fn is_clean(&self) -> bool {
        self.truncated_bytes == 0
            && self.catalog_truncated_bytes == 0
            && self.quarantined.is_empty()
            && self.temp_files_removed.is_empty()
            && self.evictions_completed == 0
            && self.sealed_on_open.is_none()
            && self.missing.is_empty()
    }
}

fn sealed_name(name: &str) -> Option<Digest> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 2 * DIGEST_LEN {
        return None;
    }
    Digest::parse(&format!("blake3:{hex}")).ok()
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |err| StoreError::io(op, path, err)
}

struct Recovery<'a> {
    storage: &'a dyn Storage,
    dir: &'a Path,
    block: u64,
    report: RecoveryReport,
    quarantine_bytes: u64,
    /// Reports already in `quarantine/` when the store was opened.
    existing: Vec<QuarantineReport>,
}

impl Recovery<'_> {
    /// A report id not used yet: `base`, else `base-2`, `base-3`, ...
    fn fresh_id(&self, base: &str) -> String {
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        let taken = |id: &str| {
            self.existing.iter().any(|r| r.id == id)
                || self.report.reports.iter().any(|r| r.id == id)
        };
        let mut id = base.clone();
        let mut n = 2;
        while taken(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }

    /// Writes `report` (durably) and remembers it.
    fn file_report(&mut self, report: QuarantineReport) -> Result<()> {
        quarantine::write_report(self.storage, self.dir, &report)?;
        self.quarantine_bytes += on_disk(report.to_json().len() as u64, self.block);
        self.report.reports.push(report);
        Ok(())
    }

    /// Moves `name` into `quarantine/` (durably) with a report saying why.
    fn quarantine(
        &mut self,
        name: &str,
        len: u64,
        reason: String,
        report_id: &str,
        kind: &str,
    ) -> Result<()> {
        quarantine::ensure_dir(self.storage, self.dir)?;
        let qdir = self.dir.join(QUARANTINE_DIR);
        let taken: Vec<String> = self
            .storage
            .list(&qdir)
            .map_err(io_err("list quarantine", &qdir))?
            .into_iter()
            .map(|e| e.name)
            .collect();
        let mut target = name.to_string();
        let mut n = 1;
        while taken.contains(&target) {
            target = format!("{name}.{n}");
            n += 1;
        }
        let id = self.fresh_id(report_id);
        let mut report = QuarantineReport::new(id, kind, name, reason.clone(), len);
        report.file = Some(target.clone());
        // The report first: a crash between the two leaves a report whose file
        // is still in place, never a moved file without a report.
        self.file_report(report)?;
        let from = self.dir.join(name);
        self.storage
            .rename(&from, &qdir.join(&target))
            .map_err(io_err("quarantine", &from))?;
        self.storage
            .sync_dir(&qdir)
            .map_err(io_err("sync directory", &qdir))?;
        self.storage
            .sync_dir(self.dir)
            .map_err(io_err("sync directory", self.dir))?;
        self.quarantine_bytes += on_disk(len, self.block);
        self.report.quarantined.push((name.to_string(), reason));
        Ok(())
    }

    /// Copies the bytes from `offset` on (trailing zeros, space reserved
    /// ahead, left out) to `quarantine/<id>.data` with a report. The caller
    /// cuts them from the file afterwards.
    #[allow(clippy::too_many_arguments)]
    fn save_cut(
        &mut self,
        source: &str,
        bytes: &[u8],
        offset: usize,
        records_lost: u64,
        report_id: &str,
        kind: &str,
        reason: String,
    ) -> Result<()> {
        let tail = &bytes[offset.min(bytes.len())..];
        let end = tail.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let kept = &tail[..end];
        if kept.is_empty() {
            return Ok(());
        }
        let id = self.fresh_id(report_id);
        let file = format!("{id}.data");
        quarantine::write_file(self.storage, self.dir, &file, kept)?;
        self.quarantine_bytes += on_disk(kept.len() as u64, self.block);
        let mut report = QuarantineReport::new(id, kind, source, reason, kept.len() as u64);
        report.offset = Some(offset as u64);
        report.records_lost = Some(records_lost);
        report.file = Some(file);
        self.file_report(report)
    }

    /// A report without bytes: something the catalog promised is not there.
    fn report_missing(
        &mut self,
        id: String,
        kind: &str,
        source: &str,
        reason: String,
        records: Option<u64>,
    ) -> Result<()> {
        let mut report = QuarantineReport::new(id.clone(), kind, source, reason.clone(), 0);
        report.records_lost = records;
        // Found again at every open until the catalog forgets it: one report.
        // A segment moved to quarantine/ has its own report.
        if self
            .existing
            .iter()
            .any(|r| r.id == id || (r.kind == "segment" && r.source == source))
        {
            return Ok(());
        }
        self.report.missing.push(reason);
        self.file_report(report)
    }
}

/// Opens (and recovers) the store in `dir` on `storage`.
pub(super) fn open(
    storage: Arc<dyn Storage>,
    dir: &Path,
    config: StoreConfig,
    lock: Option<DirLock>,
) -> Result<Shared> {
    let (state, report) = recover(storage.as_ref(), dir, &config)?;
    let block = storage.block_size();
    Ok(Shared {
        config,
        block,
        storage,
        dir: dir.to_path_buf(),
        state: Mutex::new(state),
        wake: Condvar::new(),
        gathered: Condvar::new(),
        recovery: Mutex::new(report),
        home: None,
        read_only: false,
        dir_lock: Mutex::new(lock),
    })
}

/// Runs recovery on `dir` and builds the in-memory state (also used by `reopen`).
pub(super) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    config: &StoreConfig,
) -> Result<(State, RecoveryReport)> {
    config.validate()?;
    let block = storage.block_size();
    let mut rec = Recovery {
        storage,
        dir,
        block,
        report: RecoveryReport::default(),
        quarantine_bytes: 0,
        existing: quarantine::load(storage, dir),
    };
    let loaded = Catalog::load(storage, dir)?;
    let catalog = loaded.catalog;
    if !loaded.tail.is_empty() {
        rec.report.catalog_truncated_bytes = loaded.tail.len() as u64;
        rec.save_cut(
            super::catalog::CATALOG_FILE,
            &loaded.tail,
            0,
            0,
            "catalog-tail",
            "catalog-tail",
            format!(
                "{} bytes at the end of the catalog are torn or corrupt (acknowledgements or evictions not on record)",
                loaded.tail.len()
            ),
        )?;
        if let Some(report) = rec
            .report
            .reports
            .last_mut()
            .filter(|r| r.kind == "catalog-tail")
        {
            report.offset = Some(catalog.len);
            report.records_lost = None;
        }
        catalog.cut_tail(storage)?;
    }

    let mut other_bytes = storage.allocated(dir).map_err(io_err("stat", dir))?;
    let mut sealed = Vec::new();
    let mut sigs = Vec::new();
    let mut open_file = None;
    for entry in storage
        .list(dir)
        .map_err(io_err("list store directory", dir))?
    {
        let path = dir.join(&entry.name);
        match entry.name.as_str() {
            LOCK_FILE | META_FILE => other_bytes += entry.allocated,
            super::catalog::CATALOG_FILE => {}
            OPEN_FILE if !entry.is_dir => open_file = Some(entry.len),
            QUARANTINE_DIR if entry.is_dir => {
                other_bytes += entry.allocated;
                for q in storage
                    .list(&path)
                    .map_err(io_err("list quarantine", &path))?
                {
                    rec.quarantine_bytes += on_disk(q.len, block);
                }
            }
            name if name.ends_with(".seg.sig") && !entry.is_dir => {
                sigs.push((name.to_string(), entry.len, entry.allocated));
            }
            name if name.ends_with(".tmp") && !entry.is_dir => {
                storage
                    .remove(&path)
                    .map_err(io_err("remove temp file", &path))?;
                rec.report.temp_files_removed.push(name.to_string());
            }
            name => match sealed_name(name) {
                Some(id) if !entry.is_dir => sealed.push((id, entry.name.clone(), entry.len)),
                _ => {
                    other_bytes += entry.allocated;
                    rec.report.unknown_files.push(name.to_string());
                }
            },
        }
    }

    let mut segments: HashMap<Digest, SegmentMeta> = HashMap::new();
    let mut by_origin: BTreeMap<(String, u64), Digest> = BTreeMap::new();
    let mut sealed_bytes = 0;
    let mut quarantined_ids = std::collections::HashSet::new();
    sealed.sort_by(|a, b| a.1.cmp(&b.1));
    for (id, name, len) in sealed {
        let path = dir.join(&name);
        if catalog.is_evicted(&id) {
            storage
                .remove(&path)
                .map_err(io_err("remove evicted segment", &path))?;
            rec.report.evictions_completed += 1;
            continue;
        }
        let bytes = storage.read(&path).map_err(io_err("read segment", &path))?;
        let actual = blake3(&bytes);
        if actual != id {
            rec.quarantine(
                &name,
                len,
                format!("bytes hash to {actual}, not to the name"),
                &format!("segment-{}", &id.hex()[..16]),
                "segment",
            )?;
            quarantined_ids.insert(id);
            continue;
        }
        let scan = match format::parse_sealed(&bytes) {
            Ok(scan) => scan,
            Err(err) => {
                rec.quarantine(
                    &name,
                    len,
                    format!("malformed segment: {err}"),
                    &format!("segment-{}", &id.hex()[..16]),
                    "segment",
                )?;
                quarantined_ids.insert(id);
                continue;
            }
        };
        let key = (scan.header.origin.clone(), scan.header.seq);
        if let Some(other) = by_origin.get(&key) {
            let reason = format!("origin {} seq {} is already held as {other}", key.0, key.1);
            rec.quarantine(
                &name,
                len,
                reason,
                &format!("segment-{}", &id.hex()[..16]),
                "segment",
            )?;
            quarantined_ids.insert(id);
            continue;
        }
        by_origin.insert(key, id);
        sealed_bytes += on_disk(bytes.len() as u64, block);
        let record_count = scan.records.len() as u64;
        segments.insert(
            id,
            SegmentMeta {
                id,
                sig_len: 0,
                header: scan.header,
                record_count,
                size: bytes.len() as u64,
            },
        );
    }
    for (name, len, allocated) in sigs {
        let id = name.strip_suffix(".sig").and_then(sealed_name);
        match id.and_then(|id| segments.get_mut(&id)) {
            Some(meta) => {
                meta.sig_len = len;
                sealed_bytes += on_disk(len, block);
            }
            None if id.is_some_and(|id| catalog.is_evicted(&id)) => {
                // An eviction interrupted after the segment went: finish it.
                let path = dir.join(&name);
                storage
                    .remove(&path)
                    .map_err(io_err("remove evicted signature", &path))?;
                rec.report.evictions_completed += 1;
            }
            None => other_bytes += allocated,
        }
    }
    if rec.report.evictions_completed > 0 {
        storage
            .sync_dir(dir)
            .map_err(io_err("sync directory", dir))?;
    }

    // Where the local chain stands: its newest sealed or evicted segment.
    let mut next_seq = 0;
    let mut next_record = 0;
    let mut head = None;
    for ((origin, seq), evicted) in catalog.evicted.iter().chain(catalog.sealed.iter()) {
        if origin == &config.node_id && *seq + 1 > next_seq {
            (next_seq, next_record, head) = (seq + 1, evicted.next_record, Some(evicted.id));
        }
    }
    for meta in segments
        .values()
        .filter(|m| m.header.origin == config.node_id)
    {
        if meta.header.seq + 1 > next_seq {
            next_seq = meta.header.seq + 1;
            next_record = meta.header.first_record + meta.record_count;
            head = Some(meta.id);
        }
    }

    let mut open = None;
    let mut open_quarantined = false;
    if let Some(len) = open_file {
        let path = dir.join(OPEN_FILE);
        let bytes = storage
            .read(&path)
            .map_err(io_err("read open segment", &path))?;
        match format::scan(&bytes) {
            Err(_) if bytes.iter().all(|b| *b == 0) => {
                // Created, but the header never reached the disk: nothing to keep.
                storage
                    .remove(&path)
                    .map_err(io_err("remove torn open segment", &path))?;
                storage
                    .sync_dir(dir)
                    .map_err(io_err("sync directory", dir))?;
                rec.report.truncated_bytes += len;
            }
            Err(err) => {
                open_quarantined = true;
                rec.quarantine(
                    OPEN_FILE,
                    len,
                    format!("unreadable header: {err}"),
                    "open-segment",
                    "open-segment",
                )?
            }
            Ok(scan) => {
                let h = &scan.header;
                // An open segment ahead of the known chain (its predecessor was
                // quarantined) still holds this node's newest records: keep it.
                let fits = h.origin == config.node_id
                    && ((h.seq == next_seq && h.prev == head && h.first_record == next_record)
                        || (h.seq > next_seq && h.first_record >= next_record));
                if !fits {
                    let reason = format!(
                        "open segment (origin {}, seq {}) does not continue the chain of {} (next seq {next_seq})",
                        h.origin, h.seq, config.node_id
                    );
                    open_quarantined = true;
                    rec.quarantine(
                        OPEN_FILE,
                        len,
                        reason,
                        &format!("open-segment-{}-{}", h.origin, h.seq),
                        "open-segment",
                    )?;
                } else {
                    // Zero bytes after the records are space reserved ahead, not damage.
                    let reserved_tail = scan.damage.is_some()
                        && !scan.sealed
                        && bytes[scan.valid_len..].iter().all(|b| *b == 0);
                    if scan.damage.is_some() && !reserved_tail {
                        let what = scan
                            .damage
                            .as_ref()
                            .map(|d| d.to_string())
                            .unwrap_or_default();
                        rec.save_cut(
                            OPEN_FILE,
                            &bytes,
                            scan.valid_len,
                            scan.frames_after_damage,
                            &format!("cut-{}-{}-{}", h.origin, h.seq, scan.valid_len),
                            "cut-tail",
                            format!(
                                "open segment (origin {}, seq {}) damaged at byte {}: {what}; \
                                 the {} bytes from there were cut",
                                h.origin,
                                h.seq,
                                scan.valid_len,
                                bytes.len() - scan.valid_len
                            ),
                        )?;
                        storage
                            .truncate(&path, scan.valid_len as u64)
                            .map_err(io_err("truncate open segment", &path))?;
                        rec.report.truncated_bytes += bytes.len() as u64 - scan.valid_len as u64;
                        rec.report.truncated_records += scan.frames_after_damage;
                    }
                    let valid = &bytes[..scan.valid_len];
                    let records = scan.records.len() as u64;
                    if scan.sealed {
                        // The footer made it but the rename did not: finish the seal.
                        let id = blake3(valid);
                        let target = dir.join(format!("{}.seg", id.hex()));
                        storage
                            .rename(&path, &target)
                            .map_err(io_err("rename sealed segment", &path))?;
                        storage
                            .sync_dir(dir)
                            .map_err(io_err("sync directory", dir))?;
                        by_origin.insert((h.origin.clone(), h.seq), id);
                        sealed_bytes += on_disk(valid.len() as u64, block);
                        (next_seq, next_record, head) =
                            (h.seq + 1, h.first_record + records, Some(id));
                        segments.insert(
                            id,
                            SegmentMeta {
                                id,
                                sig_len: 0,
                                header: scan.header,
                                record_count: records,
                                size: valid.len() as u64,
                            },
                        );
                        rec.report.sealed_on_open = Some(id);
                    } else {
                        let mut file = storage
                            .open_append(&path, false)
                            .map_err(io_err("open segment", &path))?;
                        file.set_end(valid.len() as u64);
                        let allocated = if reserved_tail {
                            bytes.len() as u64
                        } else {
                            valid.len() as u64
                        };
                        let mut hasher = ::blake3::Hasher::new();
                        hasher.update(valid);
                        (next_seq, next_record, head) = (h.seq, h.first_record + records, h.prev);
                        open = Some(OpenSegment {
                            header: scan.header,
                            written_len: valid.len() as u64,
                            allocated,
                            written_records: records,
                            writer: Some(Writer {
                                file,
                                hasher,
                                allocated,
                            }),
                        });
                    }
                }
            }
        }
    }
    find_missing(
        &mut rec,
        &catalog,
        config,
        &by_origin,
        &quarantined_ids,
        open_file.is_some() || open_quarantined,
    )?;
    let mut reports = rec.existing;
    reports.extend(rec.report.reports.iter().cloned());
    let events = rec
        .report
        .reports
        .iter()
        .map(|r| {
            let kind = if r.kind.starts_with("missing") {
                "missing"
            } else {
                "quarantined"
            };
            StoreEvent::new(kind, format!("{}: {}", r.id, r.reason))
        })
        .collect();
    let state = State {
        closed: false,
        failed: None,
        segments,
        by_origin,
        catalog,
        open,
        pending: Vec::new(),
        pending_records: 0,
        pending_writers: 0,
        pending_outcome: Arc::new(OnceLock::new()),
        flushing: false,
        forming: false,
        active_writers: 0,
        last_sync: std::time::Duration::ZERO,
        commits: super::commit::CommitStats::default(),
        unsynced: false,
        next_seq,
        next_record,
        head,
        other_bytes,
        quarantine_bytes: rec.quarantine_bytes,
        sealed_bytes,
        importing: std::collections::HashSet::new(),
        dir_sync_owed: false,
        full: false,
        gone: None,
        events,
        quarantine: reports,
        reopen_attempts: 0,
        next_reopen_ms: 0,
        stop_reported: false,
    };
    Ok((state, rec.report))
}

/// Reports what the catalog says this store sealed or created that is gone
/// with no eviction on record (deleted behind the store's back).
fn find_missing(
    rec: &mut Recovery<'_>,
    catalog: &Catalog,
    config: &StoreConfig,
    by_origin: &BTreeMap<(String, u64), Digest>,
    quarantined: &std::collections::HashSet<Digest>,
    open_present: bool,
) -> Result<()> {
    let mut gone: Vec<(&(String, u64), &super::catalog::Evicted)> = catalog
        .sealed
        .iter()
        .filter(|(key, sealed)| {
            !by_origin.contains_key(*key)
                && !catalog.evicted.contains_key(*key)
                && !quarantined.contains(&sealed.id)
        })
        .collect();
    gone.sort_by(|a, b| a.0.cmp(b.0));
    for ((origin, seq), sealed) in gone {
        // Records it held, when the segment before it is known.
        let before = seq.checked_sub(1).and_then(|p| {
            let key = (origin.clone(), p);
            catalog
                .sealed
                .get(&key)
                .or_else(|| catalog.evicted.get(&key))
                .map(|e| e.next_record)
        });
        let lost = before.map(|first| sealed.next_record.saturating_sub(first));
        let reason = format!(
            "sealed segment {} (origin {origin}, seq {seq}) is missing: deleted with no eviction on record",
            sealed.id
        );
        rec.report_missing(
            format!("missing-segment-{origin}-{seq}"),
            "missing-segment",
            &format!("{}.seg", sealed.id.hex()),
            reason,
            lost,
        )?;
    }
    if let Some((seq, first_record)) = catalog.opened.get(&config.node_id) {
        let key = (config.node_id.clone(), *seq);
        let accounted = by_origin.contains_key(&key)
            || catalog.sealed.contains_key(&key)
            || catalog.evicted.contains_key(&key);
        if !accounted && !open_present {
            let reason = format!(
                "open segment (origin {}, seq {seq}, records from {first_record}) is missing: \
                 deleted while it held this node's newest records",
                config.node_id
            );
            rec.report_missing(
                format!("missing-open-segment-{}-{seq}", config.node_id),
                "missing-open-segment",
                OPEN_FILE,
                reason,
                None,
            )?;
        }
    }
    Ok(())
}

/// Records the node id and ceiling for tools that open the store later (`vedette store ...`).
pub(super) fn write_meta(shared: &Shared) -> Result<()> {
    let text = serde_json::json!({
        "format": format::FORMAT_VERSION,
        "node_id": shared.config.node_id,
        "ceiling_bytes": shared.config.ceiling_bytes,
    })
    .to_string();
    let path = shared.path(META_FILE);
    let old = shared.storage.read(&path).ok();
    if old.as_deref() == Some(text.as_bytes()) {
        return Ok(());
    }
    let tmp = shared.path("meta.tmp");
    let mut file = shared
        .storage
        .open_append(&tmp, true)
        .map_err(io_err("write meta", &tmp))?;
    file.append(text.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(io_err("write meta", &tmp))?;
    shared
        .storage
        .rename(&tmp, &path)
        .map_err(io_err("rename meta", &tmp))?;
    shared.sync_dir(&shared.dir)?;
    let mut st = shared.lock();
    let old = old.map_or(0, |old| on_disk(old.len() as u64, shared.block));
    st.other_bytes = st.other_bytes.saturating_sub(old) + on_disk(text.len() as u64, shared.block);
    Ok(())
}

/// Reads the node id and ceiling a store was last opened with.
pub(super) fn read_meta(storage: &dyn Storage, dir: &Path) -> Result<(String, u64)> {
    let path = dir.join(META_FILE);
    let bytes = storage
        .read(&path)
        .map_err(io_err("read store meta", &path))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|err| StoreError::Invalid(format!("{}: not valid JSON: {err}", path.display())))?;
    let node = value.get("node_id").and_then(|v| v.as_str());
    let ceiling = value
        .get("ceiling_bytes")
        .and_then(serde_json::Value::as_u64);
    match (node, ceiling) {
        (Some(node), Some(ceiling)) => Ok((node.to_string(), ceiling)),
        _ => Err(StoreError::Invalid(format!(
            "{}: missing node_id or ceiling_bytes",
            path.display()
        ))),
    }
}
