//! After a completed handshake, either way: the peer's identity taken from
//! its verified certificate, a connection slot within `max_connections`
//! (INV-07), the link registered for status, and only then the protocol
//! (INV-09).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Inner, PeerLink};
use crate::peers::tls::identity_of;

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

/// After a completed handshake: identity, bounds, then the protocol.
pub(super) async fn serve_connection<S>(
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
    let link = Arc::new(PeerLink::new(identity.clone(), chain, addr, outbound));
    register_link(&inner, &link);
    inner.event(
        "connected",
        Some(&identity.name),
        &format!("{} {addr}", if outbound { "to" } else { "from" }),
    );
    crate::peers::conn::run(Arc::clone(&inner), stream, identity.clone(), link).await;
    inner.event("disconnected", Some(&identity.name), &addr.to_string());
    drop(slot);
    true
}
