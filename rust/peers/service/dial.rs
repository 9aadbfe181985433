//! The dialling side: addresses dialled again whenever the link drops,
//! spaced by full-jitter backoff within the retry budget (INV-12), and
//! probes that only complete handshakes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::admit::serve_connection;
use super::{handshake_error, stopped, DialStatus, Inner, PeerService, SOCKET_READ_BUFFER};
use crate::peers::error::PeerError;
use crate::peers::retry::Backoff;

impl PeerService {
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
}

/// One address dialled: its backoff and how the last dial went.
pub(super) struct DialTarget {
    backoff: Backoff,
    connected: bool,
    last_error: Option<String>,
}

impl DialTarget {
    /// Its state as [`PeerService::status`] reports it.
    pub(super) fn status(&self, address: &SocketAddr) -> DialStatus {
        DialStatus {
            address: address.to_string(),
            attempts: self.backoff.attempts(),
            failures: self.backoff.failures(),
            connected: self.connected,
            last_error: self.last_error.clone(),
        }
    }
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
