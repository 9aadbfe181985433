//! Sessions run against each other and against hand-made frames: replication
//! both ways, the in-flight set, the window, protocol violations, and the
//! ACK rule. The origin-signature tests are in the `origin` submodule.

use super::*;
use crate::crypto::ecdsa::PrivateKey;
use crate::crypto::origin::{verify_blob, OriginSignature, OriginTrust, Signer};
use crate::crypto::pki::{new_ca, Ca, Issued, Validity};
use crate::peers::tls::NodeKey;
use crate::store::StoreConfig;

mod origin;

fn validity() -> Validity {
    Validity {
        not_before: 1_600_000_000,
        not_after: 4_000_000_000,
    }
}

/// A fleet CA made by the PKI the operators use (`vedette pki`).
fn fleet() -> Issued {
    new_ca("fleet.test", validity()).unwrap()
}

/// Node `node`'s origin keys under `ca`: the fleet CA and its certificate and key.
fn keys(ca: &Issued, node: &str) -> Arc<OriginKeys> {
    let issued = Ca::load(&ca.cert_pem, &ca.key_pem)
        .unwrap()
        .issue(node, validity())
        .unwrap();
    let cert_der = pem::parse(issued.cert_pem.as_bytes())
        .unwrap()
        .into_contents();
    let key_der = pem::parse(issued.key_pem.as_bytes())
        .unwrap()
        .into_contents();
    Arc::new(OriginKeys {
        ca_pem: ca.cert_pem.clone(),
        signer: Ok(NodeKey {
            key: PrivateKey::from_pkcs8_der(&key_der).unwrap(),
            cert_der,
        }),
    })
}

/// A session with its node's keys under `ca`.
fn keyed(
    store: &Arc<Store>,
    in_flight: &Arc<InFlight>,
    peer: &str,
    limits: FrameLimits,
    ca: &Issued,
) -> Session {
    let mut s = Session::new(
        Arc::clone(store),
        Arc::clone(in_flight),
        peer.into(),
        limits,
    );
    s.set_origin_keys(Some(keys(ca, &store.config().node_id)));
    s
}

/// The signature blob `signer` makes for segment `seq` of `origin`.
fn sign_as(signer: &OriginKeys, origin: &str, seq: u64, id: Digest) -> Vec<u8> {
    let node = signer.signer.as_ref().unwrap();
    OriginSignature::sign(
        &node.key,
        Signer::Certificate(node.cert_der.clone()),
        origin,
        seq,
        id,
    )
    .unwrap()
    .encode()
}

fn store(dir: &std::path::Path, node: &str) -> Arc<Store> {
    let mut config = StoreConfig::new(1 << 20, node);
    config.segment_max_bytes = 16 << 10;
    Arc::new(Store::open(dir, config).unwrap())
}

/// A session on `sb` (node b, talking to a) that has taken a's HELLO,
/// and what it answered.
fn after_hello(sa: &Arc<Store>, sb: &Arc<Store>) -> (Session, Step) {
    let limits = FrameLimits::default();
    let mut session = Session::new(Arc::clone(sb), Arc::default(), "a".into(), limits);
    let hello = Session::new(Arc::clone(sa), Arc::default(), "b".into(), limits).hello(0);
    let step = session.on_frame(hello).unwrap();
    (session, step)
}

fn tmp() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn fill(store: &Store, segments: usize) {
    for i in 0..segments {
        store.append(format!("record {i}").as_bytes()).unwrap();
        store.seal().unwrap();
    }
}

/// Runs two sessions against each other until neither has anything to send.
fn converse(a: &mut Session, b: &mut Session) -> usize {
    let mut to_b = vec![a.hello(0)];
    let mut to_a = vec![b.hello(0)];
    let mut rounds = 0;
    while !(to_a.is_empty() && to_b.is_empty()) && rounds < 10_000 {
        rounds += 1;
        for f in std::mem::take(&mut to_b) {
            let wire = f.encode(&FrameLimits::default()).unwrap();
            let (f, _) = super::super::frames::split_frame(&wire, &FrameLimits::default())
                .unwrap()
                .unwrap();
            if let Step::Send(out) = b.on_frame(f).unwrap() {
                to_a.extend(out);
            }
        }
        while let Some(f) = b.next_to_serve().unwrap() {
            to_a.push(f);
        }
        for f in std::mem::take(&mut to_a) {
            if let Step::Send(out) = a.on_frame(f).unwrap() {
                to_b.extend(out);
            }
        }
        while let Some(f) = a.next_to_serve().unwrap() {
            to_b.push(f);
        }
    }
    rounds
}

#[test]
fn two_sessions_replicate_both_ways_and_ack() {
    let (da, db) = (tmp(), tmp());
    let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
    fill(&sa, 5);
    fill(&sb, 3);
    let limits = FrameLimits {
        max_want_entries: 2,
        ..FrameLimits::default()
    };
    let (fa, fb) = (Arc::new(InFlight::default()), Arc::new(InFlight::default()));
    let ca = fleet();
    let mut a = keyed(&sa, &fa, "b", limits, &ca);
    let mut b = keyed(&sb, &fb, "a", limits, &ca);
    converse(&mut a, &mut b);
    assert_eq!(sa.frontiers(), vec![("a".into(), 5), ("b".into(), 3)]);
    assert_eq!(sb.frontiers(), sa.frontiers());
    assert!(fa.is_empty() && fb.is_empty());
    // Every segment a sent was acknowledged by b, and so is evictable.
    for info in sa.segments().iter().filter(|i| i.origin == "a" && i.sealed) {
        assert_eq!(info.acked_by, vec!["b".to_string()]);
    }
    assert_eq!(a.stats.segments_out, 5);
    assert_eq!(b.stats.segments_in, 5);
    // Each node signed its own segments as they left, and each stored
    // the signatures of what it received beside the segments.
    let trust = OriginTrust {
        ca_pem: Some(&ca.cert_pem),
        pinned_key: None,
        require_certificate: true,
    };
    for s in [&sa, &sb] {
        for info in s.segments().iter().filter(|i| i.sealed) {
            let id = info.id.unwrap();
            let blob = s.origin_signature(&id).unwrap().expect("a sidecar");
            verify_blob(&blob, &info.origin, info.seq, &id, &trust).unwrap();
        }
    }
    assert_eq!(a.stats.origin_refused + b.stats.origin_refused, 0);
}

#[test]
fn a_peers_frontier_acknowledges_what_it_holds_however_it_got_it() {
    let (da, db) = (tmp(), tmp());
    let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
    fill(&sa, 3);
    // b got a's first two segments some other way (another peer, or an
    // ACK lost when it was killed).
    for info in sa.segments().iter().take(2) {
        let bytes = sa.get_segment(&info.id.unwrap()).unwrap();
        sb.import_segment(&bytes, None).unwrap();
    }
    let mut a = Session::new(
        Arc::clone(&sa),
        Arc::default(),
        "b".into(),
        FrameLimits::default(),
    );
    let hello_b = Session::new(
        Arc::clone(&sb),
        Arc::default(),
        "a".into(),
        FrameLimits::default(),
    )
    .hello(0);
    a.on_frame(hello_b).unwrap();
    let acked: Vec<Vec<String>> = sa.segments().iter().map(|i| i.acked_by.clone()).collect();
    assert_eq!(
        acked,
        vec![vec!["b".to_string()], vec!["b".to_string()], vec![]]
    );
}

#[test]
fn a_segment_in_flight_is_not_asked_of_a_second_peer() {
    let (da, db, dc) = (tmp(), tmp(), tmp());
    let (sa, sb, sc) = (
        store(da.path(), "a"),
        store(db.path(), "b"),
        store(dc.path(), "c"),
    );
    fill(&sa, 2);
    // b and c both hold a's segments; a fresh node d asks both.
    for s in [&sb, &sc] {
        for info in sa.segments() {
            let bytes = sa.get_segment(&info.id.unwrap()).unwrap();
            s.import_segment(&bytes, None).unwrap();
        }
    }
    let dd = tmp();
    let sd = store(dd.path(), "d");
    let in_flight = Arc::new(InFlight::default());
    let mut from_b = Session::new(
        Arc::clone(&sd),
        Arc::clone(&in_flight),
        "b".into(),
        FrameLimits::default(),
    );
    let mut from_c = Session::new(
        Arc::clone(&sd),
        Arc::clone(&in_flight),
        "c".into(),
        FrameLimits::default(),
    );
    let hello_b = Session::new(sb, Arc::default(), "d".into(), FrameLimits::default()).hello(0);
    let hello_c = Session::new(sc, Arc::default(), "d".into(), FrameLimits::default()).hello(0);
    let Step::Send(w1) = from_b.on_frame(hello_b).unwrap() else {
        panic!()
    };
    let Step::Send(w2) = from_c.on_frame(hello_c).unwrap() else {
        panic!()
    };
    assert_eq!(w1.len(), 1);
    assert!(
        w2.is_empty(),
        "c was asked for what b is already sending: {w2:?}"
    );
    drop(from_b);
    assert!(
        in_flight.is_empty(),
        "a closed connection releases its fetches"
    );
    assert_eq!(from_c.wants().len(), 1);
}

#[test]
fn protocol_violations_end_the_session() {
    let d = tmp();
    let s = store(d.path(), "a");
    fill(&s, 1);
    let mut session = Session::new(
        Arc::clone(&s),
        Arc::default(),
        "b".into(),
        FrameLimits::default(),
    );
    let want = Frame::Want(vec![SegmentRef {
        origin: "a".into(),
        seq: 0,
    }]);
    assert!(session.on_frame(want.clone()).is_err(), "WANT before HELLO");
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION + 1,
        accept_rate: 0,
        frontiers: vec![],
    };
    assert_eq!(session.on_frame(hello).unwrap_err().code, ByeCode::Version);
    // A node of version 1 (segments without origin signatures) is told why.
    let v1 = Frame::Hello {
        version: 1,
        accept_rate: 0,
        frontiers: vec![],
    };
    let err = session.on_frame(v1).unwrap_err();
    assert_eq!(err.code, ByeCode::Version);
    assert_eq!(
        err.reason,
        "protocol version 1 is not supported (this node speaks 2)"
    );
    session.on_frame(session.hello(0)).unwrap();
    let bytes = s.get_segment(&s.segments()[0].id.unwrap()).unwrap();
    let unsolicited = Frame::Segment {
        at: SegmentRef {
            origin: "a".into(),
            seq: 0,
        },
        id: crate::hashing::blake3(&bytes),
        signature: Vec::new(),
        bytes,
    };
    assert!(session.on_frame(unsolicited).is_err());
    for _ in 0..64 {
        session.on_frame(want.clone()).unwrap();
    }
    assert!(session.on_frame(want).is_err(), "over the want window");
}

#[test]
fn a_batch_is_acked_only_once_the_store_has_it_and_a_repeat_is_refused() {
    let (da, db) = (tmp(), tmp());
    let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
    fill(&sa, 3);
    let (mut session, _) = after_hello(&sa, &sb);
    let segs: Vec<(SegmentRef, Digest, Vec<u8>)> = sa
        .segments()
        .iter()
        .map(|i| {
            let id = i.id.unwrap();
            let at = SegmentRef {
                origin: "a".into(),
                seq: i.seq,
            };
            (at, id, sa.get_segment(&id).unwrap())
        })
        .collect();
    for (at, _, _) in &segs {
        session.receive_segment(at).unwrap();
    }
    assert_eq!(
        session.receive_segment(&segs[0].0).unwrap_err().code,
        ByeCode::Protocol,
        "the same SEGMENT twice while the first is imported"
    );
    assert_eq!(session.requested(), 3, "still claimed while importing");
    let items: Vec<(&[u8], Option<&Digest>)> = segs
        .iter()
        .map(|(_, id, b)| (b.as_slice(), Some(id)))
        .collect();
    let results = sb.import_segments(&items);
    let outcomes = segs
        .iter()
        .zip(results)
        .map(|((at, id, _), r)| (at.clone(), *id, r))
        .collect();
    let Step::Send(out) = session.segments_stored(outcomes).unwrap() else {
        panic!()
    };
    let acks: Vec<Digest> = out
        .iter()
        .filter_map(|f| match f {
            Frame::Ack(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(acks, segs.iter().map(|s| s.1).collect::<Vec<_>>());
    assert_eq!(session.requested(), 0);
    assert_eq!(sb.frontiers(), vec![("a".to_string(), 3)]);
    // A store failure is not acknowledged.
    let failed = vec![(segs[0].0.clone(), segs[0].1, Err(StoreError::Closed))];
    session.requested.insert(segs[0].0.clone());
    session.receive_segment(&segs[0].0).unwrap();
    assert!(session.segments_stored(failed).is_err());
}
