//! Origin signatures: a segment is imported only with its origin's signature
//! by a fleet certificate, served only signed, and refused when tampered with.

use super::*;

#[test]
fn a_segment_is_imported_only_with_its_origins_signature() {
    let (da, db) = (tmp(), tmp());
    let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
    fill(&sa, 1);
    let ca = fleet();
    let id = sa.segments()[0].id.unwrap();
    let bytes = sa.get_segment(&id).unwrap();
    let at = SegmentRef {
        origin: "a".into(),
        seq: 0,
    };
    let other = fleet();
    let bare = {
        let key = PrivateKey::generate().unwrap();
        let spki = key.public_key().spki_der().to_vec();
        OriginSignature::sign(&key, Signer::Key(spki), "a", 0, id)
            .unwrap()
            .encode()
    };
    let forged = [
        ("none", Vec::new()),
        // c's own valid certificate, signing in a's name.
        ("another node's", sign_as(&keys(&ca, "c"), "a", 0, id)),
        // A certificate naming a, from a CA that is not the fleet's.
        ("a foreign CA's", sign_as(&keys(&other, "a"), "a", 0, id)),
        ("a bare key's", bare),
        // a's genuine signature, for another segment of a.
        ("another segment's", sign_as(&keys(&ca, "a"), "a", 1, id)),
        ("garbage", vec![0x5a; 200]),
        (
            "an oversized",
            vec![0x5a; crate::store::MAX_SIGNATURE_BYTES + 1],
        ),
    ];
    let mut b = keyed(&sb, &Arc::default(), "a", FrameLimits::default(), &ca);
    b.on_frame(b.hello(0)).unwrap();
    for (n, (what, signature)) in forged.into_iter().enumerate() {
        b.requested.insert(at.clone());
        b.gone.clear();
        let step = b
            .on_frame(Frame::Segment {
                at: at.clone(),
                id,
                signature: signature.clone(),
                bytes: bytes.clone(),
            })
            .unwrap_or_else(|e| panic!("{what}: the connection ended: {e}"));
        let Step::Send(out) = step else { panic!() };
        assert!(
            !out.iter().any(|f| matches!(f, Frame::Ack(_))),
            "{what}: acknowledged"
        );
        assert!(sb.frontiers().is_empty(), "{what}: imported");
        assert!(check_origin(b.origin_keys().as_deref(), &at, &id, &signature).is_err());
        assert_eq!(b.stats.origin_refused, n as u64 + 1, "{what}");
        assert!(b.requested.is_empty() && b.receiving.is_empty(), "{what}");
        // Not asked of this peer again on this connection.
        assert!(b.gone.contains(&at), "{what}");
    }
    // Without the fleet CA nothing is accepted, however well signed.
    let genuine = sign_as(&keys(&ca, "a"), "a", 0, id);
    assert!(check_origin(None, &at, &id, &genuine).is_err());
    // The genuine signature: imported, acknowledged, and kept beside it.
    b.requested.insert(at.clone());
    let Step::Send(out) = b
        .on_frame(Frame::Segment {
            at: at.clone(),
            id,
            signature: genuine.clone(),
            bytes,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(out.first(), Some(&Frame::Ack(id)));
    assert_eq!(sb.frontiers(), vec![("a".to_string(), 1)]);
    assert_eq!(sb.origin_signature(&id).unwrap(), Some(genuine));
}

#[test]
fn only_signed_segments_are_served() {
    let (da, db, dc) = (tmp(), tmp(), tmp());
    let (sa, sb, sc) = (
        store(da.path(), "a"),
        store(db.path(), "b"),
        store(dc.path(), "c"),
    );
    fill(&sa, 1);
    fill(&sc, 1);
    let ca = fleet();
    // b relays c's segment, imported without its signature (before
    // signatures travelled): b cannot vouch for it and answers GONE.
    let c_id = sc.segments()[0].id.unwrap();
    sb.import_segment(&sc.get_segment(&c_id).unwrap(), None)
        .unwrap();
    let mut serve = keyed(&sb, &Arc::default(), "a", FrameLimits::default(), &ca);
    let c0 = SegmentRef {
        origin: "c".into(),
        seq: 0,
    };
    serve.on_frame(serve.hello(0)).unwrap();
    serve.on_frame(Frame::Want(vec![c0.clone()])).unwrap();
    assert_eq!(
        serve.next_to_serve().unwrap(),
        Some(Frame::Gone(c0.clone()))
    );
    // With c's signature beside it, b serves it as it is.
    let blob = sign_as(&keys(&ca, "c"), "c", 0, c_id);
    sb.put_origin_signature(&c_id, &blob).unwrap();
    serve.on_frame(Frame::Want(vec![c0])).unwrap();
    let Some(Frame::Segment { signature, .. }) = serve.next_to_serve().unwrap() else {
        panic!("not served")
    };
    assert_eq!(signature, blob);
    // a's own segment, not signed yet: signed as it leaves, and kept.
    let a_id = sa.segments()[0].id.unwrap();
    assert_eq!(sa.origin_signature(&a_id).unwrap(), None);
    let mut own = keyed(&sa, &Arc::default(), "b", FrameLimits::default(), &ca);
    own.on_frame(own.hello(0)).unwrap();
    let a0 = SegmentRef {
        origin: "a".into(),
        seq: 0,
    };
    own.on_frame(Frame::Want(vec![a0.clone()])).unwrap();
    let Some(Frame::Segment { signature, .. }) = own.next_to_serve().unwrap() else {
        panic!("not served")
    };
    assert!(check_origin(own.origin_keys().as_deref(), &a0, &a_id, &signature).is_ok());
    assert_eq!(sa.origin_signature(&a_id).unwrap(), Some(signature));
    // A node without a usable key serves none of its own unsigned segments.
    fill(&sa, 1);
    let mut keyless = Session::new(
        Arc::clone(&sa),
        Arc::default(),
        "b".into(),
        FrameLimits::default(),
    );
    keyless.on_frame(keyless.hello(0)).unwrap();
    let a1 = SegmentRef {
        origin: "a".into(),
        seq: 1,
    };
    keyless.on_frame(Frame::Want(vec![a1.clone()])).unwrap();
    assert_eq!(keyless.next_to_serve().unwrap(), Some(Frame::Gone(a1)));
}

#[test]
fn a_tampered_segment_is_refused_and_not_stored() {
    let (da, db) = (tmp(), tmp());
    let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
    fill(&sa, 1);
    let (mut session, step) = after_hello(&sa, &sb);
    let ca = fleet();
    session.set_origin_keys(Some(keys(&ca, "b")));
    let Step::Send(wants) = step else { panic!() };
    assert_eq!(wants.len(), 1);
    let id = sa.segments()[0].id.unwrap();
    let mut bytes = sa.get_segment(&id).unwrap();
    let last = bytes.len() - 30;
    bytes[last] ^= 1;
    // Signed by its origin: what is refused is the bytes, not the signature.
    let signature = sign_as(&keys(&ca, "a"), "a", 0, id);
    let err = session
        .on_frame(Frame::Segment {
            at: SegmentRef {
                origin: "a".into(),
                seq: 0,
            },
            id,
            signature,
            bytes,
        })
        .unwrap_err();
    assert_eq!(err.code, ByeCode::Protocol);
    assert!(sb.frontiers().is_empty());
}
