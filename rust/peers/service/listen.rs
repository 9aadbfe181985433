//! The listening side: sockets bound, connections accepted, and each
//! handshake run within the bounds on pending handshakes, in total and per
//! source address (INV-07), before the connection is admitted.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::admit::serve_connection;
use super::{handshake_error, stopped, Inner, PeerService, SOCKET_READ_BUFFER};
use crate::peers::error::PeerError;

impl PeerService {
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

    /// The addresses listened on, as bound, in the order bound.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.inner
            .listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
