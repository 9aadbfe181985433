//! vedette's Rust core.
//!
//! Each capability lives in a plain module with no Python in it, so it can be
//! tested with `cargo test` and reused from Rust:
//!
//! - [`hashing`]: BLAKE3 and SHA-256 digests with fixed hash roles, RFC 8785 canonical JSON.
//! - [`policy`]: OPA bundles, Rego evaluation (regorus), agent manifests.
//! - [`gate`]: one intent from body bytes to a verdict and its evidence record.
//! - [`quota`]: lock-free token buckets and a bounded keyed quota table.
//! - [`crypto`]: ECDSA P-256 signing keys in cosign's formats, the small-fleet PKI.
//! - [`store`]: the segment store: durable, hash-chained evidence under a disk ceiling.
//! - [`peers`]: the peer transport: mutual TLS, the sync protocol, quotas, retry.
//!
//! The PyO3 layer in `bindings` only converts types, releases the GIL and maps
//! errors; it is compiled when the `python` feature is on (maturin turns it on).
//! How the parts depend on each other: docs/architecture.md.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod crypto;
pub mod gate;
pub mod hashing;
pub mod peers;
pub mod policy;
pub mod quota;
pub mod store;

#[cfg(feature = "python")]
mod bindings;
