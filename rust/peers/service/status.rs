//! What a peer service reports: the event log's entries, each link's live
//! counters and quota state, the service-wide totals, and the snapshot
//! [`PeerService::status`] makes of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use super::{now_unix_ms, PeerService};
use crate::peers::tls::PeerIdentity;

/// Something that happened to a peer, kept in a bounded log.
#[derive(Clone, Debug)]
pub struct PeerEvent {
    /// Numbers run on from 1 for the service's life; gaps mean events dropped.
    pub seq: u64,
    /// When it was recorded: wall-clock milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// `connected`, `handshake_rejected`, `quota_exceeded`, `protocol_error`,
    /// `origin_refused` (a segment whose origin signature is missing or fails), …
    pub kind: String,
    /// The peer's identity, or its address before the handshake.
    pub peer: Option<String>,
    /// What happened, in words; at most 512 characters.
    pub detail: String,
}

/// Where a peer stands against its inbound quota (INV-13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum QuotaState {
    /// No read has had to wait on the quota, or a whole window has passed
    /// without a wait since one last did.
    Ok = 0,
    /// Reads have waited on the quota: the peer sends at its rate or above.
    Throttled = 1,
    /// Reads waited longer than the margin allows; the peer is disconnected.
    Exceeded = 2,
}

impl QuotaState {
    /// The label status and metrics show: `ok`, `throttled` or `exceeded`.
    pub fn name(self) -> &'static str {
        match self {
            QuotaState::Ok => "ok",
            QuotaState::Throttled => "throttled",
            QuotaState::Exceeded => "exceeded",
        }
    }
}

/// One authenticated connection's live counters.
#[derive(Debug)]
pub struct PeerLink {
    /// Who the peer is, from its verified certificate; its quotas are keyed
    /// by this.
    pub identity: PeerIdentity,
    /// The certificate chain the peer presented, checked again when the PKI files change.
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The peer's socket address: the one dialled, or the one it came from.
    pub address: SocketAddr,
    /// True when this node dialled the peer.
    pub outbound: bool,
    /// False once the connection has ended; the link stays listed for status
    /// among the most recent closed ones.
    pub connected: AtomicBool,
    /// When the connection was admitted, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Frame bytes read from the peer, length prefixes included (TLS records'
    /// own overhead not counted).
    pub bytes_in: AtomicU64,
    /// Frame bytes written to the peer, length prefixes included.
    pub bytes_out: AtomicU64,
    /// Segments received from the peer, stored and ACKed.
    pub segments_in: AtomicU64,
    /// SEGMENT frames sent to the peer.
    pub segments_out: AtomicU64,
    /// When segments last moved either way, or a HELLO showed nothing to
    /// fetch, in milliseconds since the Unix epoch; 0: not yet.
    pub last_sync_ms: AtomicU64,
    /// Segments the peer holds and this node lacks, summed over origins, as
    /// last computed (on HELLO, when nothing is outstanding, and every 16
    /// segments stored).
    pub frontier_lag: AtomicU64,
    quota: AtomicU8,
}

impl PeerLink {
    /// A link just authenticated: connected since now, every counter at 0.
    pub(super) fn new(
        identity: PeerIdentity,
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        address: SocketAddr,
        outbound: bool,
    ) -> PeerLink {
        PeerLink {
            identity,
            chain,
            address,
            outbound,
            connected: AtomicBool::new(true),
            since_ms: now_unix_ms(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            segments_in: AtomicU64::new(0),
            segments_out: AtomicU64::new(0),
            last_sync_ms: AtomicU64::new(0),
            frontier_lag: AtomicU64::new(0),
            quota: AtomicU8::new(0),
        }
    }

    /// Records where the peer now stands against its inbound quota.
    pub fn set_quota(&self, state: QuotaState) {
        self.quota.store(state as u8, Ordering::Relaxed);
    }

    /// Where the peer stands against its inbound quota.
    pub fn quota(&self) -> QuotaState {
        match self.quota.load(Ordering::Relaxed) {
            0 => QuotaState::Ok,
            1 => QuotaState::Throttled,
            _ => QuotaState::Exceeded,
        }
    }
}

/// Service-wide counters.
#[derive(Debug, Default)]
pub struct Totals {
    /// Frame bytes read, over all peers.
    pub bytes_in: AtomicU64,
    /// Frame bytes written, over all peers.
    pub bytes_out: AtomicU64,
    /// Segments received, stored and ACKed, over all peers.
    pub segments_in: AtomicU64,
    /// SEGMENT frames sent, over all peers.
    pub segments_out: AtomicU64,
    /// Handshakes that led to a connection: identity allowed, not this node
    /// itself, and a connection slot free.
    pub handshakes_ok: AtomicU64,
    /// Peers disconnected for sending beyond their inbound quota.
    pub quota_exceeded: AtomicU64,
    /// Segments refused for a missing or failing origin signature.
    pub origin_refused: AtomicU64,
}

/// A dial target's state, for status.
#[derive(Clone, Debug)]
pub struct DialStatus {
    /// The address dialled, as `ip:port`.
    pub address: String,
    /// Dials made so far; never reset.
    pub attempts: u64,
    /// Failures in a row since the last success.
    pub failures: u32,
    /// True while a connection made by this dial is up.
    pub connected: bool,
    /// Why the last dial failed (`reason: detail`); `None` before any failure
    /// and after a success.
    pub last_error: Option<String>,
}

/// One link's state, as [`PeerService::status`] reports it (see [`PeerLink`]
/// for what each counter counts).
#[derive(Clone, Debug)]
pub struct PeerStatus {
    /// The peer's identity: its certificate's SAN URI or DNS name.
    pub identity: String,
    /// The peer's node id.
    pub node: String,
    /// The peer's socket address.
    pub address: String,
    /// True when this node dialled the peer.
    pub outbound: bool,
    /// False once the connection has ended.
    pub connected: bool,
    /// When the connection was admitted, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// Frame bytes read from the peer.
    pub bytes_in: u64,
    /// Frame bytes written to the peer.
    pub bytes_out: u64,
    /// Segments received from the peer, stored and ACKed.
    pub segments_in: u64,
    /// SEGMENT frames sent to the peer.
    pub segments_out: u64,
    /// [`QuotaState::name`]: `ok`, `throttled` or `exceeded`.
    pub quota: &'static str,
    /// When segments last moved or the two were found in sync, in
    /// milliseconds since the Unix epoch; `None`: not yet.
    pub last_sync_unix_ms: Option<u64>,
    /// Segments the peer holds and this node lacks, as last computed.
    pub frontier_lag: u64,
}

/// A snapshot of the whole service, as [`PeerService::status`] takes it.
#[derive(Clone, Debug)]
pub struct ServiceStatus {
    /// False once the service has been told to stop.
    pub running: bool,
    /// The addresses listened on, as bound.
    pub listening: Vec<String>,
    /// Every live link, and the most recent closed ones (up to 64).
    pub peers: Vec<PeerStatus>,
    /// Every address dialled.
    pub dials: Vec<DialStatus>,
    /// Handshakes and connections refused, counted by reason label
    /// ([`rejection_reason`](crate::peers::tls::rejection_reason)'s, and
    /// `timeout`, `too_many_pending`, `too_many_connections`, `tls_config`, …).
    pub rejected: BTreeMap<String, u64>,
    /// [`Totals::bytes_in`].
    pub bytes_in: u64,
    /// [`Totals::bytes_out`].
    pub bytes_out: u64,
    /// [`Totals::segments_in`].
    pub segments_in: u64,
    /// [`Totals::segments_out`].
    pub segments_out: u64,
    /// [`Totals::handshakes_ok`].
    pub handshakes_ok: u64,
    /// [`Totals::quota_exceeded`].
    pub quota_exceeded: u64,
    /// [`Totals::origin_refused`].
    pub origin_refused: u64,
    /// Authenticated connections open now (at most `max_connections`).
    pub connections: usize,
    /// Segments being fetched now, over all connections.
    pub in_flight: usize,
    /// How many times the TLS configurations were rebuilt from changed files
    /// or on request ([`TlsFiles::reloads`](crate::peers::tls::TlsFiles::reloads)).
    pub tls_reloads: u64,
    /// Why the TLS files cannot be used now (naming the file), or `None`:
    /// while it is set no handshake succeeds and no segment moves.
    pub tls_error: Option<String>,
}

impl PeerService {
    /// The service's state now: links, dials, refusals and counters. Each
    /// counter is read on its own, so the snapshot is not atomic as a whole.
    pub fn status(&self) -> ServiceStatus {
        let links = self.inner.links.lock().unwrap_or_else(|p| p.into_inner());
        let peers = links
            .iter()
            .map(|l| PeerStatus {
                identity: l.identity.name.clone(),
                node: l.identity.node.clone(),
                address: l.address.to_string(),
                outbound: l.outbound,
                connected: l.connected.load(Ordering::Relaxed),
                since_unix_ms: l.since_ms,
                bytes_in: l.bytes_in.load(Ordering::Relaxed),
                bytes_out: l.bytes_out.load(Ordering::Relaxed),
                segments_in: l.segments_in.load(Ordering::Relaxed),
                segments_out: l.segments_out.load(Ordering::Relaxed),
                quota: l.quota().name(),
                last_sync_unix_ms: match l.last_sync_ms.load(Ordering::Relaxed) {
                    0 => None,
                    ms => Some(ms),
                },
                frontier_lag: l.frontier_lag.load(Ordering::Relaxed),
            })
            .collect();
        drop(links);
        let dials = self
            .inner
            .dials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(addr, t)| t.status(addr))
            .collect();
        let t = &self.inner.totals;
        ServiceStatus {
            running: !self.inner.stopping(),
            listening: self.listening().iter().map(ToString::to_string).collect(),
            peers,
            dials,
            rejected: self
                .inner
                .rejected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            bytes_in: t.bytes_in.load(Ordering::Relaxed),
            bytes_out: t.bytes_out.load(Ordering::Relaxed),
            segments_in: t.segments_in.load(Ordering::Relaxed),
            segments_out: t.segments_out.load(Ordering::Relaxed),
            handshakes_ok: t.handshakes_ok.load(Ordering::Relaxed),
            quota_exceeded: t.quota_exceeded.load(Ordering::Relaxed),
            origin_refused: t.origin_refused.load(Ordering::Relaxed),
            connections: self.inner.connections.load(Ordering::Relaxed),
            in_flight: self.inner.in_flight.len(),
            tls_reloads: self.inner.tls.reloads(),
            tls_error: self.inner.tls.current().err().map(|err| err.to_string()),
        }
    }
}
