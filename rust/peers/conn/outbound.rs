//! Frames onto the socket, each chunk charged to the peer's outbound quota
//! and paced under the rate the peer announced it accepts (INV-13).

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{chunk_size, closed};
use crate::peers::frames::{ByeCode, Frame};
use crate::peers::protocol::{ProtocolError, Session};
use crate::peers::service::{Inner, PeerLink};
use crate::quota::TokenBucket;

/// Writes a frame the session queued; true when it was BYE, after which the
/// writer is shut down and the connection's writing is over.
pub(super) async fn send_queued<W: AsyncWrite + Unpin>(
    inner: &Inner,
    writer: &mut W,
    link: &PeerLink,
    frame: &Frame,
    pacer: &mut Option<(u64, TokenBucket)>,
    session: &Mutex<Session>,
) -> Result<bool, ProtocolError> {
    write_frame(inner, writer, link, frame, pacer, session).await?;
    if !matches!(frame, Frame::Bye { .. }) {
        return Ok(false);
    }
    let _ = writer.shutdown().await;
    Ok(true)
}

/// Encodes `frame` within this node's limits and writes it.
pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
    inner: &Inner,
    writer: &mut W,
    link: &PeerLink,
    frame: &Frame,
    pacer: &mut Option<(u64, TokenBucket)>,
    session: &Mutex<Session>,
) -> Result<(), ProtocolError> {
    let wire = frame
        .encode(&inner.config.limits)
        .map_err(|e| ProtocolError::protocol(format!("cannot send: {e}")))?;
    write_wire(inner, writer, link, &wire, pacer, session).await
}

/// Enforces INV-13 outbound: every chunk waits for the peer's outbound bucket
/// (this node's `rate_out`) and for the rate the peer announced it accepts.
pub(super) async fn write_wire<W: AsyncWrite + Unpin>(
    inner: &Inner,
    writer: &mut W,
    link: &PeerLink,
    wire: &[u8],
    pacer: &mut Option<(u64, TokenBucket)>,
    session: &Mutex<Session>,
) -> Result<(), ProtocolError> {
    let accept = session
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .peer_accept_rate();
    let config = &inner.config;
    let mut chunk = chunk_size(config.rate_out, config.burst_out);
    if accept > 0 {
        // Slightly under the announced rate, so clock drift never makes an
        // honest sender look like a flood.
        let rate = accept as f64 * 0.95;
        chunk = chunk.min(chunk_size(rate, f64::INFINITY));
        if pacer.as_ref().is_none_or(|(rate, _)| *rate != accept) {
            let burst = (chunk as f64).max(rate / 20.0);
            *pacer = TokenBucket::new(rate, burst, crate::quota::Clock::Monotonic)
                .ok()
                .map(|b| (accept, b));
        }
    }
    let key = &link.identity.name;
    let write_timeout = config.idle_timeout;
    for chunk in wire.chunks(chunk) {
        let n = chunk.len() as f64;
        while !inner.quota_out.try_take(key, n).unwrap_or(true) {
            let wait = inner
                .quota_out
                .wait_time(key, n)
                .unwrap_or(0.01)
                .max(0.0005);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
        if let Some((_, bucket)) = pacer.as_ref() {
            while !bucket.try_take(n).unwrap_or(true) {
                let wait = bucket.wait_time(n).unwrap_or(0.01).max(0.0005);
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
        }
        match tokio::time::timeout(write_timeout, writer.write_all(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(closed(err)),
            Err(_) => {
                return Err(ProtocolError {
                    code: ByeCode::Idle,
                    reason: format!("peer read nothing for {write_timeout:?}"),
                })
            }
        }
    }
    writer.flush().await.map_err(closed)?;
    link.bytes_out
        .fetch_add(wire.len() as u64, Ordering::Relaxed);
    inner
        .totals
        .bytes_out
        .fetch_add(wire.len() as u64, Ordering::Relaxed);
    Ok(())
}
