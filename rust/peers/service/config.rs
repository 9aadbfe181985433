//! What a peer service is bounded by, and the check that every bound is in
//! range before anything starts.

use std::time::Duration;

use crate::peers::error::PeerError;
use crate::peers::frames::FrameLimits;
use crate::peers::retry::RetryPolicy;
use crate::peers::tls::TlsSettings;

/// Everything the service is bounded by. Limits live here, not as literals.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The PKI files and the identities allowed to connect.
    pub tls: TlsSettings,
    /// Bounds on the frames this node reads and writes; `max_want_entries`
    /// is also the WANT window each way (INV-07).
    pub limits: FrameLimits,
    /// Longest a TLS handshake may take, and a dial's TCP connect before it.
    pub handshake_timeout: Duration,
    /// A connection that receives nothing for this long is closed (a HELLO is
    /// sent every third of it as a keep-alive).
    pub idle_timeout: Duration,
    /// How often frontiers are re-announced when they moved.
    pub sync_interval: Duration,
    /// Authenticated connections at once, both directions.
    pub max_connections: usize,
    /// Handshakes in progress at once from one source address.
    pub max_pending_per_addr: usize,
    /// Handshakes in progress at once, all addresses.
    pub max_pending: usize,
    /// Addresses dialled (static peers and beacon candidates).
    pub max_dial_targets: usize,
    /// Bytes/s each peer is read at most, announced to it in HELLO as the
    /// rate this node accepts (at least 1024).
    pub rate_in: f64,
    /// Capacity in bytes of each peer's inbound bucket: how far a peer may
    /// run ahead of `rate_in` (at least 16 KiB, one read chunk).
    pub burst_in: f64,
    /// Bytes/s written to each peer at most; a lower rate the peer announced
    /// is kept to as well (at least 1024).
    pub rate_out: f64,
    /// Capacity in bytes of each peer's outbound bucket (at least 16 KiB).
    pub burst_out: f64,
    /// A peer whose reads waited on its inbound quota for more than this
    /// fraction of `quota_window` is disconnected.
    pub quota_margin: f64,
    /// The period over which a peer's waits on its inbound quota are summed
    /// and held against `quota_margin`.
    pub quota_window: Duration,
    /// How dials to each address are spaced and budgeted (INV-12).
    pub retry: RetryPolicy,
    /// Events kept for the Python side to read (oldest dropped first).
    pub max_events: usize,
    /// Worker threads of the service's runtime.
    pub workers: usize,
}

impl PeerConfig {
    /// Every bound at its default, with the PKI files and allow-list of `tls`.
    pub fn new(tls: TlsSettings) -> PeerConfig {
        PeerConfig {
            tls,
            limits: FrameLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            sync_interval: Duration::from_secs(1),
            max_connections: 64,
            max_pending_per_addr: 4,
            max_pending: 64,
            max_dial_targets: 64,
            rate_in: 8.0 * 1024.0 * 1024.0,
            burst_in: 1024.0 * 1024.0,
            rate_out: 8.0 * 1024.0 * 1024.0,
            burst_out: 1024.0 * 1024.0,
            quota_margin: 0.5,
            quota_window: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            max_events: 1024,
            workers: 2,
        }
    }

    /// Checks every bound: rates of at least 1024 bytes/s, bursts of at least
    /// 16 KiB, `quota_margin` strictly between 0 and 1, frames of at least
    /// 4096 bytes, counts of at least 1 and durations above zero.
    /// [`PeerError::Settings`] names the first out of range;
    /// [`PeerService::new`](super::PeerService::new) calls this first, so
    /// nothing starts with settings out of range.
    pub fn validate(&self) -> Result<(), PeerError> {
        self.out_of_range().map_err(PeerError::Settings)
    }

    fn out_of_range(&self) -> Result<(), String> {
        let chunk = 16.0 * 1024.0;
        for (name, v) in [("rate_in", self.rate_in), ("rate_out", self.rate_out)] {
            if !v.is_finite() || v < 1024.0 {
                return Err(format!("{name} must be at least 1024 bytes/s, got {v}"));
            }
        }
        for (name, v) in [("burst_in", self.burst_in), ("burst_out", self.burst_out)] {
            if !v.is_finite() || v < chunk {
                return Err(format!("{name} must be at least {chunk} bytes, got {v}"));
            }
        }
        if !(self.quota_margin > 0.0 && self.quota_margin < 1.0) {
            return Err(format!(
                "quota_margin must be between 0 and 1, got {}",
                self.quota_margin
            ));
        }
        if self.limits.max_want_entries == 0 || self.limits.max_frame_bytes < 4096 {
            return Err("max_want_entries must be >= 1 and max_frame_bytes >= 4096".into());
        }
        for (name, v) in [
            ("max_connections", self.max_connections),
            ("max_pending_per_addr", self.max_pending_per_addr),
            ("max_pending", self.max_pending),
            ("max_dial_targets", self.max_dial_targets),
            ("max_events", self.max_events),
            ("workers", self.workers),
            ("retry budget", self.retry.budget as usize),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("idle_timeout", self.idle_timeout),
            ("sync_interval", self.sync_interval),
            ("quota_window", self.quota_window),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be above zero"));
            }
        }
        Ok(())
    }
}
