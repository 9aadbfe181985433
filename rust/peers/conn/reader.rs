//! The reading half of a connection: frames read ahead of the one being
//! processed (bounded in bytes and count, INV-07), SEGMENTs checked against
//! their id and origin signature as they arrive and imported in batches that
//! share their flushes, and every other frame stepped through the session.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncRead;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use super::inbound::{read_frame, InboundMeter};
use crate::hashing::Digest;
use crate::peers::frames::{ByeCode, Frame, SegmentRef, LEN_BYTES};
use crate::peers::protocol::{check_origin, ProtocolError, Session, SessionStats, Step};
use crate::peers::service::{now_unix_ms, Inner, PeerLink};
use crate::store::{StoreError, VerifiedSegment};

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

/// The reading half: runs until the peer says BYE or the writer is gone
/// (`Ok`), or a read or a frame fails (`Err`, with the code to end the
/// connection with).
pub(super) async fn read_loop<R: AsyncRead + Unpin + Send + 'static>(
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
            let mut meter = InboundMeter::new(link.identity.name.clone());
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
    SessionStats,
    Option<u64>,
    Vec<(SegmentRef, Digest, String)>,
);

/// Imports a batch of verified SEGMENT frames on a blocking thread (the
/// reader keeps receiving and verifying meanwhile): each admitted by the
/// session, those whose origin signature is refused set aside (neither
/// imported nor ACKed), the rest stored by the store in one batch, each
/// with its origin signature, and ACKed only once the store reports them
/// durable. A crash between a segment and its signature leaves the
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
            // The signature is stored with the segment, in the same batch.
            match v.and_then(|v| v.with_origin_signature(signature)) {
                Ok(v) => {
                    refs.push((at, id, None));
                    verified.push(v);
                }
                Err(err) => refs.push((at, id, Some(Err(err)))),
            }
        }
        let mut stored = store.import_verified(&verified).into_iter();
        let outcomes = refs
            .into_iter()
            .map(|(at, id, failed)| {
                let outcome = failed
                    .or_else(|| stored.next())
                    .unwrap_or_else(|| Err(StoreError::Failed("import lost an outcome".into())));
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
