//! The fetching side of a session: WANTs for what the peer holds and this
//! store lacks, within the window (INV-07), and the SEGMENT answers admitted,
//! stored and ACKed only once the store has them (INV-14).

use std::collections::HashMap;

use super::{ProtocolError, Session, Step, MAX_GONE, MAX_SCAN};
use crate::hashing::Digest;
use crate::peers::frames::{Frame, SegmentRef};
use crate::store::{SegmentStatus, StoreError};

impl Session {
    /// Admits a SEGMENT frame for import: it must answer a WANT of this
    /// session that no other SEGMENT is answering. The fetch stays claimed
    /// (and counts against the window) until [`Session::segments_stored`].
    pub fn receive_segment(&mut self, at: &SegmentRef) -> Result<(), ProtocolError> {
        if !self.requested.contains(at) || !self.receiving.insert(at.clone()) {
            return Err(ProtocolError::protocol(format!(
                "unsolicited SEGMENT {} #{}",
                at.origin, at.seq
            )));
        }
        Ok(())
    }

    /// A segment admitted by `receive_segment` whose origin signature is
    /// missing or fails: it is not imported and not acknowledged, the fetch
    /// is released, and it is not asked of this peer again on this
    /// connection (another peer, or a later connection, may serve it signed).
    pub fn origin_refused(&mut self, at: &SegmentRef) {
        self.receiving.remove(at);
        self.requested.remove(at);
        self.in_flight.release(at);
        self.stats.origin_refused += 1;
        self.remember_gone(at.clone());
    }

    pub(super) fn remember_gone(&mut self, at: SegmentRef) {
        if self.gone.len() >= MAX_GONE {
            self.gone.clear();
        }
        self.gone.insert(at);
    }

    /// The store's outcomes for segments admitted by `receive_segment`, in
    /// the order they arrived. Enforces the ACK rule: a segment is
    /// acknowledged only when the store reports it durable, and a segment
    /// refused ends the connection (those stored before it are acknowledged
    /// by the frontier of this node's next HELLO).
    pub fn segments_stored(
        &mut self,
        outcomes: Vec<(SegmentRef, Digest, Result<Digest, StoreError>)>,
    ) -> Result<Step, ProtocolError> {
        let mut out = Vec::with_capacity(outcomes.len() + 1);
        let mut failure = None;
        for (at, id, imported) in outcomes {
            self.receiving.remove(&at);
            self.requested.remove(&at);
            self.in_flight.release(&at);
            if failure.is_some() {
                continue;
            }
            match imported {
                Ok(_) => {}
                Err(StoreError::Corrupt(m)) => {
                    failure = Some(ProtocolError::protocol(format!("segment refused: {m}")));
                    continue;
                }
                Err(other) => {
                    failure = Some(ProtocolError::store(other));
                    continue;
                }
            }
            if self.store.segment_status(&at.origin, at.seq) != SegmentStatus::Held(id) {
                failure = Some(ProtocolError::protocol(format!(
                    "SEGMENT labelled {} #{} is another segment ({id})",
                    at.origin, at.seq
                )));
                continue;
            }
            self.stats.segments_in += 1;
            out.push(Frame::Ack(id));
        }
        if let Some(err) = failure {
            return Err(err);
        }
        out.extend(self.wants());
        Ok(Step::Send(out))
    }

    /// A WANT for what the peer holds and this store lacks, within the window;
    /// empty when there is nothing to ask or no room.
    pub fn wants(&mut self) -> Vec<Frame> {
        let room = self.window.saturating_sub(self.requested.len());
        if room == 0 || self.peer_frontiers.is_empty() {
            return Vec::new();
        }
        let mine: HashMap<String, u64> = self.store.frontiers().into_iter().collect();
        let mut origins: Vec<(&String, &u64)> = self.peer_frontiers.iter().collect();
        origins.sort();
        let mut asked = Vec::new();
        'origins: for (origin, &theirs) in origins {
            let from = mine.get(origin).copied().unwrap_or(0);
            let to = theirs.min(from.saturating_add(MAX_SCAN));
            for seq in from..to {
                if asked.len() >= room {
                    break 'origins;
                }
                let r = SegmentRef {
                    origin: origin.clone(),
                    seq,
                };
                if self.requested.contains(&r) || self.gone.contains(&r) {
                    continue;
                }
                if self.store.segment_status(origin, seq) != SegmentStatus::Missing {
                    continue;
                }
                if !self.in_flight.claim(&r) {
                    continue;
                }
                self.requested.insert(r.clone());
                asked.push(r);
            }
        }
        if asked.is_empty() {
            Vec::new()
        } else {
            vec![Frame::Want(asked)]
        }
    }
}
