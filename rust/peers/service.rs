//! `PeerService`: listeners, dials, connections and their status, on a tokio
//! runtime of its own, controlled by plain (blocking) methods.
//!
//! This file holds the service, its shared state and its event log; its
//! parts are `config` (the bounds), `listen` (accepting), `dial` (dialling
//! within the retry budget), `admit` (what follows a handshake either way)
//! and `status` (what it reports).

mod admit;
mod config;
mod dial;
mod listen;
mod status;

pub use config::PeerConfig;
pub use status::{DialStatus, PeerEvent, PeerLink, PeerStatus, QuotaState, ServiceStatus, Totals};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::error::PeerError;
use super::protocol::InFlight;
use super::tls::{rejection_reason, TlsFiles};
use crate::quota::{Clock, QuotaTable};
use crate::store::Store;
use dial::DialTarget;

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

/// Wall-clock milliseconds since the Unix epoch (0 for a clock set before
/// it): the unit of every timestamp in events and status.
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

    /// Events with `seq` above `since`, oldest first.
    pub fn events(&self, since: u64) -> Vec<PeerEvent> {
        let ev = self.inner.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.0.iter().filter(|e| e.seq > since).cloned().collect()
    }
}

impl Drop for PeerService {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(500));
    }
}

/// Bytes read from a peer's socket at a time, below TLS: one TLS record.
/// rustls asks for about 4 KiB a read; without this buffer every one of
/// them would be a system call (256 a MiB, 64 with it). Kept small: it is
/// held by every connection, idle ones too.
const SOCKET_READ_BUFFER: usize = 16 << 10;

fn handshake_error(err: &std::io::Error) -> (&'static str, String) {
    if let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return (rejection_reason(tls), tls.to_string());
    }
    ("io", err.to_string())
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

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
