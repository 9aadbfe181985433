//! Batch imports on the crash simulator: chain checks inside a batch, and
//! power cuts at every point of a batch.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::io::Storage;
use super::sim::{CrashSim, SimStorage};
use super::*;
use crate::hashing::Digest;

const BLOCK: u64 = 4096;
const CEILING: u64 = 1 << 20;

fn open(sim: &Arc<CrashSim>, dir: &str, node: &str) -> Store {
    let mut config = StoreConfig::new(CEILING, node);
    config.segment_max_bytes = 16 << 10;
    Store::open_with(
        Arc::new(SimStorage(Arc::clone(sim))),
        Path::new(dir),
        config,
    )
    .unwrap()
}

/// `n` sealed segments of node-b, oldest first: (id, bytes); `tag` in every record.
fn peer_segments(n: u64, tag: &str) -> Vec<(Digest, Vec<u8>)> {
    let sim = CrashSim::new(BLOCK);
    let peer = open(&sim, "/p", "node-b");
    (0..n)
        .map(|i| {
            peer.append(format!("{tag} segment {i} {}", "y".repeat(i as usize * 40)).as_bytes())
                .unwrap();
            let id = peer.seal().unwrap().unwrap();
            (id, peer.get_segment(&id).unwrap())
        })
        .collect()
}

/// The origin signature the tests give segment `id` (opaque to the store).
fn signature_of(id: &Digest) -> Vec<u8> {
    format!("signed {id}").into_bytes()
}

/// `segments` checked, each carrying its signature.
fn signed(segments: &[(Digest, Vec<u8>)]) -> Vec<VerifiedSegment> {
    segments
        .iter()
        .map(|(id, bytes)| {
            VerifiedSegment::check(bytes.clone(), Some(id))
                .unwrap()
                .with_origin_signature(signature_of(id))
                .unwrap()
        })
        .collect()
}

fn batch(segments: &[(Digest, Vec<u8>)]) -> Vec<(&[u8], Option<&Digest>)> {
    segments
        .iter()
        .map(|(id, bytes)| (bytes.as_slice(), Some(id)))
        .collect()
}

#[test]
fn a_batch_is_checked_as_a_chain_in_any_order() {
    let segments = peer_segments(5, "one");
    let sim = CrashSim::new(BLOCK);
    let store = open(&sim, "/s", "node-a");
    // Out of order, with one segment twice: the chain is checked across the batch.
    let order = [3usize, 1, 4, 0, 2, 1];
    let shuffled: Vec<(Digest, Vec<u8>)> = order.iter().map(|&i| segments[i].clone()).collect();
    let outcomes = store.import_segments(&batch(&shuffled));
    for (outcome, &i) in outcomes.iter().zip(&order) {
        assert_eq!(outcome.as_ref().unwrap(), &segments[i].0);
    }
    assert_eq!(store.frontiers(), vec![("node-b".to_string(), 5)]);
    let usage = store.usage();
    drop(store);
    let again = open(&sim, "/s", "node-a");
    assert!(again.recovery().is_clean(), "{:?}", again.recovery());
    assert_eq!(again.usage(), usage, "room counted as on disk");
}

#[test]
fn a_refused_segment_in_a_batch_stores_nothing_of_itself_only() {
    let segments = peer_segments(3, "one");
    let other = peer_segments(4, "other"); // a fork: same origin and seqs, other bytes
    let sim = CrashSim::new(BLOCK);
    let store = open(&sim, "/s", "node-a");
    let mut tampered = segments[2].clone();
    let last = tampered.1.len() - 30;
    tampered.1[last] ^= 1;
    let mixed = vec![
        segments[0].clone(),
        other[1].clone(),
        segments[1].clone(),
        tampered,
    ];
    let outcomes = store.import_segments(&batch(&mixed));
    assert!(outcomes[0].is_ok());
    // other[1] names other[0] as previous; seq 0 is segments[0] in this batch.
    assert!(
        matches!(outcomes[1], Err(StoreError::Corrupt(_))),
        "{outcomes:?}"
    );
    assert!(outcomes[2].is_ok());
    assert!(matches!(outcomes[3], Err(StoreError::Corrupt(_))));
    assert_eq!(store.frontiers(), vec![("node-b".to_string(), 2)]);
    let before = store.usage();
    drop(store);
    let again = open(&sim, "/s", "node-a");
    assert_eq!(
        again.usage(),
        before,
        "a refused segment leaves no bytes counted"
    );
}

#[test]
fn signatures_are_stored_with_their_batch_and_counted() {
    let segments = peer_segments(4, "one");
    let sim = CrashSim::new(BLOCK);
    let store = open(&sim, "/s", "node-a");
    // Segment 0 arrives unsigned first; its signed copy adds the signature.
    store.import_segments(&batch(&segments[..1]))[0]
        .as_ref()
        .unwrap();
    assert_eq!(store.origin_signature(&segments[0].0).unwrap(), None);
    let unsigned_usage = store.usage();
    let outcomes = store.import_verified(&signed(&segments));
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    for (id, _) in &segments {
        assert_eq!(
            store.origin_signature(id).unwrap(),
            Some(signature_of(id)),
            "{id}"
        );
    }
    let usage = store.usage();
    // Three segments and four signatures more, each at least a block.
    assert!(usage.bytes_used >= unsigned_usage.bytes_used + 7 * BLOCK);
    drop(store);
    let again = open(&sim, "/s", "node-a");
    assert!(again.recovery().is_clean(), "{:?}", again.recovery());
    assert_eq!(again.usage(), usage, "signatures counted as on disk");
}

#[test]
fn a_signature_the_store_cannot_keep_is_refused_before_any_write() {
    let segments = peer_segments(1, "one");
    let (id, bytes) = &segments[0];
    for wrong in [Vec::new(), vec![7u8; MAX_SIGNATURE_BYTES + 1]] {
        let refused = VerifiedSegment::check(bytes.clone(), Some(id))
            .unwrap()
            .with_origin_signature(wrong);
        assert!(matches!(refused, Err(StoreError::Invalid(_))));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// A power cut at any point of an import batch (the process stops after
    /// `ops` file operations, then the disk keeps a random part of what was
    /// not synced): the store opens, every segment the import reported
    /// stored is there intact, nothing else is damaged or half there, and the
    /// batch can be imported again.
    #[test]
    fn power_loss_during_an_import_batch_keeps_every_stored_segment(
        ops in 0u64..40,
        cut in proptest::collection::vec(any::<u64>(), 1..64),
    ) {
        let segments = peer_segments(6, "one");
        let sim = CrashSim::new(BLOCK);
        let store = open(&sim, "/s", "node-a");
        store.import_segments(&batch(&segments[..1]))[0].as_ref().unwrap();
        sim.set_fault_after(ops, 5 /* EIO */);
        let outcomes = store.import_verified(&signed(&segments[1..]));
        std::mem::forget(store); // the process dies: no close
        sim.set_write_fault(None);
        let mut k = 0usize;
        sim.crash(&mut |n| { k += 1; if n == 0 { 0 } else { cut[k % cut.len()] % (n + 1) } });

        let store = open(&sim, "/s", "node-a");
        let report = store.verify(&mut |_, _| {});
        prop_assert!(report.faults.is_empty(), "verify: {:?}", report.faults);
        prop_assert!(store.recovery().quarantined.is_empty(), "{:?}", store.recovery());
        let names: Vec<String> = SimStorage(Arc::clone(&sim))
            .list(Path::new("/s"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        prop_assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        prop_assert_eq!(&store.get_segment(&segments[0].0).unwrap(), &segments[0].1);
        for (outcome, (id, bytes)) in outcomes.iter().zip(&segments[1..]) {
            if outcome.is_ok() {
                prop_assert_eq!(&store.get_segment(id).unwrap(), bytes, "stored, then lost");
                prop_assert_eq!(store.origin_signature(id).unwrap(), Some(signature_of(id)));
            }
        }
        prop_assert!(store.usage().bytes_used <= CEILING);
        let again = store.import_verified(&signed(&segments));
        prop_assert!(again.iter().all(|o| o.is_ok()), "{:?}", again);
        prop_assert_eq!(store.frontiers(), vec![("node-b".to_string(), 6)]);
        for (id, _) in &segments {
            prop_assert_eq!(store.origin_signature(id).unwrap(), Some(signature_of(id)));
        }
    }
}

#[test]
fn files_created_past_the_page_cache_read_back_exactly() {
    use super::io::RealStorage;
    let dir = tempfile::tempdir().unwrap();
    let storage = RealStorage::new(BLOCK);
    // Below, at and around the O_DIRECT block and chunk sizes.
    for (i, len) in [
        0usize,
        100,
        4096,
        4097,
        8191,
        (1 << 20) + 123,
        (5 << 19) + 4096,
    ]
    .into_iter()
    .enumerate()
    {
        let data: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
        let path = dir.path().join(format!("{i}.tmp"));
        let mut file = storage.create_with(&path, &data).unwrap();
        file.sync_data().unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), data, "{len} bytes");
        assert!(
            storage.create_with(&path, &data).is_err(),
            "an existing file is not replaced"
        );
    }
}
