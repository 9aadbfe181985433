//! The frames' round trip, strictness and bounds, on arbitrary and
//! hand-made bytes.

use super::*;
use crate::hashing::{blake3, Algorithm};
use proptest::prelude::*;

fn small() -> FrameLimits {
    FrameLimits {
        max_frame_bytes: 4096,
        max_want_entries: 8,
        max_origins: 8,
    }
}

fn origin() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._:-]{1,20}"
}

fn seg_ref() -> impl Strategy<Value = SegmentRef> {
    (origin(), any::<u64>()).prop_map(|(origin, seq)| SegmentRef { origin, seq })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u64>(),
            prop::collection::vec((origin(), any::<u64>()), 0..8)
        )
            .prop_map(|(version, accept_rate, frontiers)| Frame::Hello {
                version,
                accept_rate,
                frontiers
            }),
        prop::collection::vec(seg_ref(), 0..8).prop_map(Frame::Want),
        (
            seg_ref(),
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(any::<u8>(), 0..1000)
        )
            .prop_map(|(at, signature, bytes)| Frame::Segment {
                at,
                id: blake3(&bytes),
                signature,
                bytes,
            }),
        any::<[u8; 32]>().prop_map(|b| Frame::Ack(Digest::new(Algorithm::Blake3, b))),
        seg_ref().prop_map(Frame::Gone),
        (0u8..5, "[ -~]{0,100}").prop_map(|(c, reason)| Frame::Bye {
            code: ByeCode::from_byte(c),
            reason
        }),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip(f in frame()) {
        let wire = f.encode(&small()).unwrap();
        let (back, used) = split_frame(&wire, &small()).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        let owned = Frame::decode_owned(wire[LEN_BYTES..].to_vec(), &small()).unwrap();
        prop_assert_eq!(&owned, &f);
        // A reader that decodes a SEGMENT's head first, from at most
        // SEGMENT_HEAD_MAX bytes, finds the segment's bytes right after it.
        let body = &wire[LEN_BYTES..];
        let head = Frame::segment_head(&body[..body.len().min(SEGMENT_HEAD_MAX)]).unwrap();
        match (&f, head) {
            (Frame::Segment { at, id, signature, bytes }, Some(head)) => {
                prop_assert_eq!(&head.at, at);
                prop_assert_eq!(&head.id, id);
                prop_assert_eq!(&head.signature, signature);
                prop_assert_eq!(&body[head.len..], &bytes[..]);
            }
            (Frame::Segment { .. }, None) => prop_assert!(false, "a SEGMENT without a head"),
            (_, head) => prop_assert_eq!(head, None),
        }
        prop_assert_eq!(back, f);
        // Every strict prefix asks for more bytes, never errors or panics.
        for cut in 0..wire.len() {
            prop_assert_eq!(split_frame(&wire[..cut], &small()), Ok(None));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        // Either a frame, a request for more bytes, or an error: never a panic.
        let _ = split_frame(&bytes, &small());
        // Taking the body decodes exactly what borrowing it does.
        prop_assert_eq!(
            Frame::decode_owned(bytes.clone(), &small()).ok(),
            Frame::decode(&bytes, &small()).ok()
        );
    }

    #[test]
    fn a_frame_with_a_byte_flipped_never_panics(f in frame(), at in any::<prop::sample::Index>(), flip in 1u8..) {
        let mut wire = f.encode(&small()).unwrap();
        let i = at.index(wire.len());
        wire[i] ^= flip;
        let _ = split_frame(&wire, &small());
    }
}

#[test]
fn oversized_length_is_refused_before_reading_the_body() {
    let wire = u32::MAX.to_le_bytes();
    assert!(matches!(
        split_frame(&wire, &small()),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(
        split_frame(&0u32.to_le_bytes(), &small()),
        Err(FrameError::Empty)
    );
}

#[test]
fn unknown_type_and_trailing_bytes_are_errors() {
    assert_eq!(
        Frame::decode(&[0x7f], &small()),
        Err(FrameError::UnknownType(0x7f))
    );
    let mut ack = Frame::Ack(blake3(b"x")).encode(&small()).unwrap();
    ack.push(0);
    let body = &ack[LEN_BYTES..];
    assert!(matches!(
        Frame::decode(body, &small()),
        Err(FrameError::Trailing { left: 1, .. })
    ));
}

#[test]
fn want_over_the_bound_is_refused_both_ways() {
    let refs: Vec<SegmentRef> = (0..9)
        .map(|seq| SegmentRef {
            origin: "a".into(),
            seq,
        })
        .collect();
    assert!(matches!(
        Frame::Want(refs.clone()).encode(&small()),
        Err(FrameError::TooMany { .. })
    ));
    let wide = FrameLimits {
        max_want_entries: 100,
        ..small()
    };
    let wire = Frame::Want(refs).encode(&wide).unwrap();
    assert!(matches!(
        split_frame(&wire, &small()),
        Err(FrameError::TooMany { count: 9, .. })
    ));
    // A count that claims more entries than the body holds: truncated, no big allocation.
    let mut body = vec![FrameType::Want as u8];
    body.extend_from_slice(&8u16.to_le_bytes());
    assert!(matches!(
        Frame::decode(&body, &small()),
        Err(FrameError::Truncated { .. })
    ));
}

fn segment_body(sig_len: u16, sig: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut body = vec![FrameType::Segment as u8, 1, b'a'];
    body.extend_from_slice(&7u64.to_le_bytes());
    body.extend_from_slice(blake3(bytes).as_bytes());
    body.extend_from_slice(&sig_len.to_le_bytes());
    body.extend_from_slice(sig);
    body.extend_from_slice(bytes);
    body
}

#[test]
fn a_segment_carries_its_signature_or_none() {
    let wide = FrameLimits {
        max_frame_bytes: 1 << 16,
        ..small()
    };
    for signature in [Vec::new(), vec![0x5a; 600], vec![1; MAX_BLOB_LEN]] {
        let f = Frame::Segment {
            at: SegmentRef {
                origin: "node-a".into(),
                seq: 3,
            },
            id: blake3(b"segment"),
            signature: signature.clone(),
            bytes: b"segment".to_vec(),
        };
        let wire = f.encode(&wide).unwrap();
        let (back, _) = split_frame(&wire, &wide).unwrap().unwrap();
        assert_eq!(back, f);
        let owned = Frame::decode_owned(wire[LEN_BYTES..].to_vec(), &wide).unwrap();
        let Frame::Segment {
            signature: sig,
            bytes,
            ..
        } = owned
        else {
            panic!("not a segment: {owned:?}")
        };
        assert_eq!((sig, bytes), (signature, b"segment".to_vec()));
    }
    // The layout, byte for byte: the signature sits between the id and the segment.
    let body = segment_body(2, b"sg", b"rest");
    assert_eq!(
        Frame::decode(&body, &small()).unwrap(),
        Frame::Segment {
            at: SegmentRef {
                origin: "a".into(),
                seq: 7
            },
            id: blake3(b"rest"),
            signature: b"sg".to_vec(),
            bytes: b"rest".to_vec(),
        }
    );
}

#[test]
fn an_oversized_signature_is_refused_both_ways() {
    let over = u16::try_from(MAX_BLOB_LEN + 1).unwrap();
    let wide = FrameLimits {
        max_frame_bytes: 1 << 16,
        ..small()
    };
    // Claimed over the bound: refused before the bytes are taken, even
    // when the body holds them.
    let body = segment_body(over, &vec![0; MAX_BLOB_LEN + 1], b"x");
    for decoded in [
        Frame::decode(&body, &wide),
        Frame::decode_owned(body.clone(), &wide),
    ] {
        let err = decoded.unwrap_err();
        assert!(
            matches!(&err, FrameError::Invalid { reason, .. } if reason.contains("origin signature")),
            "{err}"
        );
    }
    // Claimed longer than the body: truncated.
    let body = segment_body(100, b"short", b"");
    assert!(matches!(
        Frame::decode(&body, &wide),
        Err(FrameError::Truncated { .. })
    ));
    let f = Frame::Segment {
        at: SegmentRef {
            origin: "a".into(),
            seq: 0,
        },
        id: blake3(b""),
        signature: vec![0; MAX_BLOB_LEN + 1],
        bytes: Vec::new(),
    };
    assert!(matches!(f.encode(&wide), Err(FrameError::Invalid { .. })));
}

#[test]
fn bad_origins_are_refused() {
    let mut body = vec![FrameType::Gone as u8, 3];
    body.extend_from_slice(b"a/b");
    body.extend_from_slice(&0u64.to_le_bytes());
    assert!(matches!(
        Frame::decode(&body, &small()),
        Err(FrameError::Invalid { .. })
    ));
    let mut body = vec![FrameType::Gone as u8, 0];
    body.extend_from_slice(&0u64.to_le_bytes());
    assert!(Frame::decode(&body, &small()).is_err());
}

#[test]
fn the_largest_segment_head_fits_segment_head_max() {
    let f = Frame::Segment {
        at: SegmentRef {
            origin: "o".repeat(crate::store::format::MAX_ORIGIN_LEN),
            seq: u64::MAX,
        },
        id: blake3(b"segment"),
        signature: vec![7; MAX_BLOB_LEN],
        bytes: b"segment".to_vec(),
    };
    let limits = FrameLimits {
        max_frame_bytes: 1 << 20,
        ..small()
    };
    let wire = f.encode(&limits).unwrap();
    let body = &wire[LEN_BYTES..];
    let head = Frame::segment_head(&body[..SEGMENT_HEAD_MAX])
        .unwrap()
        .unwrap();
    assert_eq!(head.len, SEGMENT_HEAD_MAX);
    assert_eq!(&body[head.len..], b"segment");
}
