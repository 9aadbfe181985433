//! One connection's side of the sync protocol, without any I/O: frames in,
//! frames out, the store as the only source and sink of segments.
//!
//! Both ends run the same state machine (the protocol is symmetric): each
//! sends HELLO with its frontiers, asks with WANT for what the other holds and
//! it lacks, serves the other's WANTs with SEGMENT or GONE, and ACKs what it
//! stored. The first frame from the other side must be HELLO.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use super::frames::{ByeCode, Frame, FrameLimits, SegmentRef, PROTOCOL_VERSION};
use super::tls::OriginKeys;
use crate::crypto::origin::{verify_blob, OriginSignature, OriginTrust, Signer};
use crate::hashing::Digest;
use crate::store::{SegmentStatus, Store, StoreError};

/// Checks a received segment's origin signature before it may be imported
/// (docs/contracts.md, "Peer sync protocol"): the blob must verify for this
/// origin, sequence and id, and its signer must be a certificate issued by
/// the fleet CA to the origin node. Peers always have a fleet PKI, so a bare
/// key is never accepted here. `Err` says why the segment is refused.
pub fn check_origin(
    keys: Option<&OriginKeys>,
    at: &SegmentRef,
    id: &Digest,
    signature: &[u8],
) -> Result<(), String> {
    let keys = keys.ok_or("no usable fleet CA to check the origin signature against")?;
    if signature.is_empty() {
        return Err("no origin signature".into());
    }
    // What the store cannot keep beside the segment is refused before the
    // import, so that no segment is taken in without its signature.
    if signature.len() > crate::store::MAX_SIGNATURE_BYTES {
        return Err(format!(
            "origin signature of {} bytes is over the {} this node stores",
            signature.len(),
            crate::store::MAX_SIGNATURE_BYTES
        ));
    }
    let trust = OriginTrust {
        ca_pem: Some(&keys.ca_pem),
        pinned_key: None,
        require_certificate: true,
    };
    verify_blob(signature, &at.origin, at.seq, id, &trust)
        .map(|_| ())
        .map_err(|e| e.0)
}

/// Segments being fetched right now, over all connections of a service: a
/// segment is never asked of two peers at once.
#[derive(Debug, Default)]
pub struct InFlight {
    set: Mutex<HashSet<SegmentRef>>,
}

impl InFlight {
    /// True when the caller now owns the fetch of `r`.
    pub fn claim(&self, r: &SegmentRef) -> bool {
        self.lock().insert(r.clone())
    }

    pub fn release(&self, r: &SegmentRef) {
        self.lock().remove(r);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<SegmentRef>> {
        self.set.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a connection must end, and the BYE code that says so.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ProtocolError {
    pub code: ByeCode,
    pub reason: String,
}

impl ProtocolError {
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
    Closed { code: ByeCode, reason: String },
}

/// Counters of one session.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionStats {
    pub segments_in: u64,
    pub segments_out: u64,
    pub gone_in: u64,
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

    pub fn origin_keys(&self) -> Option<Arc<OriginKeys>> {
        self.origin_keys.clone()
    }

    /// The bytes/s the peer said it accepts (0: it gave none).
    pub fn peer_accept_rate(&self) -> u64 {
        self.peer_accept_rate
    }

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

    fn remember_gone(&mut self, at: SegmentRef) {
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

    /// A peer's frontier says it holds (or held) every segment of an origin
    /// below it, however it got them (from this node, from another peer, or
    /// before a restart that lost an ACK): those it holds of ours are recorded
    /// as acknowledged by it. At most `MAX_ACKS_PER_HELLO` per HELLO.
    fn ack_frontiers(&mut self) -> Result<(), ProtocolError> {
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

    /// The origin signature stored beside segment `id`; for this node's own
    /// segment not signed yet (sealed since the runtime last signed), one made
    /// now with the node's key and certificate, the same signer the runtime
    /// uses (`[peers] key`/`cert`, docs/contracts.md "Origin signatures"), and
    /// stored. `None`: it cannot be sent signed.
    fn signature_to_send(
        &self,
        at: &SegmentRef,
        id: &Digest,
    ) -> Result<Option<Vec<u8>>, ProtocolError> {
        if let Some(blob) = self
            .store
            .origin_signature(id)
            .map_err(ProtocolError::store)?
        {
            return Ok(Some(blob));
        }
        if at.origin != self.store.config().node_id {
            return Ok(None);
        }
        let Some(Ok(node)) = self.origin_keys.as_deref().map(|k| &k.signer) else {
            return Ok(None);
        };
        let signer = Signer::Certificate(node.cert_der.clone());
        let Ok(signature) = OriginSignature::sign(&node.key, signer, &at.origin, at.seq, *id)
        else {
            return Ok(None);
        };
        let blob = signature.encode();
        // Kept for the next peer; the blob is valid whether or not it was
        // stored (a full store, say), so it goes out either way.
        let _ = self.store.put_origin_signature(id, &blob);
        Ok(Some(blob))
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

impl Drop for Session {
    /// Whatever this connection was fetching may be fetched from another peer.
    fn drop(&mut self) {
        for r in self.requested.drain() {
            self.in_flight.release(&r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ecdsa::PrivateKey;
    use crate::crypto::pki::{new_ca, Ca, Issued, Validity};
    use crate::peers::tls::NodeKey;
    use crate::store::StoreConfig;

    fn validity() -> Validity {
        Validity {
            not_before: 1_600_000_000,
            not_after: 4_000_000_000,
        }
    }

    /// A fleet CA made by the PKI the operators use (`vedette pki`).
    fn fleet() -> Issued {
        new_ca("fleet.test", validity()).unwrap()
    }

    /// Node `node`'s origin keys under `ca`: the fleet CA and its certificate and key.
    fn keys(ca: &Issued, node: &str) -> Arc<OriginKeys> {
        let issued = Ca::load(&ca.cert_pem, &ca.key_pem)
            .unwrap()
            .issue(node, validity())
            .unwrap();
        let cert_der = pem::parse(issued.cert_pem.as_bytes())
            .unwrap()
            .into_contents();
        let key_der = pem::parse(issued.key_pem.as_bytes())
            .unwrap()
            .into_contents();
        Arc::new(OriginKeys {
            ca_pem: ca.cert_pem.clone(),
            signer: Ok(NodeKey {
                key: PrivateKey::from_pkcs8_der(&key_der).unwrap(),
                cert_der,
            }),
        })
    }

    /// A session with its node's keys under `ca`.
    fn keyed(
        store: &Arc<Store>,
        in_flight: &Arc<InFlight>,
        peer: &str,
        limits: FrameLimits,
        ca: &Issued,
    ) -> Session {
        let mut s = Session::new(
            Arc::clone(store),
            Arc::clone(in_flight),
            peer.into(),
            limits,
        );
        s.set_origin_keys(Some(keys(ca, &store.config().node_id)));
        s
    }

    /// The signature blob `signer` makes for segment `seq` of `origin`.
    fn sign_as(signer: &OriginKeys, origin: &str, seq: u64, id: Digest) -> Vec<u8> {
        let node = signer.signer.as_ref().unwrap();
        OriginSignature::sign(
            &node.key,
            Signer::Certificate(node.cert_der.clone()),
            origin,
            seq,
            id,
        )
        .unwrap()
        .encode()
    }

    fn store(dir: &std::path::Path, node: &str) -> Arc<Store> {
        let mut config = StoreConfig::new(1 << 20, node);
        config.segment_max_bytes = 16 << 10;
        Arc::new(Store::open(dir, config).unwrap())
    }

    /// A session on `sb` (node b, talking to a) that has taken a's HELLO,
    /// and what it answered.
    fn after_hello(sa: &Arc<Store>, sb: &Arc<Store>) -> (Session, Step) {
        let limits = FrameLimits::default();
        let mut session = Session::new(Arc::clone(sb), Arc::default(), "a".into(), limits);
        let hello = Session::new(Arc::clone(sa), Arc::default(), "b".into(), limits).hello(0);
        let step = session.on_frame(hello).unwrap();
        (session, step)
    }

    fn tmp() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    fn fill(store: &Store, segments: usize) {
        for i in 0..segments {
            store.append(format!("record {i}").as_bytes()).unwrap();
            store.seal().unwrap();
        }
    }

    /// Runs two sessions against each other until neither has anything to send.
    fn converse(a: &mut Session, b: &mut Session) -> usize {
        let mut to_b = vec![a.hello(0)];
        let mut to_a = vec![b.hello(0)];
        let mut rounds = 0;
        while !(to_a.is_empty() && to_b.is_empty()) && rounds < 10_000 {
            rounds += 1;
            for f in std::mem::take(&mut to_b) {
                let wire = f.encode(&FrameLimits::default()).unwrap();
                let (f, _) = super::super::frames::split_frame(&wire, &FrameLimits::default())
                    .unwrap()
                    .unwrap();
                if let Step::Send(out) = b.on_frame(f).unwrap() {
                    to_a.extend(out);
                }
            }
            while let Some(f) = b.next_to_serve().unwrap() {
                to_a.push(f);
            }
            for f in std::mem::take(&mut to_a) {
                if let Step::Send(out) = a.on_frame(f).unwrap() {
                    to_b.extend(out);
                }
            }
            while let Some(f) = a.next_to_serve().unwrap() {
                to_b.push(f);
            }
        }
        rounds
    }

    #[test]
    fn two_sessions_replicate_both_ways_and_ack() {
        let (da, db) = (tmp(), tmp());
        let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
        fill(&sa, 5);
        fill(&sb, 3);
        let limits = FrameLimits {
            max_want_entries: 2,
            ..FrameLimits::default()
        };
        let (fa, fb) = (Arc::new(InFlight::default()), Arc::new(InFlight::default()));
        let ca = fleet();
        let mut a = keyed(&sa, &fa, "b", limits, &ca);
        let mut b = keyed(&sb, &fb, "a", limits, &ca);
        converse(&mut a, &mut b);
        assert_eq!(sa.frontiers(), vec![("a".into(), 5), ("b".into(), 3)]);
        assert_eq!(sb.frontiers(), sa.frontiers());
        assert!(fa.is_empty() && fb.is_empty());
        // Every segment a sent was acknowledged by b, and so is evictable.
        for info in sa.segments().iter().filter(|i| i.origin == "a" && i.sealed) {
            assert_eq!(info.acked_by, vec!["b".to_string()]);
        }
        assert_eq!(a.stats.segments_out, 5);
        assert_eq!(b.stats.segments_in, 5);
        // Each node signed its own segments as they left, and each stored
        // the signatures of what it received beside the segments.
        let trust = OriginTrust {
            ca_pem: Some(&ca.cert_pem),
            pinned_key: None,
            require_certificate: true,
        };
        for s in [&sa, &sb] {
            for info in s.segments().iter().filter(|i| i.sealed) {
                let id = info.id.unwrap();
                let blob = s.origin_signature(&id).unwrap().expect("a sidecar");
                verify_blob(&blob, &info.origin, info.seq, &id, &trust).unwrap();
            }
        }
        assert_eq!(a.stats.origin_refused + b.stats.origin_refused, 0);
    }

    #[test]
    fn a_segment_is_imported_only_with_its_origins_signature() {
        let (da, db) = (tmp(), tmp());
        let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
        fill(&sa, 1);
        let ca = fleet();
        let id = sa.segments()[0].id.unwrap();
        let bytes = sa.get_segment(&id).unwrap();
        let at = SegmentRef {
            origin: "a".into(),
            seq: 0,
        };
        let other = fleet();
        let bare = {
            let key = PrivateKey::generate().unwrap();
            let spki = key.public_key().spki_der().to_vec();
            OriginSignature::sign(&key, Signer::Key(spki), "a", 0, id)
                .unwrap()
                .encode()
        };
        let forged = [
            ("none", Vec::new()),
            // c's own valid certificate, signing in a's name.
            ("another node's", sign_as(&keys(&ca, "c"), "a", 0, id)),
            // A certificate naming a, from a CA that is not the fleet's.
            ("a foreign CA's", sign_as(&keys(&other, "a"), "a", 0, id)),
            ("a bare key's", bare),
            // a's genuine signature, for another segment of a.
            ("another segment's", sign_as(&keys(&ca, "a"), "a", 1, id)),
            ("garbage", vec![0x5a; 200]),
            (
                "an oversized",
                vec![0x5a; crate::store::MAX_SIGNATURE_BYTES + 1],
            ),
        ];
        let mut b = keyed(&sb, &Arc::default(), "a", FrameLimits::default(), &ca);
        b.on_frame(b.hello(0)).unwrap();
        for (n, (what, signature)) in forged.into_iter().enumerate() {
            b.requested.insert(at.clone());
            b.gone.clear();
            let step = b
                .on_frame(Frame::Segment {
                    at: at.clone(),
                    id,
                    signature: signature.clone(),
                    bytes: bytes.clone(),
                })
                .unwrap_or_else(|e| panic!("{what}: the connection ended: {e}"));
            let Step::Send(out) = step else { panic!() };
            assert!(
                !out.iter().any(|f| matches!(f, Frame::Ack(_))),
                "{what}: acknowledged"
            );
            assert!(sb.frontiers().is_empty(), "{what}: imported");
            assert!(check_origin(b.origin_keys().as_deref(), &at, &id, &signature).is_err());
            assert_eq!(b.stats.origin_refused, n as u64 + 1, "{what}");
            assert!(b.requested.is_empty() && b.receiving.is_empty(), "{what}");
            // Not asked of this peer again on this connection.
            assert!(b.gone.contains(&at), "{what}");
        }
        // Without the fleet CA nothing is accepted, however well signed.
        let genuine = sign_as(&keys(&ca, "a"), "a", 0, id);
        assert!(check_origin(None, &at, &id, &genuine).is_err());
        // The genuine signature: imported, acknowledged, and kept beside it.
        b.requested.insert(at.clone());
        let Step::Send(out) = b
            .on_frame(Frame::Segment {
                at: at.clone(),
                id,
                signature: genuine.clone(),
                bytes,
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(out.first(), Some(&Frame::Ack(id)));
        assert_eq!(sb.frontiers(), vec![("a".to_string(), 1)]);
        assert_eq!(sb.origin_signature(&id).unwrap(), Some(genuine));
    }

    #[test]
    fn only_signed_segments_are_served() {
        let (da, db, dc) = (tmp(), tmp(), tmp());
        let (sa, sb, sc) = (
            store(da.path(), "a"),
            store(db.path(), "b"),
            store(dc.path(), "c"),
        );
        fill(&sa, 1);
        fill(&sc, 1);
        let ca = fleet();
        // b relays c's segment, imported without its signature (before
        // signatures travelled): b cannot vouch for it and answers GONE.
        let c_id = sc.segments()[0].id.unwrap();
        sb.import_segment(&sc.get_segment(&c_id).unwrap(), None)
            .unwrap();
        let mut serve = keyed(&sb, &Arc::default(), "a", FrameLimits::default(), &ca);
        let c0 = SegmentRef {
            origin: "c".into(),
            seq: 0,
        };
        serve.on_frame(serve.hello(0)).unwrap();
        serve.on_frame(Frame::Want(vec![c0.clone()])).unwrap();
        assert_eq!(
            serve.next_to_serve().unwrap(),
            Some(Frame::Gone(c0.clone()))
        );
        // With c's signature beside it, b serves it as it is.
        let blob = sign_as(&keys(&ca, "c"), "c", 0, c_id);
        sb.put_origin_signature(&c_id, &blob).unwrap();
        serve.on_frame(Frame::Want(vec![c0])).unwrap();
        let Some(Frame::Segment { signature, .. }) = serve.next_to_serve().unwrap() else {
            panic!("not served")
        };
        assert_eq!(signature, blob);
        // a's own segment, not signed yet: signed as it leaves, and kept.
        let a_id = sa.segments()[0].id.unwrap();
        assert_eq!(sa.origin_signature(&a_id).unwrap(), None);
        let mut own = keyed(&sa, &Arc::default(), "b", FrameLimits::default(), &ca);
        own.on_frame(own.hello(0)).unwrap();
        let a0 = SegmentRef {
            origin: "a".into(),
            seq: 0,
        };
        own.on_frame(Frame::Want(vec![a0.clone()])).unwrap();
        let Some(Frame::Segment { signature, .. }) = own.next_to_serve().unwrap() else {
            panic!("not served")
        };
        assert!(check_origin(own.origin_keys().as_deref(), &a0, &a_id, &signature).is_ok());
        assert_eq!(sa.origin_signature(&a_id).unwrap(), Some(signature));
        // A node without a usable key serves none of its own unsigned segments.
        fill(&sa, 1);
        let mut keyless = Session::new(
            Arc::clone(&sa),
            Arc::default(),
            "b".into(),
            FrameLimits::default(),
        );
        keyless.on_frame(keyless.hello(0)).unwrap();
        let a1 = SegmentRef {
            origin: "a".into(),
            seq: 1,
        };
        keyless.on_frame(Frame::Want(vec![a1.clone()])).unwrap();
        assert_eq!(keyless.next_to_serve().unwrap(), Some(Frame::Gone(a1)));
    }

    #[test]
    fn a_peers_frontier_acknowledges_what_it_holds_however_it_got_it() {
        let (da, db) = (tmp(), tmp());
        let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
        fill(&sa, 3);
        // b got a's first two segments some other way (another peer, or an
        // ACK lost when it was killed).
        for info in sa.segments().iter().take(2) {
            let bytes = sa.get_segment(&info.id.unwrap()).unwrap();
            sb.import_segment(&bytes, None).unwrap();
        }
        let mut a = Session::new(
            Arc::clone(&sa),
            Arc::default(),
            "b".into(),
            FrameLimits::default(),
        );
        let hello_b = Session::new(
            Arc::clone(&sb),
            Arc::default(),
            "a".into(),
            FrameLimits::default(),
        )
        .hello(0);
        a.on_frame(hello_b).unwrap();
        let acked: Vec<Vec<String>> = sa.segments().iter().map(|i| i.acked_by.clone()).collect();
        assert_eq!(
            acked,
            vec![vec!["b".to_string()], vec!["b".to_string()], vec![]]
        );
    }

    #[test]
    fn a_segment_in_flight_is_not_asked_of_a_second_peer() {
        let (da, db, dc) = (tmp(), tmp(), tmp());
        let (sa, sb, sc) = (
            store(da.path(), "a"),
            store(db.path(), "b"),
            store(dc.path(), "c"),
        );
        fill(&sa, 2);
        // b and c both hold a's segments; a fresh node d asks both.
        for s in [&sb, &sc] {
            for info in sa.segments() {
                let bytes = sa.get_segment(&info.id.unwrap()).unwrap();
                s.import_segment(&bytes, None).unwrap();
            }
        }
        let dd = tmp();
        let sd = store(dd.path(), "d");
        let in_flight = Arc::new(InFlight::default());
        let mut from_b = Session::new(
            Arc::clone(&sd),
            Arc::clone(&in_flight),
            "b".into(),
            FrameLimits::default(),
        );
        let mut from_c = Session::new(
            Arc::clone(&sd),
            Arc::clone(&in_flight),
            "c".into(),
            FrameLimits::default(),
        );
        let hello_b = Session::new(sb, Arc::default(), "d".into(), FrameLimits::default()).hello(0);
        let hello_c = Session::new(sc, Arc::default(), "d".into(), FrameLimits::default()).hello(0);
        let Step::Send(w1) = from_b.on_frame(hello_b).unwrap() else {
            panic!()
        };
        let Step::Send(w2) = from_c.on_frame(hello_c).unwrap() else {
            panic!()
        };
        assert_eq!(w1.len(), 1);
        assert!(
            w2.is_empty(),
            "c was asked for what b is already sending: {w2:?}"
        );
        drop(from_b);
        assert!(
            in_flight.is_empty(),
            "a closed connection releases its fetches"
        );
        assert_eq!(from_c.wants().len(), 1);
    }

    #[test]
    fn protocol_violations_end_the_session() {
        let d = tmp();
        let s = store(d.path(), "a");
        fill(&s, 1);
        let mut session = Session::new(
            Arc::clone(&s),
            Arc::default(),
            "b".into(),
            FrameLimits::default(),
        );
        let want = Frame::Want(vec![SegmentRef {
            origin: "a".into(),
            seq: 0,
        }]);
        assert!(session.on_frame(want.clone()).is_err(), "WANT before HELLO");
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION + 1,
            accept_rate: 0,
            frontiers: vec![],
        };
        assert_eq!(session.on_frame(hello).unwrap_err().code, ByeCode::Version);
        // A node of version 1 (segments without origin signatures) is told why.
        let v1 = Frame::Hello {
            version: 1,
            accept_rate: 0,
            frontiers: vec![],
        };
        let err = session.on_frame(v1).unwrap_err();
        assert_eq!(err.code, ByeCode::Version);
        assert_eq!(
            err.reason,
            "protocol version 1 is not supported (this node speaks 2)"
        );
        session.on_frame(session.hello(0)).unwrap();
        let bytes = s.get_segment(&s.segments()[0].id.unwrap()).unwrap();
        let unsolicited = Frame::Segment {
            at: SegmentRef {
                origin: "a".into(),
                seq: 0,
            },
            id: crate::hashing::blake3(&bytes),
            signature: Vec::new(),
            bytes,
        };
        assert!(session.on_frame(unsolicited).is_err());
        for _ in 0..64 {
            session.on_frame(want.clone()).unwrap();
        }
        assert!(session.on_frame(want).is_err(), "over the want window");
    }

    #[test]
    fn a_batch_is_acked_only_once_the_store_has_it_and_a_repeat_is_refused() {
        let (da, db) = (tmp(), tmp());
        let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
        fill(&sa, 3);
        let (mut session, _) = after_hello(&sa, &sb);
        let segs: Vec<(SegmentRef, Digest, Vec<u8>)> = sa
            .segments()
            .iter()
            .map(|i| {
                let id = i.id.unwrap();
                let at = SegmentRef {
                    origin: "a".into(),
                    seq: i.seq,
                };
                (at, id, sa.get_segment(&id).unwrap())
            })
            .collect();
        for (at, _, _) in &segs {
            session.receive_segment(at).unwrap();
        }
        assert_eq!(
            session.receive_segment(&segs[0].0).unwrap_err().code,
            ByeCode::Protocol,
            "the same SEGMENT twice while the first is imported"
        );
        assert_eq!(session.requested(), 3, "still claimed while importing");
        let items: Vec<(&[u8], Option<&Digest>)> = segs
            .iter()
            .map(|(_, id, b)| (b.as_slice(), Some(id)))
            .collect();
        let results = sb.import_segments(&items);
        let outcomes = segs
            .iter()
            .zip(results)
            .map(|((at, id, _), r)| (at.clone(), *id, r))
            .collect();
        let Step::Send(out) = session.segments_stored(outcomes).unwrap() else {
            panic!()
        };
        let acks: Vec<Digest> = out
            .iter()
            .filter_map(|f| match f {
                Frame::Ack(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(acks, segs.iter().map(|s| s.1).collect::<Vec<_>>());
        assert_eq!(session.requested(), 0);
        assert_eq!(sb.frontiers(), vec![("a".to_string(), 3)]);
        // A store failure is not acknowledged.
        let failed = vec![(segs[0].0.clone(), segs[0].1, Err(StoreError::Closed))];
        session.requested.insert(segs[0].0.clone());
        session.receive_segment(&segs[0].0).unwrap();
        assert!(session.segments_stored(failed).is_err());
    }

    #[test]
    fn a_tampered_segment_is_refused_and_not_stored() {
        let (da, db) = (tmp(), tmp());
        let (sa, sb) = (store(da.path(), "a"), store(db.path(), "b"));
        fill(&sa, 1);
        let (mut session, step) = after_hello(&sa, &sb);
        let ca = fleet();
        session.set_origin_keys(Some(keys(&ca, "b")));
        let Step::Send(wants) = step else { panic!() };
        assert_eq!(wants.len(), 1);
        let id = sa.segments()[0].id.unwrap();
        let mut bytes = sa.get_segment(&id).unwrap();
        let last = bytes.len() - 30;
        bytes[last] ^= 1;
        // Signed by its origin: what is refused is the bytes, not the signature.
        let signature = sign_as(&keys(&ca, "a"), "a", 0, id);
        let err = session
            .on_frame(Frame::Segment {
                at: SegmentRef {
                    origin: "a".into(),
                    seq: 0,
                },
                id,
                signature,
                bytes,
            })
            .unwrap_err();
        assert_eq!(err.code, ByeCode::Protocol);
        assert!(sb.frontiers().is_empty());
    }
}
