//! What the peer service reports to its caller, by kind, so that the
//! bindings map each kind to one Python error (`rust/bindings/errors.rs`).

/// A peer-service operation that could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Settings out of range; nothing was started.
    #[error("{0}")]
    Settings(String),
    /// A PKI file (CA, certificate, key, CRL) missing, unreadable or
    /// unusable; the message names the file.
    #[error("{0}")]
    Files(String),
    /// A socket could not be bound, or a peer could not be dialled or reached.
    #[error("{0}")]
    Network(String),
    /// A limit of the service reached (dial targets).
    #[error("{0}")]
    Busy(String),
    /// The service is stopped, or its runtime could not start.
    #[error("{0}")]
    Stopped(String),
}
