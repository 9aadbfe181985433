use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::peers::retry::RetryPolicy;
use crate::peers::tls::testpki::TestCa;
use crate::store::StoreConfig;

fn store(dir: &std::path::Path, node: &str) -> Arc<Store> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut config = StoreConfig::new(4 << 20, node);
    config.segment_max_bytes = 16 << 10;
    Arc::new(Store::open(dir, config).unwrap())
}

fn config(ca: &TestCa, node: &str) -> PeerConfig {
    let mut c = PeerConfig::new(ca.settings(node));
    c.sync_interval = Duration::from_millis(50);
    c.retry = RetryPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        budget: 50,
        window: Duration::from_secs(10),
    };
    c.handshake_timeout = Duration::from_secs(5);
    c
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fill(s: &Store, n: usize) {
    for i in 0..n {
        s.append(format!("evidence {i}").as_bytes()).unwrap();
        s.seal().unwrap();
    }
}

#[test]
fn two_services_replicate_and_ack_over_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&tmp.path().join("pki"), "test.example");
    ca.issue("a", false);
    ca.issue("b", false);
    let sa = store(&tmp.path().join("a"), "a");
    let sb = store(&tmp.path().join("b"), "b");
    fill(&sa, 4);
    fill(&sb, 2);
    let a = PeerService::new(Arc::clone(&sa), config(&ca, "a")).unwrap();
    let b = PeerService::new(Arc::clone(&sb), config(&ca, "b")).unwrap();
    let addr = a.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    b.dial(addr).unwrap();
    wait_until("replication", || {
        sa.frontiers() == vec![("a".into(), 4), ("b".into(), 2)] && sb.frontiers() == sa.frontiers()
    });
    // New evidence on a reaches b without a new connection.
    fill(&sa, 1);
    wait_until("the new segment", || sb.frontiers()[0] == ("a".into(), 5));
    wait_until("acks", || {
        sa.segments()
            .iter()
            .filter(|i| i.sealed && i.origin == "a")
            .all(|i| i.acked_by == vec!["b".to_string()])
    });
    // Each segment arrived with its origin's signature and is kept with it.
    for (s, other) in [(&sa, "b"), (&sb, "a")] {
        for info in s
            .segments()
            .iter()
            .filter(|i| i.sealed && i.origin == other)
        {
            assert!(s.origin_signature(&info.id.unwrap()).unwrap().is_some());
        }
    }
    assert_eq!(a.status().origin_refused + b.status().origin_refused, 0);
    let st = a.status();
    assert_eq!(st.peers.len(), 1);
    assert_eq!(st.peers[0].identity, "spiffe://test.example/node/b");
    assert!(st.peers[0].connected);
    assert!(st.segments_out >= 5 && st.bytes_out > 0);
    assert!(st.rejected.is_empty(), "{:?}", st.rejected);
    b.stop(Duration::from_secs(2));
    wait_until("the link to close", || !a.status().peers[0].connected);
}

#[test]
fn revoked_expired_and_foreign_peers_are_refused_and_a_new_crl_applies_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&tmp.path().join("pki"), "test.example");
    let mut other = TestCa::new(&tmp.path().join("other"), "other.example");
    ca.issue("a", false);
    let b_serial = ca.issue("b", false);
    ca.issue("old", true);
    other.issue("x", false);
    let sa = store(&tmp.path().join("a"), "a");
    fill(&sa, 1);
    let a = PeerService::new(Arc::clone(&sa), config(&ca, "a")).unwrap();
    let addr = a.listen("127.0.0.1:0".parse().unwrap()).unwrap();

    let sx = store(&tmp.path().join("x"), "x");
    // x trusts both CAs (so it accepts a), a trusts only its own.
    let mut x_config = config(&other, "x");
    let both = tmp.path().join("both.crt");
    let mut pem = std::fs::read(ca.dir.join("ca.crt")).unwrap();
    pem.extend(std::fs::read(other.dir.join("ca.crt")).unwrap());
    std::fs::write(&both, pem).unwrap();
    x_config.tls.ca = both;
    x_config.tls.trust_domain = None;
    x_config.tls.crl.push(ca.dir.join("crl.pem"));
    let x = PeerService::new(Arc::clone(&sx), x_config).unwrap();
    x.dial(addr).unwrap();
    let sold = store(&tmp.path().join("old"), "old");
    let old = PeerService::new(Arc::clone(&sold), config(&ca, "old")).unwrap();
    old.dial(addr).unwrap();
    wait_until("both refusals", || {
        let r = a.status().rejected;
        r.contains_key("unknown_issuer") && r.contains_key("expired")
    });
    assert!(sx.frontiers().is_empty() && sold.frontiers().is_empty());
    x.stop(Duration::ZERO);
    old.stop(Duration::ZERO);

    // Revoke b, then start it: the CRL written after a started is enforced.
    ca.write_crl(&[b_serial], false);
    let sb = store(&tmp.path().join("b"), "b");
    let b = PeerService::new(Arc::clone(&sb), config(&ca, "b")).unwrap();
    b.dial(addr).unwrap();
    wait_until("the revoked refusal", || {
        a.status().rejected.contains_key("revoked")
    });
    assert!(sb.frontiers().is_empty());
    assert!(a.status().tls_reloads >= 1);
    b.stop(Duration::ZERO);

    // An expired CRL refuses everyone.
    ca.write_crl(&[], true);
    let sc = store(&tmp.path().join("c"), "c");
    ca.issue("c", false);
    let c = PeerService::new(Arc::clone(&sc), config(&ca, "c"));
    // c's own verifier refuses a's certificate too: dial and watch a's side.
    let c = c.unwrap();
    c.dial(addr).unwrap();
    wait_until("refusals under an expired CRL", || {
        c.status().rejected.keys().any(|k| k == "expired_crl")
    });
    assert!(sc.frontiers().is_empty());
}

#[test]
fn a_dead_peer_is_dialled_within_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&tmp.path().join("pki"), "test.example");
    ca.issue("a", false);
    let sa = store(&tmp.path().join("a"), "a");
    let mut cfg = config(&ca, "a");
    cfg.retry = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        budget: 3,
        window: Duration::from_secs(3600),
    };
    let a = PeerService::new(sa, cfg).unwrap();
    // A port with no listener: bind one, note it, and close it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    a.dial(addr).unwrap();
    wait_until("the budget to be spent", || {
        a.status().dials[0].attempts >= 3
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.status().dials[0].attempts, 3, "dialled past the budget");
}

#[test]
fn a_peer_revoked_while_connected_is_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&tmp.path().join("pki"), "test.example");
    ca.issue("a", false);
    let b_serial = ca.issue("b", false);
    let sa = store(&tmp.path().join("a"), "a");
    let sb = store(&tmp.path().join("b"), "b");
    let a = PeerService::new(Arc::clone(&sa), config(&ca, "a")).unwrap();
    let b = PeerService::new(Arc::clone(&sb), config(&ca, "b")).unwrap();
    let addr = a.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    b.dial(addr).unwrap();
    wait_until("the link", || a.status().peers.iter().any(|p| p.connected));
    // The mtime may not move within the file system's granularity; the size does.
    ca.write_crl(&[b_serial], false);
    wait_until("the revoked peer to be cut off", || {
        a.events(0).iter().any(|e| e.kind == "certificate_refused")
    });
    wait_until("the link to close", || {
        a.status().peers.iter().all(|p| !p.connected)
    });
    // And it stays out: its redials are refused at the handshake.
    wait_until("a refused redial", || {
        a.status().rejected.contains_key("revoked")
    });
    fill(&sa, 1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        sb.frontiers().is_empty()
            || sb.frontiers().iter().all(|(o, _)| o != "a")
            || sb.frontiers()[0].1 == 0
    );
}

/// The origin-signature blob node `signer` (its files under `ca`) makes for
/// segment `seq` of `origin`.
fn signed_by(
    ca: &TestCa,
    signer: &str,
    origin: &str,
    seq: u64,
    id: crate::hashing::Digest,
) -> Vec<u8> {
    use crate::crypto::ecdsa::PrivateKey;
    use crate::crypto::origin::{OriginSignature, Signer};
    let cert = std::fs::read(ca.dir.join(format!("{signer}.crt"))).unwrap();
    let key = std::fs::read(ca.dir.join(format!("{signer}.key"))).unwrap();
    let cert_der = pem::parse(cert).unwrap().into_contents();
    let key = PrivateKey::from_pkcs8_der(pem::parse(key).unwrap().contents()).unwrap();
    OriginSignature::sign(&key, Signer::Certificate(cert_der), origin, seq, id)
        .unwrap()
        .encode()
}

#[test]
fn a_segment_relayed_with_a_forged_origin_signature_is_refused_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&tmp.path().join("pki"), "test.example");
    for node in ["a", "b", "c"] {
        ca.issue(node, false);
    }
    // a sealed two segments; b holds both, the first with a's own signature,
    // the second with one b made in a's name (b's genuine certificate).
    let sa = store(&tmp.path().join("a"), "a");
    fill(&sa, 2);
    let sb = store(&tmp.path().join("b"), "b");
    for (info, signer) in sa.segments().iter().filter(|i| i.sealed).zip(["a", "b"]) {
        let id = info.id.unwrap();
        sb.import_segment(&sa.get_segment(&id).unwrap(), Some(&id))
            .unwrap();
        sb.put_origin_signature(&id, &signed_by(&ca, signer, "a", info.seq, id))
            .unwrap();
    }
    let sc = store(&tmp.path().join("c"), "c");
    let b = PeerService::new(Arc::clone(&sb), config(&ca, "b")).unwrap();
    let c = PeerService::new(Arc::clone(&sc), config(&ca, "c")).unwrap();
    let addr = b.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    c.dial(addr).unwrap();
    wait_until("the refusal", || c.status().origin_refused >= 1);
    let refused: Vec<PeerEvent> = c
        .events(0)
        .into_iter()
        .filter(|e| e.kind == "origin_refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].detail.starts_with("a #1 "),
        "{}",
        refused[0].detail
    );
    assert!(
        refused[0].detail.contains("not the origin"),
        "{}",
        refused[0].detail
    );
    // The genuine one is imported with its signature; the forged one is not.
    wait_until("the genuine segment", || {
        sc.frontiers() == vec![("a".to_string(), 1)]
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sc.frontiers(), vec![("a".to_string(), 1)]);
    let held: Vec<_> = sc.segments().into_iter().filter(|i| i.sealed).collect();
    assert_eq!(held.len(), 1);
    assert!(sc.origin_signature(&held[0].id.unwrap()).unwrap().is_some());
    // Nothing acknowledged the forged segment, and the connection stays up.
    assert!(c.status().peers.iter().any(|p| p.connected));
    assert_eq!(c.status().segments_in, 1);
}

#[test]
fn each_failure_is_reported_by_its_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&tmp.path().join("pki"), "test.example");
    ca.issue("a", false);
    let sa = store(&tmp.path().join("a"), "a");

    let mut slow = config(&ca, "a");
    slow.rate_in = 10.0;
    let err = PeerService::new(Arc::clone(&sa), slow).err().unwrap();
    assert!(
        matches!(err, PeerError::Settings(ref m) if m.contains("rate_in")),
        "{err}"
    );

    let mut missing = config(&ca, "a");
    missing.tls.ca = tmp.path().join("no-such-ca.pem");
    let err = PeerService::new(Arc::clone(&sa), missing).err().unwrap();
    assert!(
        matches!(err, PeerError::Files(ref m) if m.contains("no-such-ca.pem")),
        "{err}"
    );

    let a = PeerService::new(Arc::clone(&sa), config(&ca, "a")).unwrap();
    let taken = a.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let err = a.listen(taken).unwrap_err();
    assert!(
        matches!(err, PeerError::Network(ref m) if m.contains("cannot listen")),
        "{err}"
    );
    a.stop(Duration::from_millis(100));
    let err = a.dial(taken).unwrap_err();
    assert!(matches!(err, PeerError::Stopped(_)), "{err}");
}
