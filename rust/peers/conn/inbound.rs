//! Frames off the socket, each charged to the peer's inbound quota before
//! it is read (INV-13), with its length checked before a buffer is sized
//! (INV-07) and the idle timeout on every read.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{chunk_size, closed};
use crate::peers::frames::{check_len, ByeCode, Frame, FrameError, LEN_BYTES, SEGMENT_HEAD_MAX};
use crate::peers::protocol::ProtocolError;
use crate::peers::service::{Inner, PeerLink, QuotaState};

/// Reads one frame: its length prefix, then its body in chunks, each charged
/// to the inbound quota before it is read. The permit is the frame's share
/// of the read-ahead budget, held until the frame has been processed.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    inner: &Inner,
    reader: &mut R,
    link: &PeerLink,
    quota: &mut InboundMeter,
    budget: &Arc<Semaphore>,
) -> Result<(Frame, OwnedSemaphorePermit), ProtocolError> {
    let limits = inner.config.limits;
    let idle = inner.config.idle_timeout;
    let mut prefix = [0u8; LEN_BYTES];
    read_within(reader, &mut prefix, idle, "nothing received").await?;
    // Checked before any buffer is sized from it (INV-07).
    let len = check_len(u64::from(u32::from_le_bytes(prefix)), &limits)
        .map_err(|e| ProtocolError::protocol(e.to_string()))?;
    // Held until the frame is processed: what is read ahead stays bounded.
    let permit = Arc::clone(budget)
        .acquire_many_owned(len as u32)
        .await
        .map_err(|_| ProtocolError {
            code: ByeCode::Other,
            reason: "connection closing".into(),
        })?;
    quota.charge(inner, link, LEN_BYTES).await?;
    let protocol = |e: FrameError| ProtocolError::protocol(e.to_string());
    let mut body = Body {
        inner,
        link,
        quota,
        reader,
    };
    // A SEGMENT's head first, so its bytes go straight into a buffer of
    // their own (never zeroed first, never moved after the head).
    let head_len = len.min(SEGMENT_HEAD_MAX);
    let mut head = Vec::with_capacity(head_len);
    body.read(&mut head, head_len).await?;
    let frame = match Frame::segment_head(&head).map_err(protocol)? {
        Some(segment) => {
            let mut bytes = Vec::with_capacity(len - segment.len);
            bytes.extend_from_slice(&head[segment.len..]);
            body.read(&mut bytes, len - head_len).await?;
            Frame::Segment {
                at: segment.at,
                id: segment.id,
                signature: segment.signature,
                bytes,
            }
        }
        None => {
            body.read(&mut head, len - head_len).await?;
            Frame::decode(&head, &limits).map_err(protocol)?
        }
    };
    link.bytes_in
        .fetch_add((LEN_BYTES + len) as u64, Ordering::Relaxed);
    inner
        .totals
        .bytes_in
        .fetch_add((LEN_BYTES + len) as u64, Ordering::Relaxed);
    Ok((frame, permit))
}

/// A frame's body as it is read: in chunks, each charged to the inbound
/// quota before it is read, each within the idle timeout.
struct Body<'a, R> {
    inner: &'a Inner,
    link: &'a PeerLink,
    quota: &'a mut InboundMeter,
    reader: &'a mut R,
}

impl<R: AsyncRead + Unpin> Body<'_, R> {
    /// Appends the next `n` bytes of the body to `buf`, into its spare
    /// capacity (reserved here if short).
    async fn read(&mut self, buf: &mut Vec<u8>, n: usize) -> Result<(), ProtocolError> {
        let config = &self.inner.config;
        let chunk = chunk_size(config.rate_in, config.burst_in);
        let idle = config.idle_timeout;
        buf.reserve_exact(n);
        let end = buf.len() + n;
        while buf.len() < end {
            let step = (end - buf.len()).min(chunk);
            self.quota.charge(self.inner, self.link, step).await?;
            let target = buf.len() + step;
            let fill = async {
                while buf.len() < target {
                    let mut limited = (&mut *self.reader).take((target - buf.len()) as u64);
                    if limited.read_buf(buf).await? == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                    }
                }
                Ok(())
            };
            within(idle, "frame stalled", fill).await?;
        }
        Ok(())
    }
}

/// Fills `buf`, or fails with `Idle` ("`what` for <idle>") when the peer sends
/// nothing for `idle`, or with the I/O error when the connection closes.
async fn read_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    idle: Duration,
    what: &str,
) -> Result<(), ProtocolError> {
    within(idle, what, reader.read_exact(buf)).await.map(drop)
}

/// `read`'s outcome, or `Idle` ("`what` for <idle>") when it takes longer
/// than `idle`; an I/O error means the connection closed.
async fn within<T>(
    idle: Duration,
    what: &str,
    read: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ProtocolError> {
    match tokio::time::timeout(idle, read).await {
        Err(_) => Err(ProtocolError {
            code: ByeCode::Idle,
            reason: format!("{what} for {idle:?}"),
        }),
        Ok(Err(err)) => Err(closed(err)),
        Ok(Ok(value)) => Ok(value),
    }
}

/// Enforces INV-13 inbound: reads wait for the peer's inbound bucket, so a
/// peer is never read faster than its quota; one that keeps reads waiting
/// for more than `quota_margin` of a `quota_window` is sending beyond its
/// quota (an honest peer paces itself to the rate this node announced) and
/// is disconnected, and the event recorded.
pub(super) struct InboundMeter {
    key: String,
    window_start: Instant,
    waited: Duration,
}

impl InboundMeter {
    /// A meter for the peer keyed `key`, its first window starting now.
    pub(super) fn new(key: String) -> InboundMeter {
        InboundMeter {
            key,
            window_start: Instant::now(),
            waited: Duration::ZERO,
        }
    }

    async fn charge(
        &mut self,
        inner: &Inner,
        link: &PeerLink,
        n: usize,
    ) -> Result<(), ProtocolError> {
        let n = n as f64;
        loop {
            if inner.quota_in.try_take(&self.key, n).unwrap_or(false) {
                break;
            }
            let wait = inner
                .quota_in
                .wait_time(&self.key, n)
                .unwrap_or(0.01)
                .max(0.0005);
            let wait = Duration::from_secs_f64(wait);
            link.set_quota(QuotaState::Throttled);
            self.waited += wait;
            tokio::time::sleep(wait).await;
        }
        let elapsed = self.window_start.elapsed();
        if elapsed >= inner.config.quota_window {
            let limit = inner.config.quota_window.mul_f64(inner.config.quota_margin);
            if self.waited > limit {
                link.set_quota(QuotaState::Exceeded);
                inner.totals.quota_exceeded.fetch_add(1, Ordering::Relaxed);
                return Err(ProtocolError {
                    code: ByeCode::Quota,
                    reason: format!(
                        "sent beyond its inbound quota of {} bytes/s: reads waited {:.2} s of {:.2} s",
                        inner.config.rate_in,
                        self.waited.as_secs_f64(),
                        elapsed.as_secs_f64()
                    ),
                });
            }
            if self.waited.is_zero() {
                link.set_quota(QuotaState::Ok);
            }
            self.window_start = Instant::now();
            self.waited = Duration::ZERO;
        }
        Ok(())
    }
}
