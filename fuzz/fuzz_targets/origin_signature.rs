//! Arbitrary bytes as an origin-signature blob: an error, or a blob that
//! encodes back to exactly the same bytes; never a panic. The checksum is
//! made valid first, so the fuzzer explores the fields behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vedette::crypto::origin::OriginSignature;

fuzz_target!(|data: &[u8]| {
    let mut blob = data.to_vec();
    let crc = crc32c(&blob);
    blob.extend_from_slice(&crc.to_le_bytes());
    if let Ok(signature) = OriginSignature::decode(&blob) {
        assert_eq!(signature.encode(), blob);
        let _ = signature.verify(&signature.origin.clone(), signature.seq, &signature.id);
    }
});

/// CRC-32C (Castagnoli), bit by bit: the fuzz crate keeps no dependency of
/// its own for it, and speed does not matter here.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
