//! Origin signatures, both ways (docs/contracts.md, "Peer sync protocol";
//! INV-14): a segment that arrives is taken only with its origin's signature
//! by a certificate of the fleet CA, and a segment that leaves goes with the
//! signature stored beside it, or one made now for this node's own segments.

use super::{ProtocolError, Session};
use crate::crypto::origin::{verify_blob, OriginSignature, OriginTrust, Signer};
use crate::hashing::Digest;
use crate::peers::frames::SegmentRef;
use crate::peers::tls::OriginKeys;

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

impl Session {
    /// The origin signature stored beside segment `id`; for this node's own
    /// segment not signed yet (sealed since the runtime last signed), one made
    /// now with the node's key and certificate, the same signer the runtime
    /// uses (`[peers] key`/`cert`, docs/contracts.md "Origin signatures"), and
    /// stored. `None`: it cannot be sent signed.
    pub(super) fn signature_to_send(
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
}
