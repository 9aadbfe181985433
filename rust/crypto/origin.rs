//! Origin signatures: a sealed segment signed by the node that wrote it.
//!
//! A segment's id is the BLAKE3 of its bytes, so the signature cannot live
//! inside the segment; it travels beside it as a small detached blob (the
//! `.sig` file next to a stored segment, a field of the peer SEGMENT frame, a
//! header of the archive's message). What is signed is the origin, the
//! sequence number and the id, under a context string, with ECDSA P-256 /
//! SHA-256 (`crypto::ecdsa`):
//!
//! ```text
//! message = "vedette.segment.v1" 0x00 | n u8 | origin [n] | seq u64 LE | id [32]
//! ```
//!
//! The blob names its signer: the node's certificate (chained to the fleet CA
//! by whoever verifies: its identity must be the origin), or a bare public key
//! (a node without a PKI: the key is recorded in the node's own evidence and
//! pinned by verifiers on first sight). The format is in docs/contracts.md,
//! "Origin signatures".
//!
//! ```text
//! blob    magic "VDTSIG1\n" [8] | signer u8 (1 certificate, 2 key) | n u8 | origin [n]
//!         | seq u64 | id [32] | signer_len u16 | signer [signer_len] (certificate DER
//!         or SPKI DER) | sig_len u8 | signature [sig_len] (DER) | CRC-32C u32 of all before
//! ```

use super::ecdsa::{PrivateKey, PublicKey, SignatureError};
use crate::hashing::{Algorithm, Digest, DIGEST_LEN};

/// The context string that starts every signed [`message`], so a signature over a segment can never
/// pass for a signature over anything else.
pub const CONTEXT: &[u8] = b"vedette.segment.v1\0";
/// The first eight bytes of every encoded blob.
pub const MAGIC: &[u8; 8] = b"VDTSIG1\n";
/// Largest signer (a certificate) accepted in a blob.
pub const MAX_SIGNER_LEN: usize = 8 << 10;
/// Largest blob: magic, kinds, origin, numbers, signer, signature, checksum.
pub const MAX_BLOB_LEN: usize = 8 + 1 + 1 + 255 + 8 + DIGEST_LEN + 2 + MAX_SIGNER_LEN + 1 + 80 + 4;

/// Who vouches for a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signer {
    /// The node's certificate (DER); its key signed, its identity is the origin.
    Certificate(Vec<u8>),
    /// A bare public key (SPKI DER) of a node without a PKI.
    Key(Vec<u8>),
}

/// A segment's origin signature, as it travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginSignature {
    /// The node id of the node that wrote and sealed the segment (the rule of
    /// `store::format::validate_origin`).
    pub origin: String,
    /// The segment's sequence number in its origin's hash chain (0 for the first).
    pub seq: u64,
    /// The segment's id: the BLAKE3 of its bytes.
    pub id: Digest,
    /// Who signed: the node's certificate or its bare public key.
    pub signer: Signer,
    /// ASN.1 DER ECDSA signature over [`message`].
    pub signature: Vec<u8>,
}

/// The bytes an origin signs for segment `seq` of `origin` with id `id`.
pub fn message(origin: &str, seq: u64, id: &Digest) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONTEXT.len() + 1 + origin.len() + 8 + DIGEST_LEN);
    out.extend_from_slice(CONTEXT);
    out.push(origin.len() as u8);
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

/// Why a blob or a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("origin signature: {0}")]
pub struct OriginSignatureError(pub String);

fn refuse(message: impl Into<String>) -> OriginSignatureError {
    OriginSignatureError(message.into())
}

impl OriginSignature {
    /// Signs segment `seq` of `origin` with id `id`.
    pub fn sign(
        key: &PrivateKey,
        signer: Signer,
        origin: &str,
        seq: u64,
        id: Digest,
    ) -> Result<OriginSignature, SignatureError> {
        if origin.is_empty() || origin.len() > 255 {
            return Err(SignatureError(format!(
                "origin {origin:?} is not 1-255 bytes"
            )));
        }
        let signature = key.sign(&message(origin, seq, &id))?;
        Ok(OriginSignature {
            origin: origin.to_string(),
            seq,
            id,
            signer,
            signature,
        })
    }

    /// The public key that signed: the certificate's subject key, or the bare key.
    pub fn public_key(&self) -> Result<PublicKey, OriginSignatureError> {
        match &self.signer {
            Signer::Key(spki) => {
                PublicKey::from_spki_der(spki).map_err(|err| refuse(format!("signer key: {err}")))
            }
            Signer::Certificate(der) => {
                let (_, cert) = x509_parser::parse_x509_certificate(der)
                    .map_err(|err| refuse(format!("signer certificate does not parse: {err}")))?;
                PublicKey::from_spki_der(cert.tbs_certificate.subject_pki.raw)
                    .map_err(|err| refuse(format!("signer certificate key: {err}")))
            }
        }
    }

    /// Checks that the signature is over this segment's origin, sequence and id
    /// and verifies with the signer's key. Whether the signer may speak for
    /// the origin (its certificate chains to the CA and names the origin, or
    /// its key is the one pinned for the origin) is the caller's check.
    pub fn verify(&self, origin: &str, seq: u64, id: &Digest) -> Result<(), OriginSignatureError> {
        if self.origin != origin || self.seq != seq || &self.id != id {
            return Err(refuse(format!(
                "signed for {} seq {} ({}), not for {origin} seq {seq} ({id})",
                self.origin, self.seq, self.id
            )));
        }
        self.public_key()?
            .verify(&message(origin, seq, id), &self.signature)
            .map_err(|err| refuse(format!("does not verify: {err}")))
    }

    /// The blob as it is stored and sent (the layout in the module comment), ending in its CRC-32C.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, signer) = match &self.signer {
            Signer::Certificate(der) => (1u8, der),
            Signer::Key(spki) => (2u8, spki),
        };
        let mut out = Vec::with_capacity(128 + signer.len());
        out.extend_from_slice(MAGIC);
        out.push(kind);
        out.push(self.origin.len() as u8);
        out.extend_from_slice(self.origin.as_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&(signer.len() as u16).to_le_bytes());
        out.extend_from_slice(signer);
        out.push(self.signature.len() as u8);
        out.extend_from_slice(&self.signature);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a blob strictly: every length checked before use, nothing left over.
    pub fn decode(blob: &[u8]) -> Result<OriginSignature, OriginSignatureError> {
        if blob.len() > MAX_BLOB_LEN {
            return Err(refuse(format!("{} bytes, over {MAX_BLOB_LEN}", blob.len())));
        }
        let (body, crc) = blob
            .split_last_chunk::<4>()
            .ok_or_else(|| refuse("truncated"))?;
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err(refuse("checksum mismatch"));
        }
        let mut reader = Reader(body);
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(refuse("not an origin signature (bad magic)"));
        }
        let kind = reader.byte()?;
        let origin_len = usize::from(reader.byte()?);
        let origin = std::str::from_utf8(reader.take(origin_len)?)
            .map_err(|_| refuse("origin is not UTF-8"))?
            .to_string();
        crate::store::format::validate_origin(&origin).map_err(refuse)?;
        let seq = u64::from_le_bytes(reader.array::<8>()?);
        let id = Digest::new(Algorithm::Blake3, reader.array::<DIGEST_LEN>()?);
        let signer_len = usize::from(u16::from_le_bytes(reader.array::<2>()?));
        if signer_len == 0 || signer_len > MAX_SIGNER_LEN {
            return Err(refuse(format!("signer of {signer_len} bytes")));
        }
        let signer = reader.take(signer_len)?.to_vec();
        let signer = match kind {
            1 => Signer::Certificate(signer),
            2 => Signer::Key(signer),
            other => return Err(refuse(format!("unknown signer kind {other}"))),
        };
        let sig_len = usize::from(reader.byte()?);
        let signature = reader.take(sig_len)?.to_vec();
        if !reader.0.is_empty() {
            return Err(refuse("bytes left over"));
        }
        Ok(OriginSignature {
            origin,
            seq,
            id,
            signer,
            signature,
        })
    }
}

/// Whom a verifier trusts to speak for an origin.
#[derive(Clone, Debug, Default)]
pub struct OriginTrust<'a> {
    /// PEM: the fleet CA(s); a certificate signer must be issued by one to the origin.
    pub ca_pem: Option<&'a str>,
    /// SPKI DER of the bare key pinned for this origin (recorded in its own
    /// evidence, or seen first); `None` accepts a bare key for the caller to pin.
    pub pinned_key: Option<&'a [u8]>,
    /// Refuse bare keys: where a fleet CA exists, every origin has a certificate.
    pub require_certificate: bool,
}

/// A blob checked for segment `seq` of `origin` with id `id`: it decodes, its
/// signature verifies, and its signer may speak for the origin under `trust`.
/// Returns the signature (its signer tells the caller what to pin).
pub fn verify_blob(
    blob: &[u8],
    origin: &str,
    seq: u64,
    id: &Digest,
    trust: &OriginTrust<'_>,
) -> Result<OriginSignature, OriginSignatureError> {
    let signature = OriginSignature::decode(blob)?;
    signature.verify(origin, seq, id)?;
    match &signature.signer {
        Signer::Certificate(der) => {
            let ca = trust
                .ca_pem
                .ok_or_else(|| refuse("signed with a certificate, but no fleet CA to check it"))?;
            let node = super::pki::issued_node(ca, der).map_err(|e| refuse(e.0))?;
            if node != origin {
                return Err(refuse(format!(
                    "signer certificate names node {node:?}, not the origin {origin:?}"
                )));
            }
        }
        Signer::Key(spki) => {
            if trust.require_certificate {
                return Err(refuse(
                    "signed with a bare key where a certificate is required",
                ));
            }
            if trust
                .pinned_key
                .is_some_and(|pinned| pinned != spki.as_slice())
            {
                return Err(refuse(format!(
                    "signed with a key that is not the one pinned for {origin:?}"
                )));
            }
        }
    }
    Ok(signature)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], OriginSignatureError> {
        if self.0.len() < n {
            return Err(refuse("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, OriginSignatureError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], OriginSignatureError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::blake3;
    use proptest::prelude::*;

    /// From a minute ago to a day from now.
    fn valid_today() -> crate::crypto::pki::Validity {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        crate::crypto::pki::Validity {
            not_before: now - 60,
            not_after: now + 86_400,
        }
    }

    fn key_signed() -> (PrivateKey, OriginSignature) {
        let key = PrivateKey::generate().unwrap();
        let signer = Signer::Key(key.public_key().spki_der().to_vec());
        let signature = OriginSignature::sign(&key, signer, "edge-1", 7, blake3(b"seg")).unwrap();
        (key, signature)
    }

    #[test]
    fn a_signature_verifies_for_its_segment_only() {
        let (_, signature) = key_signed();
        let id = blake3(b"seg");
        signature.verify("edge-1", 7, &id).unwrap();
        assert!(signature.verify("edge-2", 7, &id).is_err());
        assert!(signature.verify("edge-1", 8, &id).is_err());
        assert!(signature.verify("edge-1", 7, &blake3(b"other")).is_err());
        // Fields rewritten in the blob no longer match what was signed.
        let mut forged = signature.clone();
        forged.seq = 8;
        assert!(forged
            .verify("edge-1", 8, &id)
            .unwrap_err()
            .0
            .contains("does not verify"));
        // Another key's signature over the same segment is not this signer's.
        let (_, other) = key_signed();
        let mut swapped = signature;
        swapped.signature = other.signature;
        assert!(swapped.verify("edge-1", 7, &id).is_err());
    }

    #[test]
    fn a_certificate_signer_yields_its_subject_key() {
        use crate::crypto::pki::{new_ca, Ca};
        let validity = valid_today();
        let ca = new_ca("fleet.test", validity).unwrap();
        let ca = Ca::load(&ca.cert_pem, &ca.key_pem).unwrap();
        let node = ca.issue("edge-1", validity).unwrap();
        let der = pem::parse(node.cert_pem.as_bytes())
            .unwrap()
            .into_contents();
        let key_der = pem::parse(node.key_pem.as_bytes()).unwrap().into_contents();
        let key = PrivateKey::from_pkcs8_der(&key_der).unwrap();
        let id = blake3(b"seg");
        let signature =
            OriginSignature::sign(&key, Signer::Certificate(der), "edge-1", 0, id).unwrap();
        signature.verify("edge-1", 0, &id).unwrap();
        assert_eq!(signature.public_key().unwrap(), *key.public_key());
        let decoded = OriginSignature::decode(&signature.encode()).unwrap();
        assert_eq!(decoded, signature);
    }

    #[test]
    fn a_certificate_must_come_from_the_fleet_ca_and_name_the_origin() {
        use crate::crypto::pki::{new_ca, Ca};
        let validity = valid_today();
        let fleet = new_ca("fleet.test", validity).unwrap();
        let other = new_ca("fleet.test", validity).unwrap();
        let sign_as = |ca_files: &crate::crypto::pki::Issued, node: &str, origin: &str| {
            let ca = Ca::load(&ca_files.cert_pem, &ca_files.key_pem).unwrap();
            let issued = ca.issue(node, validity).unwrap();
            let der = pem::parse(issued.cert_pem.as_bytes())
                .unwrap()
                .into_contents();
            let key_der = pem::parse(issued.key_pem.as_bytes())
                .unwrap()
                .into_contents();
            let key = PrivateKey::from_pkcs8_der(&key_der).unwrap();
            OriginSignature::sign(&key, Signer::Certificate(der), origin, 3, blake3(b"seg"))
                .unwrap()
                .encode()
        };
        let id = blake3(b"seg");
        let trust = OriginTrust {
            ca_pem: Some(&fleet.cert_pem),
            ..OriginTrust::default()
        };
        verify_blob(
            &sign_as(&fleet, "edge-1", "edge-1"),
            "edge-1",
            3,
            &id,
            &trust,
        )
        .unwrap();
        // edge-2's own certificate, signing a segment in edge-1's name.
        let forged = sign_as(&fleet, "edge-2", "edge-1");
        let err = verify_blob(&forged, "edge-1", 3, &id, &trust).unwrap_err();
        assert!(err.0.contains("not the origin"), "{err}");
        // A certificate from another CA.
        let foreign = sign_as(&other, "edge-1", "edge-1");
        let err = verify_blob(&foreign, "edge-1", 3, &id, &trust).unwrap_err();
        assert!(err.0.contains("not issued by the fleet CA"), "{err}");
        // No CA to check against: refused, never assumed.
        let untrusted = OriginTrust::default();
        assert!(verify_blob(
            &sign_as(&fleet, "edge-1", "edge-1"),
            "edge-1",
            3,
            &id,
            &untrusted
        )
        .is_err());
    }

    #[test]
    fn a_bare_key_must_be_the_pinned_one() {
        let (key, signature) = key_signed();
        let blob = signature.encode();
        let id = blake3(b"seg");
        let spki = key.public_key().spki_der().to_vec();
        let open = OriginTrust::default();
        verify_blob(&blob, "edge-1", 7, &id, &open).unwrap();
        let pinned = OriginTrust {
            pinned_key: Some(&spki),
            ..OriginTrust::default()
        };
        verify_blob(&blob, "edge-1", 7, &id, &pinned).unwrap();
        let (other, _) = key_signed();
        let other_spki = other.public_key().spki_der().to_vec();
        let wrong = OriginTrust {
            pinned_key: Some(&other_spki),
            ..OriginTrust::default()
        };
        assert!(verify_blob(&blob, "edge-1", 7, &id, &wrong).is_err());
        let strict = OriginTrust {
            require_certificate: true,
            ..OriginTrust::default()
        };
        assert!(verify_blob(&blob, "edge-1", 7, &id, &strict).is_err());
    }

    #[test]
    fn blobs_round_trip_and_damage_is_refused() {
        let (_, signature) = key_signed();
        let blob = signature.encode();
        assert_eq!(OriginSignature::decode(&blob).unwrap(), signature);
        for at in [0, 8, 10, 20, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[at] ^= 1;
            assert!(OriginSignature::decode(&bad).is_err(), "flip at {at}");
        }
        assert!(OriginSignature::decode(&blob[..blob.len() - 5]).is_err());
        assert!(OriginSignature::decode(b"").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = OriginSignature::decode(&bytes);
        }
    }
}
