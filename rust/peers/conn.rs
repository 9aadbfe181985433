//! One authenticated connection: frames read within the inbound quota, the
//! session stepped, answers and segments written within the outbound quota.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use super::frames::{check_len, ByeCode, Frame, SegmentRef, LEN_BYTES};
use super::protocol::{check_origin, ProtocolError, Session, Step};
use super::service::{now_unix_ms, stopped, Inner, PeerLink, QuotaState};
use super::tls::PeerIdentity;
use crate::hashing::Digest;
use crate::quota::TokenBucket;
use crate::store::{StoreError, VerifiedSegment};

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

async fn read_frame<R: AsyncRead + Unpin>(
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
    let chunk = chunk_size(inner.config.rate_in, inner.config.burst_in);
    let mut body = vec![0u8; len];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(chunk);
        quota.charge(inner, link, n).await?;
        read_within(reader, &mut body[at..at + n], idle, "frame stalled").await?;
        at += n;
    }
    link.bytes_in
        .fetch_add((LEN_BYTES + len) as u64, Ordering::Relaxed);
    inner
        .totals
        .bytes_in
        .fetch_add((LEN_BYTES + len) as u64, Ordering::Relaxed);
    let frame =
        Frame::decode_owned(body, &limits).map_err(|e| ProtocolError::protocol(e.to_string()))?;
    Ok((frame, permit))
}

/// Bytes moved (and charged to a bucket of `rate` and `burst`) at a time:
/// a 64th of a second's worth, between 16 KiB and 256 KiB, never above the
/// burst. Big chunks cut per-chunk costs at high rates; small ones keep a
/// slow peer's pacing smooth.
pub(super) fn chunk_size(rate: f64, burst: f64) -> usize {
    let chunk = (rate / 64.0).clamp(MIN_CHUNK as f64, MAX_CHUNK as f64);
    chunk.min(burst).max(1.0) as usize
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
/// batch of segments (and flushes it), the next ones are already coming in.
/// Bounded (INV-07) in bytes by the read-ahead budget, and in count here.
const READ_AHEAD_FRAMES: usize = 256;
/// The read-ahead budget is at least this many bytes (and two frames of
/// `max_frame_bytes`, so one can arrive while one is imported).
const READ_AHEAD_MIN_BYTES: usize = 32 << 20;
/// Segments imported as one batch (sharing its flushes) at most.
const MAX_BATCH_SEGMENTS: usize = 64;

/// A frame read; a SEGMENT already checked against its id and its origin
/// signature (hashing, checksums and signatures are checked as segments
/// arrive, while earlier ones are flushed).
enum Received {
    Frame(Frame),
    Segment(ReceivedSegment),
}

struct ReceivedSegment {
    at: SegmentRef,
    id: Digest,
    signature: Vec<u8>,
    verified: Result<VerifiedSegment, StoreError>,
    /// `Err`: why its origin signature is refused (docs/contracts.md, "Peer sync protocol").
    origin: Result<(), String>,
}

/// A frame read, and the share of the read-ahead budget it holds until it
/// has been processed.
type Incoming = (
    Result<Received, ProtocolError>,
    Option<OwnedSemaphorePermit>,
);

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
    let (frames_tx, mut frames) = mpsc::channel::<Incoming>(READ_AHEAD_FRAMES);
    let max_frame = inner.config.limits.max_frame_bytes as usize + LEN_BYTES;
    let budget = Arc::new(Semaphore::new(READ_AHEAD_MIN_BYTES.max(2 * max_frame)));
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
                let read = read_frame(&inner, &mut reader, &link, &mut meter, &budget).await;
                let (read, permit) = match read {
                    Ok((
                        Frame::Segment {
                            at,
                            id,
                            signature,
                            bytes,
                        },
                        permit,
                    )) => {
                        let keys = inner.tls.origin_keys();
                        let (origin, verified) = tokio::task::block_in_place(|| {
                            let origin = check_origin(keys.as_deref(), &at, &id, &signature);
                            // A segment refused for its signature is never imported: not worth hashing.
                            let verified = match &origin {
                                Ok(()) => VerifiedSegment::check(bytes, Some(&id)),
                                Err(_) => Err(StoreError::Failed("origin refused".into())),
                            };
                            (origin, verified)
                        });
                        let segment = ReceivedSegment {
                            at,
                            id,
                            signature,
                            verified,
                            origin,
                        };
                        (Ok(Received::Segment(segment)), Some(permit))
                    }
                    Ok((frame, permit)) => (Ok(Received::Frame(frame)), Some(permit)),
                    Err(err) => (Err(err), None),
                };
                let failed = read.is_err();
                if frames_tx.send((read, permit)).await.is_err() || failed {
                    return;
                }
            }
        }))
    };
    let mut held: Option<Incoming> = None;
    loop {
        let incoming = match held.take() {
            Some(incoming) => incoming,
            None => match frames.recv().await {
                Some(incoming) => incoming,
                None => return Ok(()),
            },
        };
        let (received, permit) = incoming;
        let frame = match received? {
            Received::Frame(frame) => frame,
            Received::Segment(segment) => {
                // Group commit: the segments that arrived while the last batch
                // was flushed go into the store together.
                let mut batch = vec![segment];
                let mut permits = vec![permit];
                while batch.len() < MAX_BATCH_SEGMENTS {
                    match frames.try_recv() {
                        Ok((Ok(Received::Segment(segment)), p)) => {
                            batch.push(segment);
                            permits.push(p);
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let (step, stats, lag, refused) = import_batch(&inner, &session, batch).await?;
                drop(permits);
                let before = link.segments_in.swap(stats.segments_in, Ordering::Relaxed);
                if let Some(lag) = lag {
                    link.frontier_lag.store(lag, Ordering::Relaxed);
                }
                inner
                    .totals
                    .segments_in
                    .fetch_add(stats.segments_in.saturating_sub(before), Ordering::Relaxed);
                for (at, id, reason) in refused {
                    inner.totals.origin_refused.fetch_add(1, Ordering::Relaxed);
                    inner.event(
                        "origin_refused",
                        Some(&link.identity.name),
                        &format!("{} #{} ({id}): {reason}", at.origin, at.seq),
                    );
                }
                link.last_sync_ms.store(now_unix_ms(), Ordering::Relaxed);
                if !send_step(&inner, &link, &tx, &serve, step?).await {
                    return Ok(());
                }
                continue;
            }
        };
        let is_hello = matches!(frame, Frame::Hello { .. });
        // Store calls may block; keep them off the runtime's async path.
        let (step, lag) = tokio::task::block_in_place(|| {
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            let step = s.on_frame(frame);
            // The lag costs a pass over the store's index: on HELLO, and when
            // nothing more is outstanding.
            let lag = (is_hello || s.requested() == 0).then(|| s.frontier_lag());
            (step, lag)
        });
        drop(permit);
        if let Some(lag) = lag {
            link.frontier_lag.store(lag, Ordering::Relaxed);
        }
        if is_hello && lag == Some(0) {
            link.last_sync_ms.store(now_unix_ms(), Ordering::Relaxed);
        }
        if !send_step(&inner, &link, &tx, &serve, step?).await {
            return Ok(());
        }
    }
}

/// Hands a step's frames to the writer. False when the connection is over.
async fn send_step(
    inner: &Inner,
    link: &PeerLink,
    tx: &mpsc::Sender<Frame>,
    serve: &Notify,
    step: Step,
) -> bool {
    match step {
        Step::Send(frames) => {
            for f in frames {
                if tx.send(f).await.is_err() {
                    return false;
                }
            }
            serve.notify_one();
            true
        }
        Step::Closed { code, reason } => {
            inner.event(
                "peer_bye",
                Some(&link.identity.name),
                &format!("{code:?}: {reason}"),
            );
            false
        }
    }
}

/// What importing a batch led to: the step, the session's counters, now
/// and then the frontier lag, and the segments refused for their origin
/// signature (with why).
type Imported = (
    Result<Step, ProtocolError>,
    super::protocol::SessionStats,
    Option<u64>,
    Vec<(SegmentRef, Digest, String)>,
);

/// Imports a batch of verified SEGMENT frames on a blocking thread (the
/// reader keeps receiving and verifying meanwhile): each admitted by the
/// session, those whose origin signature is refused set aside (neither
/// imported nor ACKed), the rest stored by the store in one batch, each
/// followed by its origin signature, and ACKed only once the store reports
/// them durable. A crash between a segment and its signature leaves the
/// segment without one: this node then answers GONE for it rather than send
/// it unsigned (docs/contracts.md, "Peer sync protocol").
async fn import_batch(
    inner: &Arc<Inner>,
    session: &Arc<Mutex<Session>>,
    batch: Vec<ReceivedSegment>,
) -> Result<Imported, ProtocolError> {
    let store = Arc::clone(&inner.store);
    let session = Arc::clone(session);
    let work = move || -> Imported {
        let lock = || session.lock().unwrap_or_else(|p| p.into_inner());
        let mut refused = Vec::new();
        {
            let mut s = lock();
            for segment in &batch {
                if let Err(err) = s.receive_segment(&segment.at) {
                    return (Err(err), s.stats, None, refused);
                }
            }
        }
        let mut refs = Vec::with_capacity(batch.len());
        let mut verified = Vec::with_capacity(batch.len());
        for segment in batch {
            let ReceivedSegment {
                at,
                id,
                signature,
                verified: v,
                origin,
            } = segment;
            if let Err(reason) = origin {
                refused.push((at, id, reason));
                continue;
            }
            match v {
                Ok(v) => {
                    refs.push((at, id, signature, None));
                    verified.push(v);
                }
                Err(err) => refs.push((at, id, signature, Some(Err(err)))),
            }
        }
        let mut stored = store.import_verified(&verified).into_iter();
        let outcomes = refs
            .into_iter()
            .map(|(at, id, signature, failed)| {
                let outcome = failed
                    .or_else(|| stored.next())
                    .unwrap_or_else(|| Err(StoreError::Failed("import lost an outcome".into())))
                    .and_then(|stored| {
                        store
                            .put_origin_signature(&stored, &signature)
                            .map(|()| stored)
                    });
                (at, id, outcome)
            })
            .collect();
        let mut s = lock();
        for (at, _, _) in &refused {
            s.origin_refused(at);
        }
        let before = s.stats.segments_in;
        let step = s.segments_stored(outcomes);
        let lag = (s.requested() == 0 || before / 16 != s.stats.segments_in / 16)
            .then(|| s.frontier_lag());
        (step, s.stats, lag, refused)
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ProtocolError {
            code: ByeCode::Other,
            reason: format!("segment import stopped: {err}"),
        })
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
            super::tls::rejection_reason(&e)
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

/// Writes a frame the session queued; true when it was BYE, after which the
/// writer is shut down and the connection's writing is over.
async fn send_queued<W: AsyncWrite + Unpin>(
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
    write_wire(inner, writer, link, &wire, pacer, session).await
}

/// Enforces INV-13 outbound: every chunk waits for the peer's outbound bucket
/// (this node's `rate_out`) and for the rate the peer announced it accepts.
async fn write_wire<W: AsyncWrite + Unpin>(
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
