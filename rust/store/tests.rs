//! Store behaviour on the crash simulator and on real files.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::sim::{CrashSim, SimStorage};
use super::*;
use crate::hashing::blake3;

const BLOCK: u64 = 4096;

fn config(ceiling: u64) -> StoreConfig {
    let mut config = StoreConfig::new(ceiling, "node-a");
    config.segment_max_bytes = 16 << 10;
    config
}

fn sim_store(sim: &Arc<CrashSim>, ceiling: u64) -> Store {
    Store::open_with(
        Arc::new(SimStorage(Arc::clone(sim))),
        Path::new("/s"),
        config(ceiling),
    )
    .unwrap()
}

fn all_records(store: &Store) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut since = None;
    loop {
        let batch = store.read_records(None, since).unwrap();
        let Some(last) = batch.last() else { return out };
        since = Some(last.0);
        out.extend(batch);
    }
}

fn record(n: u64) -> Vec<u8> {
    format!("record-{n}-{}", "x".repeat((n % 300) as usize)).into_bytes()
}

#[test]
fn records_survive_seal_and_reopen() {
    let sim = CrashSim::new(BLOCK);
    let store = sim_store(&sim, 1 << 20);
    for n in 0..400 {
        assert_eq!(store.append(&record(n)).unwrap(), n);
    }
    let sealed = store.segments().iter().filter(|s| s.sealed).count();
    assert!(
        sealed >= 2,
        "segments rotate at the size bound: {:?}",
        store.segments()
    );
    store.close().unwrap();
    drop(store);
    let store = sim_store(&sim, 1 << 20);
    assert!(store.recovery().is_clean(), "{:?}", store.recovery());
    let got = all_records(&store);
    assert_eq!(got.len(), 400);
    for (n, (pos, bytes)) in got.iter().enumerate() {
        assert_eq!((*pos, bytes.clone()), (n as u64, record(n as u64)));
    }
    assert!(store.verify(&mut |_, _| {}).faults.is_empty());
}

#[test]
fn sealed_segments_chain_and_are_named_by_their_hash() {
    let sim = CrashSim::new(BLOCK);
    let store = sim_store(&sim, 1 << 20);
    let mut ids = Vec::new();
    for n in 0..3 {
        store.append(&record(n)).unwrap();
        ids.push(store.seal().unwrap().unwrap());
    }
    for (i, id) in ids.iter().enumerate() {
        let bytes = store.get_segment(id).unwrap();
        assert_eq!(blake3(&bytes), *id);
        let header = format::parse_sealed(&bytes).unwrap().header;
        assert_eq!(header.seq, i as u64);
        assert_eq!(header.prev, i.checked_sub(1).map(|p| ids[p]));
    }
    assert_eq!(store.seal().unwrap(), None, "nothing to seal");
}

#[test]
fn ceiling_evicts_acked_oldest_first_then_refuses() {
    let sim = CrashSim::new(BLOCK);
    let ceiling = 256 << 10;
    let store = sim_store(&sim, ceiling);
    let payload = vec![7u8; 1000];
    let mut n = 0;
    let err = loop {
        match store.append(&payload) {
            Ok(_) => n += 1,
            Err(err) => break err,
        }
        assert!(store.usage().bytes_used <= ceiling);
    };
    assert!(matches!(err, StoreError::Full { .. }), "{err}");
    assert!(err.to_string().contains(&ceiling.to_string()));
    let sealed: Vec<_> = store.segments().into_iter().filter(|s| s.sealed).collect();
    let oldest = sealed[0].id.unwrap();
    store.ack(&oldest, "peer-b").unwrap();
    store.append(&payload).unwrap();
    assert!(
        store.segments().iter().all(|s| s.id != Some(oldest)),
        "oldest acked segment evicted"
    );
    assert!(store.usage().bytes_used <= ceiling);
    assert!(n > 100);
    // Records keep their numbers across the eviction gap.
    let records = all_records(&store);
    assert_eq!(records.last().unwrap().0, n);
}

#[test]
fn enospc_becomes_full_and_the_store_recovers() {
    let sim = CrashSim::new(BLOCK);
    let store = sim_store(&sim, 1 << 20);
    store.append(b"before").unwrap();
    sim.set_write_fault(Some(28)); // ENOSPC
    let err = store.append(b"during").unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Full {
                detail: Some(_),
                ..
            }
        ),
        "{err}"
    );
    sim.set_write_fault(None);
    assert_eq!(
        store.append(b"after").unwrap(),
        1,
        "no gap after the failed write"
    );
    let got: Vec<Vec<u8>> = all_records(&store).into_iter().map(|r| r.1).collect();
    assert_eq!(got, vec![b"before".to_vec(), b"after".to_vec()]);
}

#[test]
fn eio_is_an_error_not_a_panic() {
    let sim = CrashSim::new(BLOCK);
    let store = sim_store(&sim, 1 << 20);
    sim.set_write_fault(Some(5)); // EIO
    assert!(matches!(store.append(b"x"), Err(StoreError::Io { .. })));
    sim.set_write_fault(None);
    store.append(b"y").unwrap();
}

#[test]
fn sixteen_threads_keep_every_record_once_in_order() {
    let sim = CrashSim::new(BLOCK);
    let store = Arc::new(sim_store(&sim, 64 << 20));
    let threads: Vec<_> = (0..16u8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..200u32)
                    .map(|i| store.append(format!("{t}:{i}").as_bytes()).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        let positions = t.join().unwrap();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
    }
    let got = all_records(&store);
    assert_eq!(got.len(), 16 * 200);
    let mut next = [0u32; 16];
    for (_, bytes) in got {
        let text = String::from_utf8(bytes).unwrap();
        let (t, i) = text.split_once(':').unwrap();
        let t: usize = t.parse().unwrap();
        assert_eq!(i.parse::<u32>().unwrap(), next[t]);
        next[t] += 1;
    }
}

#[test]
fn import_checks_id_structure_and_chain() {
    let peer_sim = CrashSim::new(BLOCK);
    let peer = Store::open_with(
        Arc::new(SimStorage(Arc::clone(&peer_sim))),
        Path::new("/p"),
        StoreConfig {
            node_id: "node-b".into(),
            ..config(1 << 20)
        },
    )
    .unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        peer.append(&record(n)).unwrap();
        ids.push(peer.seal().unwrap().unwrap());
    }
    let sim = CrashSim::new(BLOCK);
    let store = sim_store(&sim, 1 << 20);
    let seg2 = peer.get_segment(&ids[2]).unwrap();
    assert_eq!(store.import_segment(&seg2, Some(&ids[2])).unwrap(), ids[2]);
    assert_eq!(
        store.import_segment(&seg2, None).unwrap(),
        ids[2],
        "idempotent"
    );
    let mut bad = peer.get_segment(&ids[0]).unwrap();
    let last = bad.len() - 30;
    bad[last] ^= 1;
    let before = store.usage();
    assert!(matches!(
        store.import_segment(&bad, Some(&ids[0])),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.import_segment(&bad, None),
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(store.usage(), before, "a refused import stores nothing");
    store
        .import_segment(&peer.get_segment(&ids[1]).unwrap(), None)
        .unwrap();
    store
        .import_segment(&peer.get_segment(&ids[0]).unwrap(), None)
        .unwrap();
    let theirs = store.read_records(Some("node-b"), None).unwrap();
    assert_eq!(theirs[0], (0, record(0)));
    assert!(store.verify(&mut |_, _| {}).faults.is_empty());
}

#[test]
fn recovery_truncates_torn_tail_and_quarantines_bad_sealed_segment() {
    let sim = CrashSim::new(BLOCK);
    let storage = SimStorage(Arc::clone(&sim));
    let store = sim_store(&sim, 1 << 20);
    store.append(b"one").unwrap();
    let id = store.seal().unwrap().unwrap();
    store.append(b"two").unwrap();
    store.append(b"three").unwrap();
    let end = store.segments().last().unwrap().size;
    drop(store);
    use super::io::Storage;
    let open = Path::new("/s/open.seg");
    // Tear the last record: cut the file two bytes before the end of its data.
    storage.truncate(open, end - 2).unwrap();
    let sealed = Path::new("/s").join(format!("{}.seg", id.hex()));
    let mut bytes = storage.read(&sealed).unwrap();
    bytes[60] ^= 0xff;
    storage.remove(&sealed).unwrap();
    let mut file = storage.open_append(&sealed, true).unwrap();
    file.append(&bytes).unwrap();
    drop(file);
    let store = sim_store(&sim, 1 << 20);
    let report = store.recovery().clone();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert!(report.truncated_bytes > 0);
    let got: Vec<Vec<u8>> = all_records(&store).into_iter().map(|r| r.1).collect();
    assert_eq!(got, vec![b"two".to_vec()]);
    assert!(matches!(
        store.get_segment(&id),
        Err(StoreError::NotFound(_))
    ));
    drop(store);
    let again = sim_store(&sim, 1 << 20);
    assert!(
        again.recovery().is_clean(),
        "second open changes nothing: {:?}",
        again.recovery()
    );
}

/// The invariants after any crash: records held are contiguous, every
/// acknowledged record at or after the first held one is there and intact, and
/// records are missing at the front only if something was acknowledged (evictable).
fn check_after_crash(
    store: &Store,
    acknowledged: &[(u64, Vec<u8>)],
    acks_made: bool,
) -> Result<(), TestCaseError> {
    let got = all_records(store);
    for (i, (pos, _)) in got.iter().enumerate() {
        prop_assert_eq!(*pos, got[0].0 + i as u64, "no gaps");
    }
    let first = got.first().map_or(u64::MAX, |r| r.0);
    if !acks_made {
        prop_assert!(
            got.len() >= acknowledged.len(),
            "lost {} acknowledged records",
            acknowledged.len() - got.len()
        );
    }
    for (pos, payload) in acknowledged.iter().filter(|r| r.0 >= first) {
        let held = got.get((pos - first) as usize);
        prop_assert_eq!(
            held.map(|r| &r.1),
            Some(payload),
            "record {} missing or changed",
            pos
        );
    }
    let faults = store.verify(&mut |_, _| {}).faults;
    prop_assert!(faults.is_empty(), "verify: {:?}", faults);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Power cuts at random points lose no acknowledged record and never leave
    /// the store over its ceiling or unable to open.
    #[test]
    fn power_loss_keeps_every_acknowledged_record(
        ops in proptest::collection::vec((0u8..12, 0usize..700), 1..50),
        cut in proptest::collection::vec(any::<u64>(), 1..64),
    ) {
        let sim = CrashSim::new(BLOCK);
        let ceiling = 128 << 10;
        let mut acknowledged: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut acks_made = false;
        let mut k = 0usize;
        for chunk in ops.chunks(12) {
            let store = sim_store(&sim, ceiling);
            check_after_crash(&store, &acknowledged, acks_made)?;
            for &(op, size) in chunk {
                match op {
                    0 => { let _ = store.seal(); }
                    1 => {
                        if let Some(id) = store.segments().iter().find(|s| s.sealed).and_then(|s| s.id) {
                            acks_made |= store.ack(&id, "peer-b").is_ok();
                        }
                    }
                    _ => {
                        let payload = vec![op; size];
                        if let Ok(pos) = store.append(&payload) {
                            acknowledged.push((pos, payload));
                        }
                    }
                }
                prop_assert!(store.usage().bytes_used <= ceiling);
            }
            std::mem::forget(store); // the process dies: no close, no final flush
            sim.crash(&mut |n| { k += 1; if n == 0 { 0 } else { cut[k % cut.len()] % (n + 1) } });
        }
        let store = sim_store(&sim, ceiling);
        check_after_crash(&store, &acknowledged, acks_made)?;
    }
}

#[derive(Clone, Debug)]
enum Damage {
    Truncate(usize),
    Flip(usize, u8),
    ZeroBlock(usize, usize),
    Garbage(Vec<u8>),
    Duplicate(usize, usize),
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Damage::Flip(at, bits)),
        (any::<usize>(), 1usize..600).prop_map(|(at, len)| Damage::ZeroBlock(at, len)),
        proptest::collection::vec(any::<u8>(), 1..300).prop_map(Damage::Garbage),
        (any::<usize>(), 1usize..300).prop_map(|(at, len)| Damage::Duplicate(at, len)),
    ]
}

fn apply_damage(bytes: &mut Vec<u8>, damage: &Damage) {
    let len = bytes.len().max(1);
    match damage {
        Damage::Truncate(at) => bytes.truncate(at % len),
        Damage::Flip(at, bits) => {
            if !bytes.is_empty() {
                bytes[at % len] ^= bits;
            }
        }
        Damage::ZeroBlock(at, n) => {
            let start = at % len;
            let end = (start + n).min(bytes.len());
            bytes[start.min(end)..end].fill(0);
        }
        Damage::Garbage(extra) => bytes.extend_from_slice(extra),
        Damage::Duplicate(at, n) => {
            let start = at % len;
            let end = (start + n).min(bytes.len());
            let copy = bytes[start.min(end)..end].to_vec();
            bytes.extend_from_slice(&copy);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Damage to any segment file, open or sealed: open never fails or panics,
    /// never returns a record that was not written at that position, moves
    /// damaged sealed segments to quarantine, and leaves a store that verifies.
    #[test]
    fn damaged_files_never_yield_bad_records(
        sizes in proptest::collection::vec(0usize..400, 1..60),
        seal_every in 3usize..20,
        target in any::<usize>(),
        damage in damage_strategy(),
    ) {
        use super::io::Storage;
        let sim = CrashSim::new(BLOCK);
        let storage = SimStorage(Arc::clone(&sim));
        let mut written = Vec::new();
        {
            let store = sim_store(&sim, 1 << 20);
            for (i, size) in sizes.iter().enumerate() {
                let payload: Vec<u8> = (0..*size).map(|b| (b + i) as u8).collect();
                let pos = store.append(&payload).unwrap();
                written.push((pos, payload));
                if i % seal_every == seal_every - 1 {
                    store.seal().unwrap();
                }
            }
        }
        let files: Vec<String> = storage
            .list(Path::new("/s"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n.ends_with(".seg"))
            .collect();
        let victim = Path::new("/s").join(&files[target % files.len()]);
        let mut bytes = storage.read(&victim).unwrap();
        let before = bytes.clone();
        apply_damage(&mut bytes, &damage);
        storage.remove(&victim).unwrap();
        let mut file = storage.open_append(&victim, true).unwrap();
        file.append(&bytes).unwrap();
        file.sync_data().unwrap();
        drop(file);

        let store = sim_store(&sim, 1 << 20);
        for (pos, record) in all_records(&store) {
            prop_assert_eq!(&written[pos as usize].1, &record, "record {} changed", pos);
        }
        let sealed_victim = victim.file_name().is_some_and(|n| n != "open.seg");
        if sealed_victim && bytes != before {
            prop_assert_eq!(store.recovery().quarantined.len(), 1);
        }
        let faults = store.verify(&mut |_, _| {}).faults;
        prop_assert!(faults.is_empty(), "{:?}", faults);
        // Appending still works after recovery.
        store.append(b"after").unwrap();
    }
}

#[test]
fn concurrent_batches_get_consecutive_positions_across_rotations() {
    let sim = CrashSim::new(BLOCK);
    let store = Arc::new(sim_store(&sim, 64 << 20));
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for b in 0..40u32 {
                    let batch: Vec<Vec<u8>> = (0..10u32)
                        .map(|i| {
                            format!("{t}:{b}:{i}:{}", "p".repeat((i * 37 % 500) as usize))
                                .into_bytes()
                        })
                        .collect();
                    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    let first = store.append_many(&refs).unwrap();
                    mine.extend(
                        batch
                            .into_iter()
                            .enumerate()
                            .map(|(i, r)| (first + i as u64, r)),
                    );
                }
                mine
            })
        })
        .collect();
    let held: std::collections::HashMap<u64, Vec<u8>> = {
        let mine: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let got: std::collections::HashMap<u64, Vec<u8>> =
            all_records(&store).into_iter().collect();
        for (pos, record) in &mine {
            assert_eq!(got.get(pos), Some(record), "position {pos}");
        }
        got
    };
    assert_eq!(held.len(), 8 * 40 * 10);
    assert!(
        store.segments().iter().filter(|s| s.sealed).count() > 10,
        "batches crossed rotations"
    );
}

/// Throughput probe on the real file system (not a test of behaviour):
/// `cargo test --release --lib probe -- --ignored --nocapture`.
#[test]
#[ignore]
fn probe_durable_append_rate() {
    for threads in [1usize, 16] {
        let tmp = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(1 << 30, "probe");
        let store = Arc::new(Store::open(&tmp.path().join("s"), config).unwrap());
        let start = std::time::Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < std::time::Duration::from_secs(2) {
                        store.append(&[b'r'; 256]).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let rate = total as f64 / start.elapsed().as_secs_f64();
        println!("{threads:2} threads: {rate:.0} durable appends/s");
    }
}

#[test]
fn catalog_stays_bounded_over_many_evictions() {
    use super::io::Storage;
    let sim = CrashSim::new(BLOCK);
    let storage = SimStorage(Arc::clone(&sim));
    let mut config = config(128 << 10);
    config.segment_max_bytes = 4096;
    let open = || {
        Store::open_with(
            Arc::new(SimStorage(Arc::clone(&sim))),
            Path::new("/s"),
            config.clone(),
        )
        .unwrap()
    };
    let store = open();
    let mut last = 0;
    let mut largest_catalog = 0;
    for n in 0..12_000u64 {
        last = store.append(&[n as u8; 200]).unwrap();
        if let Some(id) = store.seal().unwrap() {
            store.ack(&id, "peer-b").unwrap();
        }
        if n % 1000 == 0 {
            largest_catalog =
                largest_catalog.max(storage.read(Path::new("/s/catalog")).unwrap().len());
        }
    }
    assert!(
        largest_catalog < 80 << 10,
        "catalog grew to {largest_catalog} bytes"
    );
    drop(store);
    let store = open();
    assert!(store.recovery().is_clean(), "{:?}", store.recovery());
    assert_eq!(
        store.append(b"next").unwrap(),
        last + 1,
        "numbering survives compaction"
    );
    assert!(store.verify(&mut |_, _| {}).faults.is_empty());
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        out.push((entry.display().to_string(), bytes));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn read_only_open_beside_a_live_store_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let live = Store::open(&dir, StoreConfig::new(1 << 20, "node-a")).unwrap();
    live.append(b"sealed record").unwrap();
    let id = live.seal().unwrap().unwrap();
    live.append(b"open record").unwrap();
    // Damage a sealed segment and leave a stray temp file behind the live store's back.
    let sealed = dir.join(format!("{}.seg", id.hex()));
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[70] ^= 1;
    std::fs::write(&sealed, &bytes).unwrap();
    std::fs::write(dir.join("x.tmp"), b"partial").unwrap();
    let before = snapshot(&dir);

    let view = Store::open_read_only(&dir).unwrap();
    assert_eq!(view.recovery().quarantined.len(), 1, "damage is reported");
    assert_eq!(
        view.recovery().temp_files_removed,
        vec!["x.tmp".to_string()]
    );
    let got: Vec<Vec<u8>> = all_records(&view).into_iter().map(|r| r.1).collect();
    assert_eq!(
        got,
        vec![b"open record".to_vec()],
        "the damaged segment is not served"
    );
    assert!(matches!(view.append(b"no"), Err(StoreError::Invalid(_))));
    assert!(matches!(view.seal(), Err(StoreError::Invalid(_))));
    assert!(matches!(
        view.ack(&id, "peer-b"),
        Err(StoreError::Invalid(_))
    ));
    view.close().unwrap();
    drop(view);
    assert_eq!(snapshot(&dir), before, "a read-only open writes nothing");
    live.append(b"still live").unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random damage to the open segment: every byte recovery does not keep
    /// is in `quarantine/` with a report, and records are either readable or
    /// the report says records were lost.
    #[test]
    fn random_damage_never_vanishes_without_a_report(
        records in 5usize..120,
        at in 0.0f64..1.0,
        flip in 1u8..=255,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let end = {
            let store = Store::open(&dir, StoreConfig::new(8 << 20, "node-a")).unwrap();
            for i in 0..records {
                store.append(format!("record-{i:05}").as_bytes()).unwrap();
            }
            let end = store.segments().last().unwrap().size as usize;
            store.close().unwrap();
            end
        };
        let path = dir.join("open.seg");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(end);
        let pos = ((end as f64) * at) as usize % end;
        bytes[pos] ^= flip;
        std::fs::write(&path, &bytes).unwrap();

        let store = Store::open(&dir, StoreConfig::new(8 << 20, "node-a")).unwrap();
        let reports = store.quarantine();
        let readable = store.read_records(None, None).map(|r| r.len()).unwrap_or(0);
        let trimmed = {
            let last = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            &bytes[..last]
        };
        if let Some(r) = reports.iter().find(|r| r.kind == "open-segment") {
            let moved = std::fs::read(dir.join("quarantine").join(r.file.as_ref().unwrap())).unwrap();
            prop_assert_eq!(&moved[..], &bytes[..]);
        } else if readable < records {
            let cut: Vec<&QuarantineReport> = reports.iter().filter(|r| r.kind == "cut-tail").collect();
            prop_assert_eq!(cut.len(), 1, "{:?}", reports);
            let kept = std::fs::read(&path).unwrap();
            let kept = &kept[..store.segments().last().unwrap().size as usize];
            let data = std::fs::read(dir.join("quarantine").join(cut[0].file.as_ref().unwrap())).unwrap();
            prop_assert_eq!(cut[0].offset, Some(kept.len() as u64));
            let mut whole = kept.to_vec();
            whole.extend_from_slice(&data);
            prop_assert_eq!(&whole[..], trimmed);
            prop_assert!(store.health().quarantine_unacked >= 1);
        } else {
            prop_assert!(reports.is_empty(), "{:?}", reports);
        }
    }
}

#[test]
fn deleted_sealed_and_open_segments_are_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let ids: Vec<_> = {
        let store = Store::open(&dir, StoreConfig::new(8 << 20, "node-a")).unwrap();
        let ids = (0..3)
            .map(|i| {
                store.append(format!("r{i}").as_bytes()).unwrap();
                store.seal().unwrap().unwrap()
            })
            .collect();
        store.append(b"open").unwrap();
        ids
    };
    std::fs::remove_file(dir.join(format!("{}.seg", ids[1].hex()))).unwrap();
    std::fs::remove_file(dir.join("open.seg")).unwrap();
    let kinds = |store: &Store| {
        let mut k: Vec<String> = store.quarantine().into_iter().map(|r| r.kind).collect();
        k.sort();
        k
    };
    {
        let store = Store::open(&dir, StoreConfig::new(8 << 20, "node-a")).unwrap();
        assert_eq!(kinds(&store), ["missing-open-segment", "missing-segment"]);
        assert_eq!(store.recovery().missing.len(), 2);
        assert_eq!(store.health().verdict, "degraded");
    }
    let store = Store::open(&dir, StoreConfig::new(8 << 20, "node-a")).unwrap();
    assert_eq!(kinds(&store).len(), 2, "found again, reported once");
}

#[test]
fn a_stopped_store_reopens_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = Store::open(&dir, StoreConfig::new(8 << 20, "node-a")).unwrap();
    store.append(b"one").unwrap();
    store.shared.lock().failed = Some("simulated failure".into());
    assert!(store.append(b"refused").is_err());
    assert_eq!(store.health().state, "stopped");
    store.reopen().unwrap();
    store.append(b"two").unwrap();
    let got: Vec<Vec<u8>> = store
        .read_records(None, None)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    assert!(store.take_events().iter().any(|e| e.kind == "reopened"));
}

#[test]
fn only_evidence_still_waiting_to_leave_counts_against_the_high_water_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s"), StoreConfig::new(256 << 10, "node-a")).unwrap();
    let mut sealed = Vec::new();
    while store.health().verdict == "ok" {
        store.append(&[b'x'; 900]).unwrap();
        if let Some(id) = store.seal().unwrap() {
            sealed.push(id);
        }
    }
    let degraded = store.health();
    assert_eq!(degraded.verdict, "degraded");
    assert!(degraded.reason.contains("0 of"), "{}", degraded.reason);
    for id in &sealed {
        store.ack(id, "peer:node-b").unwrap();
    }
    let relieved = store.health();
    assert_eq!(relieved.verdict, "ok", "{}", relieved.reason);
    assert!(
        relieved.usage_fraction >= relieved.high_water,
        "still on disk, evictable"
    );
}

#[test]
fn a_sealed_segment_is_read_outside_the_store_with_the_same_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s"), StoreConfig::new(8 << 20, "node-a")).unwrap();
    store.append(b"first").unwrap();
    store.append(b"second").unwrap();
    let id = store.seal().unwrap().unwrap();
    let bytes = store.get_segment(&id).unwrap();
    let read = SealedSegment::read(&bytes).unwrap();
    assert_eq!(read.id, id);
    assert_eq!(
        (read.header.origin.as_str(), read.header.seq),
        ("node-a", 0)
    );
    let records: Vec<&[u8]> = read.records.iter().map(|(_, r)| *r).collect();
    assert_eq!(records, [b"first".as_slice(), b"second".as_slice()]);
    let mut flipped = bytes.clone();
    let at = bytes.len() / 2;
    flipped[at] ^= 1;
    assert!(matches!(
        SealedSegment::read(&flipped),
        Err(StoreError::Corrupt(_))
    ));
    assert!(SealedSegment::read(&bytes[..bytes.len() - 1]).is_err());
    assert!(SealedSegment::read(b"").is_err());
}

#[test]
fn an_acknowledgement_ends_the_full_state_before_the_next_append() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s"), StoreConfig::new(128 << 10, "node-a")).unwrap();
    let mut sealed = Vec::new();
    loop {
        match store.append(&[b'x'; 900]) {
            Ok(_) => {}
            Err(StoreError::Full { .. }) => break,
            Err(other) => panic!("{other}"),
        }
        if let Some(id) = store.seal().unwrap() {
            sealed.push(id);
        }
    }
    assert_eq!(store.health().state, "full");
    assert_eq!(store.health().verdict, "failing");
    store.ack(&sealed[0], "archive:EVIDENCE").unwrap();
    let health = store.health();
    assert_ne!(health.state, "full", "{}", health.reason);
    assert_ne!(health.verdict, "failing", "{}", health.reason);
    store.append(&[b'y'; 900]).unwrap();
}

#[test]
fn acknowledgements_in_one_batch_are_all_durable_or_none_recorded() {
    let sim = CrashSim::new(BLOCK);
    let store = sim_store(&sim, 1 << 20);
    let mut sealed = Vec::new();
    for i in 0..4u64 {
        store.append(&record(i)).unwrap();
        sealed.push(store.seal().unwrap().unwrap());
    }
    let acked_by = |store: &Store, id: &crate::hashing::Digest| {
        store
            .segments()
            .into_iter()
            .find(|s| s.id == Some(*id))
            .is_some_and(|s| s.acked_by.iter().any(|by| by == "archive:EVIDENCE"))
    };
    // One id the store does not hold: nothing at all is recorded.
    let unknown = blake3(b"not a segment here");
    let err = store
        .ack_all(&[sealed[0], unknown], "archive:EVIDENCE")
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(!acked_by(&store, &sealed[0]));

    // A repeated id and an already acknowledged one are recorded once.
    store.ack(&sealed[0], "archive:EVIDENCE").unwrap();
    store
        .ack_all(
            &[sealed[0], sealed[1], sealed[2], sealed[2]],
            "archive:EVIDENCE",
        )
        .unwrap();
    drop(store);
    // A power cut right after: the batch was synced before ack_all returned.
    sim.crash(&mut |_| 0);
    let store = sim_store(&sim, 1 << 20);
    for id in &sealed[..3] {
        assert!(acked_by(&store, id), "{id} acknowledged before the crash");
    }
    assert!(!acked_by(&store, &sealed[3]));
}

#[test]
fn commit_stats_count_each_durable_commit_and_what_it_carried() {
    let sim = CrashSim::new(BLOCK);
    let store = sim_store(&sim, 64 << 20);
    assert_eq!(store.commit_stats(), CommitStats::default());
    store.append(b"one").unwrap();
    store.append_many(&[b"two", b"three"]).unwrap();
    let stats = store.commit_stats();
    assert_eq!((stats.syncs, stats.records, stats.appends), (2, 3, 2));
}
