//! The small-fleet PKI (issue #7): a CA, node certificates and CRLs.

/// A certificate, key or CRL could not be made, read or used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(pub String);
