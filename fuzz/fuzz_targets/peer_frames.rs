//! Arbitrary bytes fed to the peer frame decoder, as a stream of frames:
//! it must return frames or an error, never panic or allocate past its bound.
//! Run with `cargo fuzz run peer_frames` (cargo-fuzz; on a stable toolchain:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run peer_frames --sanitizer none`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vedette::peers::frames::{split_frame, FrameLimits};

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits {
        max_frame_bytes: 1 << 16,
        max_want_entries: 16,
        max_origins: 16,
    };
    let mut rest = data;
    while let Ok(Some((frame, used))) = split_frame(rest, &limits) {
        // A frame that decoded encodes, and decodes back to itself.
        let wire = frame.encode(&limits).expect("a decoded frame encodes");
        let again = split_frame(&wire, &limits).expect("re-decodes").expect("whole");
        assert_eq!(again.0, frame);
        rest = &rest[used..];
    }
});
