//! Importing sealed segments received from peers, a batch at a time.
//!
//! A batch shares its flushes (group commit for imports): every segment is
//! checked (BLAKE3 id, structure and record checksums — see
//! [`VerifiedSegment`] — and its place in its origin's chain), its room
//! reserved under the ceiling, then, without the state lock so local appends
//! carry on, its files (each segment's, and its origin signature's) are
//! created as `*.tmp` one at a time and written and `fdatasync`ed several at
//! once (so the disk and the journal take them together), and only when all
//! are synced is each renamed to its name and the directory synced, once.
//! Only then does the call return a segment as stored. A power cut in the
//! middle leaves complete, synced segments under their ids (the renames that
//! reached the disk) and temp files that the next open removes: never a
//! partial segment under an id.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::api::check_signature;
use super::commit::SegmentMeta;
use super::error::{Result, StoreError};
use super::format::{self, Header};
use super::io::on_disk;
use super::Store;
use crate::hashing::{blake3, require_role, Digest, HashRole};

/// A sealed segment whose bytes passed every check that needs no store state:
/// its BLAKE3 id (against the id expected, if any), its structure and every
/// record checksum. Only [`VerifiedSegment::check`] makes one, so the store
/// can import it without hashing it again; the chain checks are the store's.
pub struct VerifiedSegment {
    bytes: Vec<u8>,
    id: Digest,
    header: Header,
    record_count: u64,
    /// The origin's signature, stored beside the segment (`<id>.seg.sig`) in
    /// the same batch, synced with it.
    signature: Option<Vec<u8>>,
}

impl VerifiedSegment {
    /// Checks `bytes` as a sealed segment (CPU work only: hashing and
    /// checksums). A mismatch or a malformed segment is `Corrupt`.
    pub fn check(bytes: Vec<u8>, expected: Option<&Digest>) -> Result<VerifiedSegment> {
        let id = blake3(&bytes);
        if let Some(expected) = expected {
            require_role(expected, HashRole::SegmentId)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            if expected != &id {
                return Err(StoreError::Corrupt(format!(
                    "bytes hash to {id}, not to the expected {expected}"
                )));
            }
        }
        let scan = format::parse_sealed(&bytes)
            .map_err(|err| StoreError::Corrupt(format!("{id}: {err}")))?;
        Ok(VerifiedSegment {
            id,
            record_count: scan.records.len() as u64,
            header: scan.header,
            bytes,
            signature: None,
        })
    }

    /// The segment, to be stored with its origin's `signature` (opaque to the
    /// store, 1 to [`MAX_SIGNATURE_BYTES`](super::MAX_SIGNATURE_BYTES) bytes):
    /// both are written and synced in the same batch, so a segment received
    /// signed costs no flush of its own for its signature.
    pub fn with_origin_signature(mut self, signature: Vec<u8>) -> Result<VerifiedSegment> {
        check_signature(&signature)?;
        self.signature = Some(signature);
        Ok(self)
    }

    /// The segment's BLAKE3 id, computed from its bytes.
    pub fn id(&self) -> Digest {
        self.id
    }

    /// The segment's bytes, as checked.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A sealed segment read outside any store (the archive's reader and
/// verifier): the same checks as an import, borrowing the bytes.
pub struct SealedSegment<'a> {
    /// The segment's BLAKE3 id, computed from its bytes.
    pub id: Digest,
    /// The segment's header, as decoded.
    pub header: Header,
    /// `(record number, record)` in order.
    pub records: Vec<(u64, &'a [u8])>,
}

impl<'a> SealedSegment<'a> {
    /// Checks `bytes` as a sealed segment (id, structure, every record
    /// checksum) without copying them. A malformed segment is `Corrupt`.
    pub fn read(bytes: &'a [u8]) -> Result<SealedSegment<'a>> {
        let id = blake3(bytes);
        let scan = format::parse_sealed(bytes)
            .map_err(|err| StoreError::Corrupt(format!("{id}: {err}")))?;
        let records = scan
            .records
            .iter()
            .filter_map(|span| {
                let record = bytes.get(span.start..span.start.checked_add(span.len)?)?;
                Some((span.record_no, record))
            })
            .collect::<Vec<_>>();
        if records.len() != scan.records.len() {
            return Err(StoreError::Corrupt(format!(
                "{id}: a record lies outside the bytes"
            )));
        }
        Ok(SealedSegment {
            id,
            header: scan.header,
            records,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// New here: to be written.
    Fresh,
    /// Already held and durable.
    Held,
    /// Earlier in the same batch: its outcome is that copy's.
    Twice,
}

/// A segment admitted into the store: room reserved, key claimed.
struct Admitted {
    index: usize,
    reserved: u64,
}

impl Store {
    /// Stores a sealed segment received from a peer, after checking its bytes
    /// against `expected` (if given) and its BLAKE3 id, its structure and its
    /// place in the origin's chain. Idempotent; stores nothing on any failure.
    pub fn import_segment(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        self.import_segments(&[(bytes, expected)])
            .pop()
            .unwrap_or_else(|| Err(StoreError::Failed("import returned no outcome".into())))
    }

    /// [`Store::import_verified`] for segments not checked yet; one outcome
    /// per segment, in order.
    pub fn import_segments(&self, batch: &[(&[u8], Option<&Digest>)]) -> Vec<Result<Digest>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut verified = Vec::with_capacity(batch.len());
        for (bytes, expected) in batch {
            match VerifiedSegment::check(bytes.to_vec(), *expected) {
                Ok(v) => {
                    outcomes.push(None);
                    verified.push(v);
                }
                Err(err) => outcomes.push(Some(Err(err))),
            }
        }
        let mut stored = self.import_verified(&verified).into_iter();
        outcomes
            .into_iter()
            .map(|o| {
                o.or_else(|| stored.next())
                    .unwrap_or_else(|| Err(StoreError::Failed("import lost an outcome".into())))
            })
            .collect()
    }

    /// Stores a batch of verified segments received from peers; one outcome
    /// per segment, in order. Each must fit its origin's chain as held
    /// (segments of the batch count as held for each other, in any order) and
    /// is durable — file data and directory entry synced — when its outcome is
    /// `Ok`, with its origin signature if it carries one (see
    /// [`VerifiedSegment::with_origin_signature`]); importing a segment held
    /// already returns its id. The batch shares
    /// its flushes: its files are written and synced side by side, then
    /// renamed, and the directory is synced once. A segment refused stores
    /// nothing; the others are not affected by it.
    pub fn import_verified(&self, batch: &[VerifiedSegment]) -> Vec<Result<Digest>> {
        let mut outcomes: Vec<Option<Result<Digest>>> = (0..batch.len()).map(|_| None).collect();
        let admitted = self.admit(batch, &mut outcomes);
        if !admitted.is_empty() {
            let written = self.write_batch(batch, &admitted);
            self.register(batch, admitted, written, &mut outcomes);
        }
        // A segment held already, without a signature yet, gets the one it
        // came with, on its own (rare: a copy that arrived unsigned before).
        let unsigned: Vec<usize> = {
            let st = self.shared.lock();
            (0..batch.len())
                .filter(|&i| {
                    matches!(outcomes[i], Some(Ok(_)))
                        && batch[i].signature.is_some()
                        && st
                            .segments
                            .get(&batch[i].id)
                            .is_some_and(|m| m.sig_len == 0)
                })
                .collect()
        };
        for i in unsigned {
            if let Some(signature) = &batch[i].signature {
                if let Err(err) = self.put_origin_signature(&batch[i].id, signature) {
                    outcomes[i] = Some(Err(err));
                }
            }
        }
        // A segment sent twice in one batch shares its first copy's outcome.
        for i in 0..outcomes.len() {
            if outcomes[i].is_none() {
                let first = (0..i).find(|&j| outcomes[j].is_some() && batch[j].id == batch[i].id);
                outcomes[i] = first.and_then(|j| outcomes[j].clone());
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(StoreError::Failed("import lost an outcome".into()))))
            .collect()
    }

    /// Under the state lock: the chain checks, room under the ceiling
    /// (reserved at once, as sealed bytes) and a claim on each segment's
    /// (origin, seq), so no other import writes it meanwhile.
    fn admit(
        &self,
        batch: &[VerifiedSegment],
        outcomes: &mut [Option<Result<Digest>>],
    ) -> Vec<Admitted> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        // Another import holding one of these keys finishes first. Nothing of
        // this batch is claimed while waiting, so two batches cannot wait on
        // each other.
        while batch.iter().any(|v| {
            st.importing
                .contains(&(v.header.origin.clone(), v.header.seq))
        }) && shared.usable(&st).is_ok()
        {
            st = shared.wait(st);
        }
        // This batch's admitted segments, by key, for each other's chain checks.
        let mut here: BTreeMap<(String, u64), usize> = BTreeMap::new();
        let mut admitted = Vec::new();
        for (index, v) in batch.iter().enumerate() {
            let outcome = (|| {
                shared.writable(&st)?;
                if st.segments.contains_key(&v.id) {
                    return Ok(Admission::Held);
                }
                if here.values().any(|&i| batch[i].id == v.id) {
                    return Ok(Admission::Twice);
                }
                let corrupt = |m: String| Err(StoreError::Corrupt(format!("{}: {m}", v.id)));
                let (origin, seq) = (&v.header.origin, v.header.seq);
                let held_at = |key: &(String, u64)| {
                    st.by_origin
                        .get(key)
                        .copied()
                        .or_else(|| here.get(key).map(|&i| batch[i].id))
                };
                if let Some(held) = held_at(&(origin.clone(), seq)) {
                    return corrupt(format!(
                        "origin {origin} seq {seq} is already held as {held} (a fork)"
                    ));
                }
                if let Some(gone) = st.catalog.evicted.get(&(origin.clone(), seq)) {
                    if gone.id != v.id {
                        return corrupt(format!(
                            "origin {origin} seq {seq} was {} (a fork)",
                            gone.id
                        ));
                    }
                }
                if origin == &shared.config.node_id && seq >= st.next_seq {
                    return corrupt(format!(
                        "claims this node's own sequence {seq} not yet written"
                    ));
                }
                let prev_id = seq.checked_sub(1).and_then(|p| {
                    let key = (origin.clone(), p);
                    held_at(&key).or_else(|| st.catalog.evicted.get(&key).map(|e| e.id))
                });
                if let (Some(known), Some(claimed)) = (prev_id, v.header.prev) {
                    if known != claimed {
                        return corrupt(format!(
                            "names {claimed} as previous, but seq {} is {known}",
                            seq - 1
                        ));
                    }
                }
                let next = (origin.clone(), seq + 1);
                let next_prev = match (st.by_origin.get(&next), here.get(&next)) {
                    (Some(n), _) => st.segments.get(n).map(|m| m.header.prev),
                    (None, Some(&i)) => Some(batch[i].header.prev),
                    (None, None) => None,
                };
                if next_prev.is_some_and(|p| p != Some(v.id)) {
                    return corrupt(format!(
                        "seq {} already held names another previous segment",
                        seq + 1
                    ));
                }
                Ok(Admission::Fresh)
            })();
            let reserved = on_disk(v.bytes.len() as u64, shared.block)
                + v.signature
                    .as_ref()
                    .map_or(0, |sig| on_disk(sig.len() as u64, shared.block));
            let outcome = outcome.and_then(|admission| {
                if admission == Admission::Fresh {
                    shared.ensure_room(&mut st, reserved, false)?;
                }
                Ok(admission)
            });
            match outcome {
                Ok(Admission::Fresh) => {
                    st.sealed_bytes += reserved;
                    let key = (v.header.origin.clone(), v.header.seq);
                    st.importing.insert(key.clone());
                    here.insert(key, index);
                    admitted.push(Admitted { index, reserved });
                }
                Ok(Admission::Held) => outcomes[index] = Some(Ok(v.id)),
                // Stored (or not) with its first copy: see `import_verified`.
                Ok(Admission::Twice) => {}
                Err(err) => outcomes[index] = Some(Err(err)),
            }
        }
        admitted
    }

    /// Without the state lock: writes every admitted segment (and its origin
    /// signature) to temp files and syncs them (several files at once, on the
    /// import writers), then renames each to its id and syncs the directory
    /// once. No rename comes before every file of the batch is synced. A
    /// power cut before the directory sync may keep either of a segment's
    /// two renames without the other: a segment without its signature is
    /// answered GONE rather than relayed unsigned; a signature without its
    /// segment is counted against the ceiling and replaced when the segment
    /// comes again. One outcome per admitted segment.
    fn write_batch(&self, batch: &[VerifiedSegment], admitted: &[Admitted]) -> Vec<Result<()>> {
        let shared = &*self.shared;
        let seg = |a: &Admitted| self.segment_path(&batch[a.index].id);
        let sig = |a: &Admitted| shared.path(&format!("{}.seg.sig", batch[a.index].id.hex()));
        let tmp = |path: PathBuf| {
            let mut name = path.into_os_string();
            name.push(".tmp");
            PathBuf::from(name)
        };
        // Every file of the batch: (admitted index, final path, temp path, bytes).
        let mut files: Vec<(usize, PathBuf, PathBuf, &[u8])> =
            Vec::with_capacity(2 * admitted.len());
        for (i, a) in admitted.iter().enumerate() {
            files.push((i, seg(a), tmp(seg(a)), &batch[a.index].bytes));
            if let Some(signature) = &batch[a.index].signature {
                files.push((i, sig(a), tmp(sig(a)), signature));
            }
        }
        // Created one at a time: a create holds the directory's lock (for as
        // long as the file system takes to find a free inode), and writers
        // creating side by side only spin on it. Filling and syncing one file
        // goes on while the next is created.
        let creating = std::sync::Mutex::new(());
        let synced = each_on_writers(files.len(), |f| {
            let (_, _, tmp, bytes) = &files[f];
            {
                let _one_at_a_time = creating.lock().unwrap_or_else(|p| p.into_inner());
                match shared.storage.open_append(tmp, true) {
                    // A temp file an earlier attempt could not remove.
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                        shared.storage.remove(tmp)?;
                        shared.storage.open_append(tmp, true).map(drop)
                    }
                    other => other.map(drop),
                }?;
            }
            shared.storage.fill(tmp, bytes)?.sync_data()
        });
        let mut written: Vec<Result<()>> = admitted.iter().map(|_| Ok(())).collect();
        for ((i, _, tmp, _), synced) in files.iter().zip(synced) {
            if let (Ok(()), Err(err)) = (&written[*i], synced) {
                written[*i] = Err(StoreError::io("store imported segment", tmp, err));
            }
        }
        for (i, path, tmp, _) in &files {
            if written[*i].is_ok() {
                if let Err(err) = shared.storage.rename(tmp, path) {
                    written[*i] = Err(StoreError::io("store imported segment", path, err));
                }
            }
        }
        // A segment not stored leaves no file behind: neither temp nor renamed.
        for (a, w) in admitted.iter().zip(&written) {
            if w.is_err() {
                for path in [seg(a), sig(a)] {
                    let _ = shared.storage.remove(&tmp(path.clone()));
                    let _ = shared.storage.remove(&path);
                }
            }
        }
        if written.iter().any(|w| w.is_ok()) {
            if let Err(err) = shared.sync_dir(&shared.dir) {
                // Not durable: none of the renamed files may count as stored.
                for (a, w) in admitted.iter().zip(written.iter_mut()) {
                    if w.is_ok() {
                        let _ = shared.storage.remove(&seg(a));
                        let _ = shared.storage.remove(&sig(a));
                        *w = Err(err.clone());
                    }
                }
            }
        }
        written
    }

    /// Under the state lock again: stored segments become held, the room of
    /// the others is given back, and every claim is released.
    fn register(
        &self,
        batch: &[VerifiedSegment],
        admitted: Vec<Admitted>,
        written: Vec<Result<()>>,
        outcomes: &mut [Option<Result<Digest>>],
    ) {
        let shared = &*self.shared;
        let mut st = shared.lock();
        for (a, w) in admitted.into_iter().zip(written) {
            let v = &batch[a.index];
            let key = (v.header.origin.clone(), v.header.seq);
            st.importing.remove(&key);
            match w {
                Ok(()) => {
                    st.by_origin.insert(key, v.id);
                    st.segments.insert(
                        v.id,
                        SegmentMeta {
                            id: v.id,
                            sig_len: v.signature.as_ref().map_or(0, |sig| sig.len() as u64),
                            header: v.header.clone(),
                            record_count: v.record_count,
                            size: v.bytes.len() as u64,
                        },
                    );
                    outcomes[a.index] = Some(Ok(v.id));
                }
                Err(err) => {
                    st.sealed_bytes -= a.reserved;
                    outcomes[a.index] = Some(Err(shared.out_of_space(&st, err, a.reserved)));
                }
            }
        }
        shared.wake.notify_all();
    }
}

/// Threads that write and sync the files of an import batch side by side:
/// a file's write and `fdatasync` mostly wait on the disk, which takes
/// several at once, and the file system folds concurrent syncs into one
/// journal commit.
const IMPORT_WRITERS: usize = 4;

/// Runs `f(0)`, …, `f(n - 1)` on the import writers (in the caller's thread
/// when there is one, or when the pool cannot be started) and returns the
/// results in order.
fn each_on_writers<F>(n: usize, f: F) -> Vec<std::io::Result<()>>
where
    F: Fn(usize) -> std::io::Result<()> + Sync,
{
    static WRITERS: OnceLock<Option<rayon_core::ThreadPool>> = OnceLock::new();
    let pool = WRITERS.get_or_init(|| {
        rayon_core::ThreadPoolBuilder::new()
            .num_threads(IMPORT_WRITERS)
            .thread_name(|i| format!("vedette-import-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) if n > 1 => {
            let mut out: Vec<Option<std::io::Result<()>>> = (0..n).map(|_| None).collect();
            pool.scope(|scope| {
                for (i, slot) in out.iter_mut().enumerate() {
                    let f = &f;
                    scope.spawn(move |_| *slot = Some(f(i)));
                }
            });
            out.into_iter()
                .map(|o| o.unwrap_or_else(|| Err(std::io::Error::other("import writer lost"))))
                .collect()
        }
        _ => (0..n).map(f).collect(),
    }
}
