//! The writing half of a connection: HELLO first and again when the
//! frontiers move or as a keep-alive, the session's WANTs and queued frames,
//! the answers to the peer's WANTs (read from the store ahead of the one
//! going out), and the live re-check of the peer's certificate when the PKI
//! files change (INV-09).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use super::outbound::{send_queued, write_frame, write_wire};
use crate::peers::frames::{ByeCode, Frame};
use crate::peers::protocol::{ProtocolError, Session};
use crate::peers::service::{now_unix_ms, stopped, Inner, PeerLink};
use crate::peers::tls::rejection_reason;
use crate::quota::TokenBucket;

/// The writing half: HELLO first, then the frames the reader queues, the
/// answers to the peer's WANTs, and on each sync tick a new HELLO (when the
/// frontiers moved, or as a keep-alive) and WANTs; until a BYE is written,
/// the queue closes or the service stops.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    inner: Arc<Inner>,
    mut writer: W,
    session: Arc<Mutex<Session>>,
    link: Arc<PeerLink>,
    mut rx: mpsc::Receiver<Frame>,
    serve: Arc<Notify>,
) -> Result<(), ProtocolError> {
    let accept = inner.config.rate_in as u64;
    let hello = tokio::task::block_in_place(|| {
        session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hello(accept)
    });
    let mut last_hello = hello.clone();
    let mut last_sent = Instant::now();
    let mut pacer: Option<(u64, TokenBucket)> = None;
    write_frame(&inner, &mut writer, &link, &hello, &mut pacer, &session).await?;
    let mut tick = tokio::time::interval(inner.config.sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = inner.stop_rx.clone();
    let mut pki_seen = inner.tls.reloads();
    let mut ahead: Option<tokio::task::JoinHandle<Result<Option<Prepared>, ProtocolError>>> = None;
    loop {
        while let Ok(f) = rx.try_recv() {
            if send_queued(&inner, &mut writer, &link, &f, &mut pacer, &session).await? {
                return Ok(());
            }
            last_sent = Instant::now();
        }
        // Read-ahead: the next answer is read from the store, checked and
        // encoded on a blocking thread while this one goes out.
        let next = match ahead.take() {
            Some(prepared) => joined(prepared.await)?,
            None => match serving(&session) {
                0 => None,
                _ => joined(tokio::task::spawn_blocking(prepare(&inner, &session)).await)?,
            },
        };
        if let Some(p) = next {
            if serving(&session) > 0 {
                ahead = Some(tokio::task::spawn_blocking(prepare(&inner, &session)));
            }
            if p.segment {
                inner.totals.segments_out.fetch_add(1, Ordering::Relaxed);
                link.segments_out.fetch_add(1, Ordering::Relaxed);
                link.last_sync_ms.store(now_unix_ms(), Ordering::Relaxed);
            }
            write_wire(&inner, &mut writer, &link, &p.wire, &mut pacer, &session).await?;
            last_sent = Instant::now();
            continue;
        }
        tokio::select! {
            f = rx.recv() => match f {
                Some(f) => {
                    if send_queued(&inner, &mut writer, &link, &f, &mut pacer, &session).await? {
                        return Ok(());
                    }
                    last_sent = Instant::now();
                }
                None => return Ok(()),
            },
            _ = serve.notified() => {}
            _ = tick.tick() => {
                if inner.tls.reloads() != pki_seen {
                    pki_seen = inner.tls.reloads();
                    recheck(&inner, &link)?;
                    let keys = inner.tls.origin_keys();
                    session
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .set_origin_keys(keys);
                }
                let (hello, wants) = tokio::task::block_in_place(|| {
                    let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
                    (s.hello(accept), s.wants())
                });
                // A new HELLO when the frontiers moved, and as a keep-alive.
                if hello != last_hello || last_sent.elapsed() >= inner.config.idle_timeout / 3 {
                    write_frame(&inner, &mut writer, &link, &hello, &mut pacer, &session).await?;
                    last_hello = hello;
                    last_sent = Instant::now();
                }
                for f in wants {
                    write_frame(&inner, &mut writer, &link, &f, &mut pacer, &session).await?;
                }
            }
            _ = stopped(&mut stop) => {
                let bye = Frame::Bye { code: ByeCode::Done, reason: "node stopping".into() };
                let _ = write_frame(&inner, &mut writer, &link, &bye, &mut pacer, &session).await;
                let _ = writer.shutdown().await;
                return Ok(());
            }
        }
    }
}

/// Enforces INV-09 for live connections: when the PKI files changed, the
/// peer's chain is checked again; a peer revoked (or otherwise no longer
/// acceptable) is disconnected, and so is every peer while the files are unusable.
fn recheck(inner: &Inner, link: &PeerLink) -> Result<(), ProtocolError> {
    let refused = |reason: String| ProtocolError {
        code: ByeCode::Other,
        reason,
    };
    let configs = inner
        .tls
        .current()
        .map_err(|e| refused(format!("PKI files unusable: {e}")))?;
    configs.recheck(&link.chain, !link.outbound).map_err(|e| {
        refused(format!(
            "certificate no longer accepted ({}): {e}",
            rejection_reason(&e)
        ))
    })
}

/// An answer to a WANT (SEGMENT or GONE), encoded for the wire.
struct Prepared {
    wire: Vec<u8>,
    segment: bool,
}

/// WANT entries of the peer still to be answered.
fn serving(session: &Mutex<Session>) -> usize {
    session.lock().unwrap_or_else(|p| p.into_inner()).serving()
}

/// The next answer to the peer's WANTs, read (and checked against its id)
/// from the store and encoded: blocking work, for `spawn_blocking`.
fn prepare(
    inner: &Inner,
    session: &Arc<Mutex<Session>>,
) -> impl FnOnce() -> Result<Option<Prepared>, ProtocolError> + Send + 'static {
    let session = Arc::clone(session);
    let limits = inner.config.limits;
    move || {
        let next = session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_to_serve()?;
        next.map(|f| {
            let wire = f
                .encode(&limits)
                .map_err(|e| ProtocolError::protocol(format!("cannot send: {e}")))?;
            Ok(Prepared {
                wire,
                segment: matches!(f, Frame::Segment { .. }),
            })
        })
        .transpose()
    }
}

fn joined<T>(
    r: Result<Result<T, ProtocolError>, tokio::task::JoinError>,
) -> Result<T, ProtocolError> {
    r.map_err(|err| ProtocolError {
        code: ByeCode::Other,
        reason: format!("reading a segment to send stopped: {err}"),
    })?
}
