//! The peer transport (docs/contracts.md, "Peer sync protocol"): sealed segments replicated between nodes
//! over mutual TLS, within per-peer quotas, with bounded retry.
//!
//! - [`frames`]: the sync protocol's frames and their strict decoder.
//! - [`protocol`]: one connection's state machine, with the store as the only
//!   source and sink of segments.
//! - [`tls`]: rustls configuration, certificate and CRL checks, peer identity.
//! - [`retry`]: full-jitter exponential backoff with a retry budget (INV-12).
//! - [`service`]: the `PeerService`, its own tokio runtime, listeners and dials.
//! - `conn`: one authenticated connection's reading and writing, within the
//!   peer's quotas.
//! - [`error`]: [`PeerError`], what the service reports, by kind.

mod conn;
pub mod error;
pub mod frames;
pub mod protocol;
pub mod retry;
pub mod service;
pub mod tls;

pub use error::PeerError;
