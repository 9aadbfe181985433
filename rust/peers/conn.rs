//! One authenticated connection: frames read within the inbound quota, the
//! session stepped, answers and segments written within the outbound quota.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use super::frames::{check_len, ByeCode, Frame, LEN_BYTES};
use super::protocol::{ProtocolError, Session, Step};
use super::service::{now_unix_ms, stopped, Inner, PeerLink, QuotaState};
use super::tls::PeerIdentity;
use crate::quota::TokenBucket;

/// Reads and writes move in chunks of at most this many bytes, each charged
/// to the quota before it moves.
const CHUNK: usize = 16 << 10;
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
    let session = Arc::new(Mutex::new(Session::new(
        Arc::clone(&inner.store),
        Arc::clone(&inner.in_flight),
        identity.node.clone(),
        inner.config.limits,
    )));
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

async fn read_frame<R: AsyncRead + Unpin>(
    inner: &Inner,
    reader: &mut R,
    link: &PeerLink,
    quota: &mut InboundMeter,
) -> Result<Frame, ProtocolError> {
    let limits = inner.config.limits;
    let idle = inner.config.idle_timeout;
    let mut prefix = [0u8; LEN_BYTES];
    read_within(reader, &mut prefix, idle, "nothing received").await?;
    // Checked before any buffer is sized from it (INV-07).
    let len = check_len(u64::from(u32::from_le_bytes(prefix)), &limits)
        .map_err(|e| ProtocolError::protocol(e.to_string()))?;
    quota.charge(inner, link, LEN_BYTES).await?;
    let mut body = Vec::with_capacity(len.min(CHUNK));
    while body.len() < len {
        let n = (len - body.len()).min(CHUNK);
        quota.charge(inner, link, n).await?;
        let start = body.len();
        body.resize(start + n, 0);
        read_within(reader, &mut body[start..], idle, "frame stalled").await?;
    }
    link.bytes_in
        .fetch_add((LEN_BYTES + len) as u64, Ordering::Relaxed);
    inner
        .totals
        .bytes_in
        .fetch_add((LEN_BYTES + len) as u64, Ordering::Relaxed);
    Frame::decode(&body, &limits).map_err(|e| ProtocolError::protocol(e.to_string()))
}

/// Fills `buf`, or fails with `Idle` ("`what` for <idle>") when the peer sends
/// nothing for `idle`, or with the I/O error when the connection closes.
async fn read_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    idle: std::time::Duration,
    what: &str,
) -> Result<(), ProtocolError> {
    match tokio::time::timeout(idle, reader.read_exact(buf)).await {
        Err(_) => Err(ProtocolError {
            code: ByeCode::Idle,
            reason: format!("{what} for {idle:?}"),
        }),
        Ok(Err(err)) => Err(closed(err)),
        Ok(Ok(_)) => Ok(()),
    }
}

fn closed(err: std::io::Error) -> ProtocolError {
    ProtocolError {
        code: ByeCode::Other,
        reason: format!("connection closed: {err}"),
    }
}

/// Enforces INV-13 inbound: reads wait for the peer's inbound bucket, so a
/// peer is never read faster than its quota; one that keeps reads waiting
/// for more than `quota_margin` of a `quota_window` is sending beyond its
/// quota (an honest peer paces itself to the rate this node announced) and
/// is disconnected, and the event recorded.
struct InboundMeter {
    key: String,
    window_start: Instant,
    waited: Duration,
}

impl InboundMeter {
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

/// Frames read ahead of the one being processed: while the store imports a
/// segment (and fsyncs), the next one is already coming in. Bounded (INV-07):
/// at most this many frames of `max_frame_bytes` wait here.
const READ_AHEAD: usize = 1;

/// Aborts the spawned reader when the connection ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn read_loop<R: AsyncRead + Unpin + Send + 'static>(
    inner: Arc<Inner>,
    mut reader: R,
    session: Arc<Mutex<Session>>,
    link: Arc<PeerLink>,
    tx: mpsc::Sender<Frame>,
    serve: Arc<Notify>,
) -> Result<(), ProtocolError> {
    let (frames_tx, mut frames) = mpsc::channel::<Result<Frame, ProtocolError>>(READ_AHEAD);
    let _reader = {
        let inner = Arc::clone(&inner);
        let link = Arc::clone(&link);
        AbortOnDrop(tokio::spawn(async move {
            let mut meter = InboundMeter {
                key: link.identity.name.clone(),
                window_start: Instant::now(),
                waited: Duration::ZERO,
            };
            loop {
                let read = read_frame(&inner, &mut reader, &link, &mut meter).await;
                let failed = read.is_err();
                if frames_tx.send(read).await.is_err() || failed {
                    return;
                }
            }
        }))
    };
    let mut segments = 0u64;
    loop {
        let Some(frame) = frames.recv().await else {
            return Ok(());
        };
        let frame = frame?;
        let is_segment = matches!(frame, Frame::Segment { .. });
        let is_hello = matches!(frame, Frame::Hello { .. });
        segments += u64::from(is_segment);
        // The lag costs a pass over the store's index: on HELLO, now and then,
        // and when nothing more is outstanding.
        let measure_lag = is_hello || segments % 16 == 1;
        // Store calls block (fsync); keep them off the runtime's async path.
        let (step, stats, lag) = tokio::task::block_in_place(|| {
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            let step = s.on_frame(frame);
            let lag = (measure_lag || s.requested() == 0).then(|| s.frontier_lag());
            (step, s.stats, lag)
        });
        link.segments_in.store(stats.segments_in, Ordering::Relaxed);
        if let Some(lag) = lag {
            link.frontier_lag.store(lag, Ordering::Relaxed);
        }
        if is_segment {
            inner.totals.segments_in.fetch_add(1, Ordering::Relaxed);
        }
        if is_segment || (is_hello && lag == Some(0)) {
            link.last_sync_ms.store(now_unix_ms(), Ordering::Relaxed);
        }
        match step? {
            Step::Send(frames) => {
                for f in frames {
                    if tx.send(f).await.is_err() {
                        return Ok(());
                    }
                }
                serve.notify_one();
            }
            Step::Closed { code, reason } => {
                inner.event(
                    "peer_bye",
                    Some(&link.identity.name),
                    &format!("{code:?}: {reason}"),
                );
                return Ok(());
            }
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
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
    loop {
        while let Ok(f) = rx.try_recv() {
            let bye = matches!(f, Frame::Bye { .. });
            write_frame(&inner, &mut writer, &link, &f, &mut pacer, &session).await?;
            if bye {
                let _ = writer.shutdown().await;
                return Ok(());
            }
            last_sent = Instant::now();
        }
        let next = tokio::task::block_in_place(|| {
            session
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_to_serve()
        })?;
        if let Some(f) = next {
            if matches!(f, Frame::Segment { .. }) {
                inner.totals.segments_out.fetch_add(1, Ordering::Relaxed);
                link.segments_out.fetch_add(1, Ordering::Relaxed);
                link.last_sync_ms.store(now_unix_ms(), Ordering::Relaxed);
            }
            write_frame(&inner, &mut writer, &link, &f, &mut pacer, &session).await?;
            last_sent = Instant::now();
            continue;
        }
        tokio::select! {
            f = rx.recv() => match f {
                Some(f) => {
                    let bye = matches!(f, Frame::Bye { .. });
                    write_frame(&inner, &mut writer, &link, &f, &mut pacer, &session).await?;
                    if bye {
                        let _ = writer.shutdown().await;
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
            super::tls::rejection_reason(&e)
        ))
    })
}

/// Enforces INV-13 outbound: every chunk waits for the peer's outbound bucket
/// (this node's `rate_out`) and for the rate the peer announced it accepts.
async fn write_frame<W: AsyncWrite + Unpin>(
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
    let accept = session
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .peer_accept_rate();
    if accept > 0 && pacer.as_ref().is_none_or(|(rate, _)| *rate != accept) {
        // Slightly under the announced rate, so clock drift never makes an
        // honest sender look like a flood.
        let rate = accept as f64 * 0.95;
        let burst = (CHUNK as f64).max(rate / 20.0);
        *pacer = TokenBucket::new(rate, burst, crate::quota::Clock::Monotonic)
            .ok()
            .map(|b| (accept, b));
    }
    let key = &link.identity.name;
    let write_timeout = inner.config.idle_timeout;
    for chunk in wire.chunks(CHUNK) {
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
