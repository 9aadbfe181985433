//! `PeerService`: listeners, dials, connections and their status, on a tokio
//! runtime of its own, controlled by plain (blocking) methods.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::error::PeerError;
use super::frames::FrameLimits;
use super::protocol::InFlight;
use super::retry::{Backoff, RetryPolicy};
use super::tls::{identity_of, rejection_reason, PeerIdentity, TlsFiles, TlsSettings};
use crate::quota::{Clock, QuotaTable};
use crate::store::Store;

/// Everything the service is bounded by. Limits live here, not as literals.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub tls: TlsSettings,
    pub limits: FrameLimits,
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
    /// Per-peer bytes/s and burst accepted (announced in HELLO) and sent.
    pub rate_in: f64,
    pub burst_in: f64,
    pub rate_out: f64,
    pub burst_out: f64,
    /// A peer whose reads waited on its inbound quota for more than this
    /// fraction of `quota_window` is disconnected.
    pub quota_margin: f64,
    pub quota_window: Duration,
    pub retry: RetryPolicy,
    /// Events kept for the Python side to read (oldest dropped first).
    pub max_events: usize,
    /// Worker threads of the service's runtime.
    pub workers: usize,
}

impl PeerConfig {
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

/// Something that happened to a peer, kept in a bounded log.
#[derive(Clone, Debug)]
pub struct PeerEvent {
    /// Numbers run on from 1 for the service's life; gaps mean events dropped.
    pub seq: u64,
    pub unix_ms: u64,
    /// `connected`, `handshake_rejected`, `quota_exceeded`, `protocol_error`,
    /// `origin_refused` (a segment whose origin signature is missing or fails), …
    pub kind: String,
    /// The peer's identity, or its address before the handshake.
    pub peer: Option<String>,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum QuotaState {
    Ok = 0,
    Throttled = 1,
    Exceeded = 2,
}

impl QuotaState {
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
    pub identity: PeerIdentity,
    /// The certificate chain the peer presented, checked again when the PKI files change.
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub address: SocketAddr,
    pub outbound: bool,
    pub connected: AtomicBool,
    pub since_ms: u64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub segments_in: AtomicU64,
    pub segments_out: AtomicU64,
    pub last_sync_ms: AtomicU64,
    pub frontier_lag: AtomicU64,
    quota: AtomicU8,
}

impl PeerLink {
    pub fn set_quota(&self, state: QuotaState) {
        self.quota.store(state as u8, Ordering::Relaxed);
    }

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
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub segments_in: AtomicU64,
    pub segments_out: AtomicU64,
    pub handshakes_ok: AtomicU64,
    pub quota_exceeded: AtomicU64,
    /// Segments refused for a missing or failing origin signature.
    pub origin_refused: AtomicU64,
}

/// A dial target's state, for status.
#[derive(Clone, Debug)]
pub struct DialStatus {
    pub address: String,
    pub attempts: u64,
    pub failures: u32,
    pub connected: bool,
    pub last_error: Option<String>,
}

struct DialTarget {
    backoff: Backoff,
    connected: bool,
    last_error: Option<String>,
}

pub(super) struct Inner {
    pub config: PeerConfig,
    pub store: Arc<Store>,
    pub tls: TlsFiles,
    pub in_flight: Arc<InFlight>,
    pub quota_in: QuotaTable,
    pub quota_out: QuotaTable,
    pub totals: Totals,
    pub stop_rx: watch::Receiver<bool>,
    links: Mutex<Vec<Arc<PeerLink>>>,
    rejected: Mutex<BTreeMap<String, u64>>,
    events: Mutex<(VecDeque<PeerEvent>, u64)>,
    pending: Mutex<HashMap<IpAddr, usize>>,
    connections: AtomicUsize,
    dials: Mutex<BTreeMap<SocketAddr, DialTarget>>,
    listening: Mutex<Vec<SocketAddr>>,
}

/// Resolves once the service is told to stop.
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Inner {
    pub(super) fn event(&self, kind: &str, peer: Option<&str>, detail: &str) {
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.1 += 1;
        let seq = ev.1;
        if ev.0.len() >= self.config.max_events {
            ev.0.pop_front();
        }
        ev.0.push_back(PeerEvent {
            seq,
            unix_ms: now_unix_ms(),
            kind: kind.to_string(),
            peer: peer.map(str::to_string),
            detail: detail.chars().take(512).collect(),
        });
    }

    fn rejected(&self, reason: &str, peer: &str, detail: &str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason.to_string())
            .or_insert(0) += 1;
        self.event(
            "handshake_rejected",
            Some(peer),
            &format!("{reason}: {detail}"),
        );
    }

    fn stopping(&self) -> bool {
        *self.stop_rx.borrow()
    }
}

/// Holds one pending-handshake slot for a source address; freed on drop.
struct PendingSlot<'a> {
    inner: &'a Inner,
    ip: IpAddr,
}

impl<'a> PendingSlot<'a> {
    fn take(inner: &'a Inner, ip: IpAddr) -> Option<PendingSlot<'a>> {
        let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = pending.values().sum();
        let here = pending.get(&ip).copied().unwrap_or(0);
        if total >= inner.config.max_pending || here >= inner.config.max_pending_per_addr {
            return None;
        }
        *pending.entry(ip).or_insert(0) += 1;
        Some(PendingSlot { inner, ip })
    }
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = pending.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&self.ip);
            }
        }
    }
}

/// Holds one connection slot; freed on drop.
struct ConnectionSlot(Arc<Inner>);

impl ConnectionSlot {
    fn take(inner: &Arc<Inner>) -> Option<ConnectionSlot> {
        let max = inner.config.max_connections;
        inner
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(Arc::clone(inner)))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The peer transport of one node. Enforces INV-07 for peers (bounded
/// connections, pending handshakes per address, frames, windows and idle
/// time), INV-09 (no protocol byte before a verified mutual-TLS handshake),
/// INV-12 (bounded retry of dials) and INV-13 (per-peer quotas).
pub struct PeerService {
    inner: Arc<Inner>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    stop_tx: watch::Sender<bool>,
}

impl PeerService {
    /// Reads the PKI files (an unusable file is an error here) and starts the
    /// runtime; nothing listens or dials until told to.
    pub fn new(store: Arc<Store>, config: PeerConfig) -> Result<PeerService, PeerError> {
        config.validate()?;
        let tls = TlsFiles::new(config.tls.clone())?;
        let max_keys = config.max_connections + config.max_dial_targets;
        let quota = |rate: f64, burst: f64| {
            QuotaTable::new(rate, burst, max_keys, Clock::Monotonic)
                .map_err(|e| PeerError::Settings(e.to_string()))
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.workers)
            .thread_name("vedette-peers")
            .enable_all()
            .build()
            .map_err(|e| PeerError::Stopped(format!("cannot start the peer runtime: {e}")))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            quota_in: quota(config.rate_in, config.burst_in)?,
            quota_out: quota(config.rate_out, config.burst_out)?,
            config,
            store,
            tls,
            in_flight: Arc::new(InFlight::default()),
            totals: Totals::default(),
            stop_rx,
            links: Mutex::new(Vec::new()),
            rejected: Mutex::new(BTreeMap::new()),
            events: Mutex::new((VecDeque::new(), 0)),
            pending: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            dials: Mutex::new(BTreeMap::new()),
            listening: Mutex::new(Vec::new()),
        });
        runtime.spawn(watch_files(Arc::clone(&inner)));
        Ok(PeerService {
            inner,
            runtime: Mutex::new(Some(runtime)),
            stop_tx,
        })
    }

    fn handle(&self) -> Result<tokio::runtime::Handle, PeerError> {
        self.runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|rt| rt.handle().clone())
            .ok_or_else(|| PeerError::Stopped("the peer service is stopped".into()))
    }

    /// Listens on `addr`; returns the address bound (port 0 picks one).
    pub fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, PeerError> {
        let handle = self.handle()?;
        let socket = |e: std::io::Error| PeerError::Network(format!("{addr}: {e}"));
        let std_listener = std::net::TcpListener::bind(addr)
            .map_err(|e| PeerError::Network(format!("cannot listen on {addr}: {e}")))?;
        std_listener.set_nonblocking(true).map_err(socket)?;
        let bound = std_listener.local_addr().map_err(socket)?;
        let listener = {
            let _guard = handle.enter();
            TcpListener::from_std(std_listener).map_err(socket)?
        };
        self.inner
            .listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bound);
        handle.spawn(accept_loop(Arc::clone(&self.inner), listener));
        self.inner.event("listening", None, &bound.to_string());
        Ok(bound)
    }

    /// Dials `addr` now and again whenever the link drops, within the retry
    /// policy, until the service stops. Adding an address twice changes nothing.
    pub fn dial(&self, addr: SocketAddr) -> Result<(), PeerError> {
        let handle = self.handle()?;
        {
            let mut dials = self.inner.dials.lock().unwrap_or_else(|p| p.into_inner());
            if dials.contains_key(&addr) {
                return Ok(());
            }
            if dials.len() >= self.inner.config.max_dial_targets {
                return Err(PeerError::Busy(format!(
                    "already dialling {} addresses (max_dial_targets)",
                    dials.len()
                )));
            }
            dials.insert(
                addr,
                DialTarget {
                    backoff: Backoff::new(self.inner.config.retry),
                    connected: false,
                    last_error: None,
                },
            );
        }
        handle.spawn(dial_loop(Arc::clone(&self.inner), addr));
        Ok(())
    }

    /// Dials `addr` `count` times in a row, each time completing a full mutual
    /// TLS handshake and closing at once (no protocol byte is sent). Returns
    /// how many handshakes completed; for checking a peer and for benchmarks.
    pub fn probe(&self, addr: SocketAddr, count: u64) -> Result<u64, PeerError> {
        let handle = self.handle()?;
        let inner = Arc::clone(&self.inner);
        handle.block_on(async move {
            let mut done = 0;
            for _ in 0..count {
                match dial_once(&inner, addr).await {
                    Ok(stream) => {
                        drop(stream);
                        done += 1;
                    }
                    Err((reason, detail)) => {
                        return Err(PeerError::Network(format!("{reason}: {detail}")))
                    }
                }
            }
            Ok(done)
        })
    }

    /// Rebuilds the TLS configurations from the files now (they are also
    /// rebuilt at each handshake when a file changed).
    pub fn reload(&self) -> Result<(), PeerError> {
        self.inner.tls.reload()
    }

    /// Says BYE on every connection, stops listening and dialling, and waits
    /// (up to `grace`) for connections to close. Later calls do nothing.
    pub fn stop(&self, grace: Duration) {
        let _ = self.stop_tx.send(true);
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(runtime) = runtime {
            let deadline = Instant::now() + grace;
            while self.inner.connections.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            runtime.shutdown_timeout(Duration::from_millis(200));
        }
    }

    pub fn listening(&self) -> Vec<SocketAddr> {
        self.inner
            .listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Events with `seq` above `since`, oldest first.
    pub fn events(&self, since: u64) -> Vec<PeerEvent> {
        let ev = self.inner.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.0.iter().filter(|e| e.seq > since).cloned().collect()
    }

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
            .map(|(addr, t)| DialStatus {
                address: addr.to_string(),
                attempts: t.backoff.attempts(),
                failures: t.backoff.failures(),
                connected: t.connected,
                last_error: t.last_error.clone(),
            })
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
        }
    }
}

impl Drop for PeerService {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(500));
    }
}

#[derive(Clone, Debug)]
pub struct PeerStatus {
    pub identity: String,
    pub node: String,
    pub address: String,
    pub outbound: bool,
    pub connected: bool,
    pub since_unix_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub segments_in: u64,
    pub segments_out: u64,
    pub quota: &'static str,
    pub last_sync_unix_ms: Option<u64>,
    pub frontier_lag: u64,
}

#[derive(Clone, Debug)]
pub struct ServiceStatus {
    pub running: bool,
    pub listening: Vec<String>,
    pub peers: Vec<PeerStatus>,
    pub dials: Vec<DialStatus>,
    pub rejected: BTreeMap<String, u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub segments_in: u64,
    pub segments_out: u64,
    pub handshakes_ok: u64,
    pub quota_exceeded: u64,
    pub origin_refused: u64,
    pub connections: usize,
    pub in_flight: usize,
    pub tls_reloads: u64,
}

/// Bytes read from a peer's socket at a time, below TLS: one TLS record.
/// rustls asks for about 4 KiB a read; without this buffer every one of
/// them would be a system call (256 a MiB, 64 with it). Kept small: it is
/// held by every connection, idle ones too.
const SOCKET_READ_BUFFER: usize = 16 << 10;

/// Links kept for status after they close, beyond the live ones.
const CLOSED_LINKS_KEPT: usize = 64;

fn register_link(inner: &Inner, link: &Arc<PeerLink>) {
    let mut links = inner.links.lock().unwrap_or_else(|p| p.into_inner());
    // Keep every live link and the most recent closed ones (INV-07).
    let closed = links
        .iter()
        .filter(|l| !l.connected.load(Ordering::Relaxed))
        .count();
    if closed >= CLOSED_LINKS_KEPT {
        if let Some(pos) = links
            .iter()
            .position(|l| !l.connected.load(Ordering::Relaxed))
        {
            links.remove(pos);
        }
    }
    links.push(Arc::clone(link));
}

fn handshake_error(err: &std::io::Error) -> (&'static str, String) {
    if let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return (rejection_reason(tls), tls.to_string());
    }
    ("io", err.to_string())
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let mut stop = inner.stop_rx.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
        };
        let (tcp, addr) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of descriptors and the like: back off briefly, keep listening.
                inner.event("accept_failed", None, &err.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let Some(slot) = PendingSlot::take(&inner, addr.ip()) else {
                inner.rejected(
                    "too_many_pending",
                    &addr.to_string(),
                    "pending handshakes over the bound",
                );
                return;
            };
            let configs = match inner.tls.current() {
                Ok(c) => c,
                Err(err) => {
                    inner.rejected("tls_config", &addr.to_string(), &err.to_string());
                    return;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(configs.server);
            let tcp = BufReader::with_capacity(SOCKET_READ_BUFFER, tcp);
            let handshake =
                tokio::time::timeout(inner.config.handshake_timeout, acceptor.accept(tcp)).await;
            drop(slot);
            let stream = match handshake {
                Err(_) => {
                    inner.rejected("timeout", &addr.to_string(), "handshake timed out");
                    return;
                }
                Ok(Err(err)) => {
                    let (reason, detail) = handshake_error(&err);
                    inner.rejected(reason, &addr.to_string(), &detail);
                    return;
                }
                Ok(Ok(stream)) => stream,
            };
            let chain = stream
                .get_ref()
                .1
                .peer_certificates()
                .unwrap_or(&[])
                .to_vec();
            serve_connection(inner, stream, chain, addr, false).await;
        });
    }
}

/// After a completed handshake: identity, bounds, then the protocol.
async fn serve_connection<S>(
    inner: Arc<Inner>,
    stream: S,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    addr: SocketAddr,
    outbound: bool,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let settings = inner.tls.settings();
    let identity = chain
        .first()
        .ok_or_else(|| "no certificate".to_string())
        .and_then(|c| identity_of(c, settings.trust_domain.as_deref(), &settings.allow));
    let identity = match identity {
        Ok(id) => id,
        Err(err) => {
            // The verifiers already checked this; fail closed all the same.
            inner.rejected("not_allowed", &addr.to_string(), &err);
            return false;
        }
    };
    if identity.node == inner.store.config().node_id {
        inner.event("self_connection", Some(&identity.name), &addr.to_string());
        return false;
    }
    let Some(slot) = ConnectionSlot::take(&inner) else {
        inner.rejected(
            "too_many_connections",
            &identity.name,
            "max_connections reached",
        );
        return false;
    };
    inner.totals.handshakes_ok.fetch_add(1, Ordering::Relaxed);
    let link = Arc::new(PeerLink {
        identity: identity.clone(),
        chain,
        address: addr,
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
    });
    register_link(&inner, &link);
    inner.event(
        "connected",
        Some(&identity.name),
        &format!("{} {addr}", if outbound { "to" } else { "from" }),
    );
    super::conn::run(Arc::clone(&inner), stream, identity.clone(), link).await;
    inner.event("disconnected", Some(&identity.name), &addr.to_string());
    drop(slot);
    true
}

async fn dial_loop(inner: Arc<Inner>, addr: SocketAddr) {
    let mut stop = inner.stop_rx.clone();
    loop {
        if inner.stopping() {
            return;
        }
        let wait = {
            let mut dials = inner.dials.lock().unwrap_or_else(|p| p.into_inner());
            match dials.get_mut(&addr) {
                Some(t) => t.backoff.wait(Instant::now()),
                None => return,
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut stop) => return,
            }
            continue;
        }
        with_target(&inner, addr, |t| t.backoff.attempt(Instant::now()));
        let outcome = tokio::select! {
            r = dial_once(&inner, addr) => r,
            _ = stopped(&mut stop) => return,
        };
        match outcome {
            Ok(stream) => {
                with_target(&inner, addr, |t| {
                    t.backoff.succeeded();
                    t.connected = true;
                    t.last_error = None;
                });
                let chain = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .unwrap_or(&[])
                    .to_vec();
                let served = serve_connection(Arc::clone(&inner), stream, chain, addr, true).await;
                with_target(&inner, addr, |t| {
                    t.connected = false;
                    if !served {
                        t.backoff.failed(Instant::now());
                    }
                });
            }
            Err((reason, detail)) => {
                if reason != "io" && reason != "timeout_connect" {
                    inner.rejected(reason, &addr.to_string(), &detail);
                } else {
                    inner.event("dial_failed", Some(&addr.to_string()), &detail);
                }
                with_target(&inner, addr, |t| {
                    t.backoff.failed(Instant::now());
                    t.last_error = Some(format!("{reason}: {detail}"));
                });
            }
        }
    }
}

/// Notices changed PKI files between handshakes, so live connections are
/// checked against a new CRL within a sync interval.
async fn watch_files(inner: Arc<Inner>) {
    let mut stop = inner.stop_rx.clone();
    let mut tick = tokio::time::interval(inner.config.sync_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        let _ = inner.tls.current();
    }
}

fn with_target(inner: &Inner, addr: SocketAddr, f: impl FnOnce(&mut DialTarget)) {
    if let Some(t) = inner
        .dials
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&addr)
    {
        f(t);
    }
}

async fn dial_once(
    inner: &Inner,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<BufReader<TcpStream>>, (&'static str, String)> {
    let configs = inner
        .tls
        .current()
        .map_err(|e| ("tls_config", e.to_string()))?;
    let timeout = inner.config.handshake_timeout;
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(("timeout_connect", format!("connect to {addr} timed out"))),
        Ok(Err(err)) => return Err(("io", format!("connect to {addr}: {err}"))),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(configs.client);
    // Peers are named by their certificate's SAN URI, not by address; the
    // server verifier checks identity in place of the host name.
    let name = ServerName::IpAddress(addr.ip().into());
    let tcp = BufReader::with_capacity(SOCKET_READ_BUFFER, tcp);
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => Err(("timeout", "handshake timed out".into())),
        Ok(Err(err)) => Err(handshake_error(&err)),
        Ok(Ok(stream)) => Ok(stream),
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
