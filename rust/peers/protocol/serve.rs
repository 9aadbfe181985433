//! The serving side of a session: the peer's WANT entries answered in order
//! with SEGMENT or GONE, and what the peer's HELLO frontiers say it holds
//! recorded as acknowledgements.

use super::{ProtocolError, Session, MAX_ACKS_PER_HELLO};
use crate::peers::frames::Frame;
use crate::store::{SegmentStatus, StoreError};

impl Session {
    /// The next answer to the peer's WANTs (SEGMENT or GONE), if any is pending.
    /// A segment goes out with its origin signature; one this node cannot
    /// send signed is answered GONE, as the peer would refuse it unsigned
    /// (docs/contracts.md, "Peer sync protocol").
    pub fn next_to_serve(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let Some(at) = self.to_serve.pop_front() else {
            return Ok(None);
        };
        if let SegmentStatus::Held(id) = self.store.segment_status(&at.origin, at.seq) {
            match self.store.get_segment(&id) {
                Ok(bytes) => {
                    let Some(signature) = self.signature_to_send(&at, &id)? else {
                        return Ok(Some(Frame::Gone(at)));
                    };
                    if self.sent_unacked.len() >= 4 * self.window {
                        self.sent_unacked.pop_front();
                    }
                    self.sent_unacked.push_back(id);
                    self.stats.segments_out += 1;
                    return Ok(Some(Frame::Segment {
                        at,
                        id,
                        signature,
                        bytes,
                    }));
                }
                // Evicted meanwhile, or damaged on disk: never served.
                Err(StoreError::NotFound(_) | StoreError::Corrupt(_)) => {}
                Err(other) => return Err(ProtocolError::store(other)),
            }
        }
        Ok(Some(Frame::Gone(at)))
    }

    /// A peer's frontier says it holds (or held) every segment of an origin
    /// below it, however it got them (from this node, from another peer, or
    /// before a restart that lost an ACK): those it holds of ours are recorded
    /// as acknowledged by it. At most `MAX_ACKS_PER_HELLO` per HELLO.
    pub(super) fn ack_frontiers(&mut self) -> Result<(), ProtocolError> {
        let mut budget = MAX_ACKS_PER_HELLO;
        let mut origins: Vec<(String, u64)> = self
            .peer_frontiers
            .iter()
            .map(|(o, n)| (o.clone(), *n))
            .collect();
        origins.sort();
        for (origin, next) in origins {
            let from = self.acked_through.get(&origin).copied().unwrap_or(0);
            let mut seq = from;
            while seq < next && budget > 0 {
                match self.store.segment_status(&origin, seq) {
                    SegmentStatus::Held(id) => match self.store.ack(&id, &self.peer_node) {
                        Ok(()) | Err(StoreError::NotFound(_)) => {}
                        Err(other) => return Err(ProtocolError::store(other)),
                    },
                    // Past what this node holds: nothing more to record here.
                    SegmentStatus::Missing => break,
                    SegmentStatus::Evicted => {}
                }
                budget -= 1;
                seq += 1;
            }
            self.acked_through.insert(origin, seq);
        }
        Ok(())
    }
}
