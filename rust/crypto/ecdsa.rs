//! ECDSA P-256 with SHA-256: the one signature scheme vedette signs and verifies.
//!
//! Signatures are ASN.1 DER (`ECDSA-Sig-Value`), as cosign writes them;
//! public keys are SubjectPublicKeyInfo (PEM `PUBLIC KEY`); private keys are
//! PKCS#8 with the public key included (what Go's `MarshalPKCS8PrivateKey`
//! and ring write, and what ring's parser requires).

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};
use x509_parser::der_parser::ber::BerObjectContent;
use x509_parser::der_parser::der::parse_der;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::keyfile::KeyFileError;
use crate::hashing::sha256;

/// The DER of a P-256 SubjectPublicKeyInfo up to the 65-byte uncompressed
/// point: `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }`.
/// DER has one encoding per value, so every such key starts with exactly this.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// An uncompressed P-256 point: `0x04 || X || Y`.
const POINT_LEN: usize = 65;

/// The PEM label of a public key.
pub const PUBLIC_KEY_PEM_TAG: &str = "PUBLIC KEY";

/// Largest signature accepted: a P-256 DER signature is at most 72 bytes.
const MAX_SIGNATURE_LEN: usize = 80;

/// A signature was refused: it does not verify, or it could not be read or made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignatureError(pub String);

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The canonical SPKI DER (prefix + point).
    spki_der: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    /// A key from PEM text holding one `PUBLIC KEY` block (SPKI, P-256 only).
    pub fn from_pem(pem_text: &[u8]) -> Result<PublicKey, KeyFileError> {
        let block = parse_single_pem(pem_text)?;
        if block.tag() != PUBLIC_KEY_PEM_TAG {
            return Err(KeyFileError::malformed(format!(
                "expected a PEM 'PUBLIC KEY' block, found '{}'",
                block.tag()
            )));
        }
        PublicKey::from_spki_der(block.contents())
    }

    /// A key from SubjectPublicKeyInfo DER; refuses other algorithms and curves by name.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyFileError> {
        if der.len() == SPKI_P256_PREFIX.len() + POINT_LEN
            && der.starts_with(&SPKI_P256_PREFIX)
            && der[SPKI_P256_PREFIX.len()] == 0x04
        {
            let key = PublicKey {
                spki_der: der.to_vec(),
            };
            return Ok(key);
        }
        Err(KeyFileError::unsupported(describe_spki(der)))
    }

    /// A key from its uncompressed point (`0x04 || X || Y`).
    pub(crate) fn from_point(point: &[u8]) -> Result<PublicKey, KeyFileError> {
        let mut der = SPKI_P256_PREFIX.to_vec();
        der.extend_from_slice(point);
        PublicKey::from_spki_der(&der)
    }

    /// The SPKI DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// PEM `PUBLIC KEY` text, LF line endings (as cosign writes it).
    pub fn pem(&self) -> String {
        encode_pem(PUBLIC_KEY_PEM_TAG, &self.spki_der)
    }

    /// `sha256:<hex>` of the SPKI DER: names the key in logs and errors.
    pub fn key_id(&self) -> String {
        sha256(&self.spki_der).to_string()
    }

    fn point(&self) -> &[u8] {
        &self.spki_der[SPKI_P256_PREFIX.len()..]
    }

    /// Checks a DER ECDSA P-256/SHA-256 signature over exactly `payload`.
    pub fn verify(&self, payload: &[u8], signature_der: &[u8]) -> Result<(), SignatureError> {
        if signature_der.is_empty() || signature_der.len() > MAX_SIGNATURE_LEN {
            return Err(SignatureError(format!(
                "signature is {} bytes: not a DER ECDSA P-256 signature",
                signature_der.len()
            )));
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, self.point())
            .verify(payload, signature_der)
            .map_err(|_| {
                SignatureError(format!(
                    "signature does not verify with key {}",
                    self.key_id()
                ))
            })
    }
}

/// An ECDSA P-256 private key.
pub struct PrivateKey {
    pair: EcdsaKeyPair,
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material: only which public key it belongs to.
        write!(f, "PrivateKey({})", self.public.key_id())
    }
}

impl PrivateKey {
    /// A fresh key from the system's random source.
    pub fn generate() -> Result<PrivateKey, KeyFileError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| KeyFileError::malformed("could not generate a P-256 key".into()))?;
        PrivateKey::from_pkcs8_der(pkcs8.as_ref())
    }

    /// A key from PKCS#8 DER (with its public key). Other algorithms and
    /// curves are refused by name.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, KeyFileError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
            .map_err(|_| KeyFileError::unsupported(describe_pkcs8(der)))?;
        let public = PublicKey::from_point(pair.public_key().as_ref())?;
        Ok(PrivateKey {
            pair,
            pkcs8: zeroize::Zeroizing::new(der.to_vec()),
            public,
        })
    }

    /// The PKCS#8 DER (what the encrypted key file seals).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half of this key, derived from the PKCS#8 it was loaded from.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// A DER ECDSA P-256/SHA-256 signature over `payload` (randomised nonce).
    pub fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let rng = SystemRandom::new();
        self.pair
            .sign(&rng, payload)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| SignatureError("signing failed: no randomness available".into()))
    }
}

/// Parses text holding exactly one PEM block (surrounding whitespace allowed).
pub(crate) fn parse_single_pem(text: &[u8]) -> Result<pem::Pem, KeyFileError> {
    let blocks = pem::parse_many(text)
        .map_err(|err| KeyFileError::malformed(format!("not valid PEM: {err}")))?;
    let mut blocks = blocks.into_iter();
    match (blocks.next(), blocks.next()) {
        (Some(block), None) => Ok(block),
        (None, _) => Err(KeyFileError::malformed("no PEM block found".into())),
        (Some(_), Some(_)) => Err(KeyFileError::malformed(
            "more than one PEM block: expected exactly one".into(),
        )),
    }
}

/// PEM text with LF line endings and 64-column lines.
pub(crate) fn encode_pem(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Why an SPKI is not a P-256 key, naming the algorithm or curve found.
fn describe_spki(der: &[u8]) -> String {
    match SubjectPublicKeyInfo::from_der(der) {
        Ok((&[], spki)) => {
            let algorithm = spki.algorithm.algorithm.to_id_string();
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            if algorithm == OID_EC_PUBLIC_KEY && curve.as_deref() == Some(OID_P256) {
                "P-256 public key is not an uncompressed point".into()
            } else {
                format!(
                    "unsupported public key: {}; only ECDSA P-256 keys are accepted",
                    name_key(&algorithm, curve.as_deref())
                )
            }
        }
        _ => "public key is not a valid SubjectPublicKeyInfo".into(),
    }
}

/// Why PKCS#8 DER did not load as a P-256 key.
fn describe_pkcs8(der: &[u8]) -> String {
    // PrivateKeyInfo ::= SEQUENCE { version, SEQUENCE { algorithm, parameters }, OCTET STRING, ... }
    let parsed = parse_der(der).ok().and_then(|(rest, obj)| {
        if !rest.is_empty() {
            return None;
        }
        let items = obj.as_sequence().ok()?;
        let alg = items.get(1)?.as_sequence().ok()?;
        let algorithm = alg.first()?.as_oid().ok()?.to_id_string();
        let curve = alg.get(1).and_then(|p| match &p.content {
            BerObjectContent::OID(oid) => Some(oid.to_id_string()),
            _ => None,
        });
        Some((algorithm, curve))
    });
    match parsed {
        None => "private key is not valid PKCS#8 DER".into(),
        Some((algorithm, curve)) => {
            if algorithm == OID_EC_PUBLIC_KEY && curve.as_deref() == Some(OID_P256) {
                "P-256 private key could not be read (a PKCS#8 key must include its public key)"
                    .into()
            } else {
                format!(
                    "unsupported private key: {}; only ECDSA P-256 keys are accepted",
                    name_key(&algorithm, curve.as_deref())
                )
            }
        }
    }
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

fn name_key(algorithm: &str, curve: Option<&str>) -> String {
    match (algorithm, curve) {
        (OID_EC_PUBLIC_KEY, Some("1.3.132.0.34")) => "ECDSA on curve P-384".into(),
        (OID_EC_PUBLIC_KEY, Some("1.3.132.0.35")) => "ECDSA on curve P-521".into(),
        (OID_EC_PUBLIC_KEY, Some("1.3.132.0.10")) => "ECDSA on curve secp256k1".into(),
        (OID_EC_PUBLIC_KEY, Some(other)) => format!("ECDSA on curve {other}"),
        (OID_EC_PUBLIC_KEY, None) => "ECDSA without a named curve".into(),
        ("1.2.840.113549.1.1.1", _) => "RSA".into(),
        ("1.3.101.112", _) => "Ed25519".into(),
        (other, _) => format!("algorithm {other}"),
    }
}
