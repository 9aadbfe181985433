//! One authenticated connection: frames read within the inbound quota, the
//! session stepped, answers and segments written within the outbound quota.
//!
//! [`run`] starts two halves and ends the connection when either ends:
//! `reader` (frames read ahead, segments verified and imported in batches,
//! the session stepped) and `writer` (HELLO, WANTs and the answers to the
//! peer's WANTs, and the live re-check of the peer's certificate). The bytes
//! move through `inbound` and `outbound`, which hold each peer to its quotas
//! (INV-13).

mod inbound;
mod outbound;
mod reader;
mod writer;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify};

use super::frames::{ByeCode, Frame};
use super::protocol::{ProtocolError, Session};
use super::service::{stopped, Inner, PeerLink};
use super::tls::PeerIdentity;
use reader::read_loop;
use writer::write_loop;

/// Reads and writes move in chunks of between these many bytes (see
/// `chunk_size`), each charged to the quota before it moves.
const MIN_CHUNK: usize = 16 << 10;
const MAX_CHUNK: usize = 256 << 10;
/// How long a BYE explaining a closed connection may take to go out.
const BYE_GRACE: Duration = Duration::from_secs(1);

/// Runs an authenticated connection until either side ends it or the
/// service stops. Every byte read or written here is after the handshake.
pub(super) async fn run<S>(
    inner: Arc<Inner>,
    stream: S,
    identity: PeerIdentity,
    link: Arc<PeerLink>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut session = Session::new(
        Arc::clone(&inner.store),
        Arc::clone(&inner.in_flight),
        identity.node.clone(),
        inner.config.limits,
    );
    session.set_origin_keys(inner.tls.origin_keys());
    let session = Arc::new(Mutex::new(session));
    let (reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Frame>(64);
    let serve = Arc::new(Notify::new());
    let mut stop = inner.stop_rx.clone();
    let read_task = {
        let inner = Arc::clone(&inner);
        let session = Arc::clone(&session);
        let link = Arc::clone(&link);
        let serve = Arc::clone(&serve);
        let tx = tx.clone();
        read_loop(inner, reader, session, link, tx, serve)
    };
    let write_task = write_loop(
        Arc::clone(&inner),
        writer,
        Arc::clone(&session),
        Arc::clone(&link),
        rx,
        Arc::clone(&serve),
    );
    tokio::pin!(read_task);
    tokio::pin!(write_task);
    let ended: Option<ProtocolError> = tokio::select! {
        r = &mut read_task => match r {
            Ok(()) => None,
            Err(err) => {
                // Say why before closing, when the other side is still there to hear it.
                if err.code != ByeCode::Other {
                    let bye = Frame::Bye { code: err.code, reason: err.reason.clone() };
                    if tx.try_send(bye).is_ok() {
                        let _ = tokio::time::timeout(BYE_GRACE, &mut write_task).await;
                    }
                }
                Some(err)
            }
        },
        r = &mut write_task => r.err(),
        _ = stopped(&mut stop) => None,
    };
    if let Some(err) = &ended {
        inner.event(
            match err.code {
                _ if err.reason.starts_with("certificate no longer accepted")
                    || err.reason.starts_with("PKI files unusable") =>
                {
                    "certificate_refused"
                }
                ByeCode::Quota => "quota_exceeded",
                ByeCode::Idle => "idle_timeout",
                ByeCode::Protocol | ByeCode::Version => "protocol_error",
                _ => "disconnected",
            },
            Some(&identity.name),
            &err.reason,
        );
    }
    link.connected.store(false, Ordering::Relaxed);
    // The session's Drop releases what it was fetching.
    drop(session);
}

/// Bytes moved (and charged to a bucket of `rate` and `burst`) at a time:
/// a 64th of a second's worth, between 16 KiB and 256 KiB, never above the
/// burst. Big chunks cut per-chunk costs at high rates; small ones keep a
/// slow peer's pacing smooth.
pub(super) fn chunk_size(rate: f64, burst: f64) -> usize {
    let chunk = (rate / 64.0).clamp(MIN_CHUNK as f64, MAX_CHUNK as f64);
    chunk.min(burst).max(1.0) as usize
}

/// A socket that failed or closed: nothing more can be said to the peer.
fn closed(err: std::io::Error) -> ProtocolError {
    ProtocolError {
        code: ByeCode::Other,
        reason: format!("connection closed: {err}"),
    }
}
