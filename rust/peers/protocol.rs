//! One connection's side of the sync protocol, without any I/O: frames in,
//! frames out, the store as the only source and sink of segments.
//!
//! Both ends run the same state machine (the protocol is symmetric): each
//! sends HELLO with its frontiers, asks with WANT for what the other holds and
//! it lacks, serves the other's WANTs with SEGMENT or GONE, and ACKs what it
//! stored. The first frame from the other side must be HELLO.
//!
//! This file holds the [`Session`] and its entry point, [`Session::on_frame`];
//! its two sides are in `fetch` (WANTs asked, SEGMENTs taken in and ACKed) and
//! `serve` (WANTs answered, acknowledgements recorded), the origin-signature
//! rule both ways in `origin`, and the service-wide [`InFlight`] set in
//! `in_flight`.

mod fetch;
mod in_flight;
mod origin;
mod serve;
#[cfg(test)]
mod tests;

pub use in_flight::InFlight;
pub use origin::check_origin;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::frames::{ByeCode, Frame, FrameLimits, SegmentRef, PROTOCOL_VERSION};
use super::tls::OriginKeys;
use crate::hashing::Digest;
use crate::store::{Store, StoreError};

/// Why a connection must end, and the BYE code that says so.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ProtocolError {
    /// The BYE code the connection ends with. [`ByeCode::Other`] (a local
    /// failure: the store, the socket) is not sent to the peer.
    pub code: ByeCode,
    /// Why, in words: the BYE's reason and the event's detail.
    pub reason: String,
}

impl ProtocolError {
    /// The peer broke the protocol: BYE code [`ByeCode::Protocol`].
    pub fn protocol(reason: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code: ByeCode::Protocol,
            reason: reason.into(),
        }
    }

    fn store(err: StoreError) -> ProtocolError {
        ProtocolError {
            code: ByeCode::Other,
            reason: format!("store: {err}"),
        }
    }
}

/// What the other side's frame leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these frames (possibly none) and carry on.
    Send(Vec<Frame>),
    /// The other side said BYE.
    Closed {
        /// The code it gave.
        code: ByeCode,
        /// The reason it gave.
        reason: String,
    },
}

/// Counters of one session.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionStats {
    /// Segments received that the store took and this side ACKed.
    pub segments_in: u64,
    /// SEGMENT frames served to the peer (ACKed or not).
    pub segments_out: u64,
    /// GONE answers received to this side's WANTs.
    pub gone_in: u64,
    /// ACKs received for segments sent on this connection.
    pub acks_in: u64,
    /// Segments refused for a missing or failing origin signature.
    pub origin_refused: u64,
}

/// Enforces INV-07 for one connection: the WANT entries asked of the peer and
/// those the peer may have pending with us are both bounded by the window, so
/// the bytes outstanding either way are at most `want_window` × the frame limit.
pub struct Session {
    store: Arc<Store>,
    in_flight: Arc<InFlight>,
    /// The peer's node id, recorded as the acknowledger of what it ACKs.
    peer_node: String,
    /// Checks what arrives and signs this node's own segments as they leave.
    origin_keys: Option<Arc<OriginKeys>>,
    limits: FrameLimits,
    window: usize,
    hello_seen: bool,
    peer_frontiers: HashMap<String, u64>,
    peer_accept_rate: u64,
    requested: HashSet<SegmentRef>,
    /// Requested segments that arrived and are being imported.
    receiving: HashSet<SegmentRef>,
    gone: HashSet<SegmentRef>,
    to_serve: VecDeque<SegmentRef>,
    sent_unacked: VecDeque<Digest>,
    /// Per origin, the sequence below which the peer's frontier has been
    /// recorded as acknowledgements.
    acked_through: HashMap<String, u64>,
    /// This session's counters, read by the connection for status.
    pub stats: SessionStats,
}

/// How far one WANT computation looks past a frontier, so a peer that claims
/// an absurd frontier costs a bounded amount of work per frame.
const MAX_SCAN: u64 = 4096;
/// Acknowledgements recorded from one HELLO's frontiers.
const MAX_ACKS_PER_HELLO: usize = 1024;
/// GONE answers remembered per connection (cleared when full).
const MAX_GONE: usize = 4096;

impl Session {
    /// A session of `store` with the peer node `peer_node`, sharing the
    /// service's `in_flight` set. `limits` bound the frames, and their
    /// `max_want_entries` (at least 1) is the window both ways. Every segment
    /// received is refused until [`Session::set_origin_keys`] gives it keys.
    pub fn new(
        store: Arc<Store>,
        in_flight: Arc<InFlight>,
        peer_node: String,
        limits: FrameLimits,
    ) -> Session {
        Session {
            store,
            in_flight,
            peer_node,
            origin_keys: None,
            window: usize::from(limits.max_want_entries).max(1),
            limits,
            hello_seen: false,
            peer_frontiers: HashMap::new(),
            peer_accept_rate: 0,
            requested: HashSet::new(),
            receiving: HashSet::new(),
            gone: HashSet::new(),
            to_serve: VecDeque::new(),
            sent_unacked: VecDeque::new(),
            acked_through: HashMap::new(),
            stats: SessionStats::default(),
        }
    }

    /// The fleet CA and node key the session works with; without them every
    /// segment received is refused (fail closed) and own unsigned segments
    /// are not served. Replaced when the PKI files change.
    pub fn set_origin_keys(&mut self, keys: Option<Arc<OriginKeys>>) {
        self.origin_keys = keys;
    }

    /// The fleet CA and node key in force; `None`: none usable.
    pub fn origin_keys(&self) -> Option<Arc<OriginKeys>> {
        self.origin_keys.clone()
    }

    /// The bytes/s the peer said it accepts (0: it gave none).
    pub fn peer_accept_rate(&self) -> u64 {
        self.peer_accept_rate
    }

    /// True once the peer's HELLO has been taken; until then only HELLO or
    /// BYE is accepted.
    pub fn hello_seen(&self) -> bool {
        self.hello_seen
    }

    /// Our HELLO: this store's frontiers, capped at the frame's bound.
    pub fn hello(&self, accept_rate: u64) -> Frame {
        let mut frontiers = self.store.frontiers();
        frontiers.truncate(usize::from(self.limits.max_origins));
        Frame::Hello {
            version: PROTOCOL_VERSION,
            accept_rate,
            frontiers,
        }
    }

    /// Sum over origins of how far the peer's frontier is ahead of ours.
    pub fn frontier_lag(&self) -> u64 {
        let mine: HashMap<String, u64> = self.store.frontiers().into_iter().collect();
        self.peer_frontiers
            .iter()
            .map(|(o, next)| next.saturating_sub(mine.get(o).copied().unwrap_or(0)))
            .fold(0u64, u64::saturating_add)
    }

    /// WANT entries of the peer not yet answered.
    pub fn serving(&self) -> usize {
        self.to_serve.len()
    }

    /// Requests outstanding with the peer.
    pub fn requested(&self) -> usize {
        self.requested.len()
    }

    /// Steps the state machine with one frame from the peer: what to send
    /// back, or that the peer said BYE. `Err` ends the connection with its
    /// code: a frame before HELLO, a WANT over the window, a SEGMENT or GONE
    /// not asked for, a segment the store refuses ([`ByeCode::Protocol`]);
    /// another protocol version ([`ByeCode::Version`]); a store failure
    /// ([`ByeCode::Other`]).
    pub fn on_frame(&mut self, frame: Frame) -> Result<Step, ProtocolError> {
        if !self.hello_seen && !matches!(frame, Frame::Hello { .. } | Frame::Bye { .. }) {
            return Err(ProtocolError::protocol(format!(
                "{} before HELLO",
                frame.frame_type().name()
            )));
        }
        match frame {
            Frame::Hello {
                version,
                accept_rate,
                frontiers,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(ProtocolError {
                        code: ByeCode::Version,
                        reason: format!(
                            "protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})"
                        ),
                    });
                }
                self.hello_seen = true;
                self.peer_accept_rate = accept_rate;
                self.peer_frontiers = frontiers.into_iter().collect();
                self.ack_frontiers()?;
                Ok(Step::Send(self.wants()))
            }
            Frame::Want(refs) => {
                if self.to_serve.len() + refs.len() > self.window {
                    return Err(ProtocolError::protocol(format!(
                        "WANT window exceeded: {} pending + {} asked > {}",
                        self.to_serve.len(),
                        refs.len(),
                        self.window
                    )));
                }
                self.to_serve.extend(refs);
                Ok(Step::Send(Vec::new()))
            }
            Frame::Segment {
                at,
                id,
                signature,
                bytes,
            } => {
                self.receive_segment(&at)?;
                if check_origin(self.origin_keys.as_deref(), &at, &id, &signature).is_err() {
                    self.origin_refused(&at);
                    return Ok(Step::Send(self.wants()));
                }
                let imported = self.store.import_segment(&bytes, Some(&id)).and_then(|id| {
                    self.store
                        .put_origin_signature(&id, &signature)
                        .map(|()| id)
                });
                self.segments_stored(vec![(at, id, imported)])
            }
            Frame::Ack(id) => {
                // Only segments sent on this connection are recorded; an ACK
                // for anything else records nothing.
                if let Some(pos) = self.sent_unacked.iter().position(|d| *d == id) {
                    self.sent_unacked.remove(pos);
                    self.stats.acks_in += 1;
                    match self.store.ack(&id, &self.peer_node) {
                        Ok(()) | Err(StoreError::NotFound(_)) => {}
                        Err(other) => return Err(ProtocolError::store(other)),
                    }
                }
                Ok(Step::Send(Vec::new()))
            }
            Frame::Gone(at) => {
                if !self.requested.remove(&at) {
                    return Err(ProtocolError::protocol(format!(
                        "GONE for {} #{} that was not asked for",
                        at.origin, at.seq
                    )));
                }
                self.in_flight.release(&at);
                self.stats.gone_in += 1;
                self.remember_gone(at);
                Ok(Step::Send(self.wants()))
            }
            Frame::Bye { code, reason } => Ok(Step::Closed { code, reason }),
        }
    }
}

impl Drop for Session {
    /// Whatever this connection was fetching may be fetched from another peer.
    fn drop(&mut self) {
        for r in self.requested.drain() {
            self.in_flight.release(&r);
        }
    }
}
