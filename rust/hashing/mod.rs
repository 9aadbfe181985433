//! Hashing: typed digests, hash roles, streaming and file hashing, canonical
//! JSON and the strict JSON reader it (and intent parsing) uses.
//!
//! Two algorithms with fixed roles (INV-16): BLAKE3 names what vedette
//! produces (behavioral fingerprints, segment ids), SHA-256 names what the OCI
//! ecosystem already names (artifact digests, policy hashes).

pub mod canonical_json;
/// The pieces of the canonical JSON writer, for callers that walk their own values.
pub use canonical_json as canonical;
mod digest;
mod file;
mod hasher;
mod role;
mod strict_json;

pub use canonical_json::{canonical_json, canonical_json_from_str, CanonicalJsonError};
pub use digest::{quote, Algorithm, Digest, DigestParseError, DIGEST_LEN};
pub use file::{hash_file, FileHashError, MAX_FILE_HASH_THREADS};
pub use hasher::{blake3, sha256, Hasher};
pub use role::{require_role, HashRole, HashRoleError};
pub use strict_json::{parse_strict, StrictJsonError};
