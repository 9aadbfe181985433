//! Arbitrary bytes fed to the peer frame decoder, as a stream of frames:
//! it must return frames or an error, never panic or allocate past its bound.
//! The same bytes as the start of one frame's body go to the SEGMENT head
//! decoder a reader runs before the segment's bytes arrive.
//! Run with `cargo fuzz run peer_frames` (cargo-fuzz; on a stable toolchain:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run peer_frames --sanitizer none`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vedette::peers::frames::{split_frame, Frame, FrameLimits, LEN_BYTES, SEGMENT_HEAD_MAX};

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits {
        max_frame_bytes: 1 << 16,
        max_want_entries: 16,
        max_origins: 16,
    };
    let _ = Frame::segment_head(&data[..data.len().min(SEGMENT_HEAD_MAX)]);
    let mut rest = data;
    while let Ok(Some((frame, used))) = split_frame(rest, &limits) {
        // A frame that decoded encodes, and decodes back to itself.
        let wire = frame.encode(&limits).expect("a decoded frame encodes");
        let again = split_frame(&wire, &limits)
            .expect("re-decodes")
            .expect("whole");
        assert_eq!(again.0, frame);
        // Its head, decoded first, leaves exactly its bytes after it.
        let body = &wire[LEN_BYTES..];
        let head = Frame::segment_head(&body[..body.len().min(SEGMENT_HEAD_MAX)])
            .expect("a SEGMENT's head decodes");
        if let (Some(head), Frame::Segment { bytes, .. }) = (head, &frame) {
            assert_eq!(&body[head.len..], &bytes[..]);
        }
        rest = &rest[used..];
    }
});
