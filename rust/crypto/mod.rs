//! Signing keys and the small-fleet PKI, on one crypto stack: ring.
//!
//! - [`ecdsa`]: ECDSA P-256 / SHA-256 keys; ASN.1 DER signatures, SPKI public
//!   keys, PKCS#8 private keys (what cosign's key-pair scheme uses).
//! - [`keyfile`]: cosign's encrypted private-key file (scrypt + NaCl secretbox).
//! - [`pki`]: a CA, node certificates and CRLs for the peer transport (rcgen).
//! - [`origin`]: origin signatures over sealed segment ids.
//!
//! ring lacks scrypt and secretbox; two small RustCrypto crates fill in.

pub mod ecdsa;
pub mod keyfile;
pub mod origin;
pub mod pki;

#[cfg(test)]
mod pki_tests;
#[cfg(test)]
mod tests;

pub use ecdsa::{PrivateKey, PublicKey, SignatureError};
pub use keyfile::{KeyFileError, ScryptParams};
pub use pki::PkiError;
