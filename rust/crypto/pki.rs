//! The small-fleet PKI (issue #7): one CA per trust domain, node certificates
//! for mutual TLS, and the CA's certificate revocation list.
//!
//! Everything here is PEM text in, PEM text out; files, modes and directories
//! are the caller's (`vedette.peers.pki`). All keys are ECDSA P-256 made and
//! used with ring, the provider of the peer transport's rustls.
//!
//! - The CA certificate carries its trust domain as its URI SAN `spiffe://D`
//!   (as SPIFFE signing certificates may), so issuing needs only `ca.crt` and
//!   `ca.key`.
//! - A node certificate has the SAN URI `spiffe://D/node/NODE` and the DNS name
//!   `NODE`, EKU serverAuth + clientAuth, and a random 128-bit serial.
//! - The CRL is the only revocation record: revoking reads the current CRL
//!   (checking its signature against the CA), adds the serial, increments the
//!   CRL number and signs it again.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use zeroize::Zeroizing;

/// A certificate, key or CRL could not be made, read or used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(pub String);

fn err(message: impl Into<String>) -> PkiError {
    PkiError(message.into())
}

/// Longest node name: one DNS label.
pub const MAX_NODE_LEN: usize = 63;
/// Longest trust domain (SPIFFE: 255 bytes).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A validity window in Unix seconds, `not_before < not_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start of the window, in seconds since the Unix epoch (inclusive; 0 at the earliest).
    pub not_before: i64,
    /// End of the window, in seconds since the Unix epoch (after `not_before`; year 9999 at the
    /// latest).
    pub not_after: i64,
}

impl Validity {
    fn times(self) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
        if self.not_before >= self.not_after {
            return Err(err(format!(
                "validity window is empty: not_before {} is not before not_after {}",
                self.not_before, self.not_after
            )));
        }
        Ok((unix_time(self.not_before)?, unix_time(self.not_after)?))
    }
}

fn unix_time(seconds: i64) -> Result<OffsetDateTime, PkiError> {
    // X.509 times run from year 0 to 9999; GeneralizedTime covers them all.
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(0..=MAX).contains(&seconds) {
        return Err(err(format!("time {seconds} is outside 1970..9999")));
    }
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| err(format!("time {seconds}: {e}")))
}

/// A certificate and its private key (PKCS#8 PEM, wiped on drop).
pub struct Issued {
    /// The certificate, as PEM `CERTIFICATE` text.
    pub cert_pem: String,
    /// The certificate's private key, as PKCS#8 PEM text; zeroed when dropped.
    pub key_pem: Zeroizing<String>,
}

/// A trust domain: lowercase letters, digits, `.`, `-`, `_` (SPIFFE's rule).
pub fn check_trust_domain(domain: &str) -> Result<(), PkiError> {
    let ok = !domain.is_empty()
        && domain.len() <= MAX_TRUST_DOMAIN_LEN
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "trust domain {domain:?} is not valid: use 1 to {MAX_TRUST_DOMAIN_LEN} of a-z, 0-9, '.', '-', '_'"
        )))
    }
}

/// A node name: one lowercase DNS label (a-z, 0-9, inner '-'; at most 63).
/// It becomes a file name, a DNS SAN and the last segment of a SPIFFE id, so
/// nothing else is accepted (no dots, slashes, upper case or empty names).
pub fn check_node_name(node: &str) -> Result<(), PkiError> {
    let bytes = node.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_NODE_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && node != "ca"
        && node != "crl";
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "node name {node:?} is not valid: use a DNS label of 1 to {MAX_NODE_LEN} of a-z, 0-9 \
             and inner '-' (and not 'ca' or 'crl')"
        )))
    }
}

/// The SPIFFE id of a node.
pub fn node_spiffe_id(trust_domain: &str, node: &str) -> String {
    format!("spiffe://{trust_domain}/node/{node}")
}

fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| err(format!("could not make a P-256 key: {e}")))
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| err("no randomness available for a serial number"))?;
    // Positive and exactly 16 bytes long (RFC 5280: positive, at most 20 octets).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ia5(text: &str) -> Result<rcgen::string::Ia5String, PkiError> {
    rcgen::string::Ia5String::try_from(text).map_err(|e| err(format!("{text:?}: {e}")))
}

/// What every certificate here starts from: its validity, a random serial and
/// the subject (organization = trust domain, common name).
fn subject_params(
    validity: Validity,
    organization: &str,
    common_name: &str,
) -> Result<CertificateParams, PkiError> {
    let (not_before, not_after) = validity.times()?;
    let mut params = CertificateParams::default();
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, organization);
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    Ok(params)
}

/// A new self-signed CA for `trust_domain`.
pub fn new_ca(trust_domain: &str, validity: Validity) -> Result<Issued, PkiError> {
    check_trust_domain(trust_domain)?;
    let mut params = subject_params(
        validity,
        trust_domain,
        &format!("vedette CA {trust_domain}"),
    )?;
    params.subject_alt_names = vec![SanType::URI(ia5(&format!("spiffe://{trust_domain}"))?)];
    // pathlen 0: this CA signs node certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    let key = new_key()?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| err(format!("could not sign the CA certificate: {e}")))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// The CA as loaded from its files: what issuing and CRL signing need.
pub struct Ca {
    cert_der: Vec<u8>,
    key: KeyPair,
    trust_domain: String,
}

impl Ca {
    /// Loads `ca.crt` and `ca.key` and checks they belong together and form a vedette CA.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let cert_der = single_pem(cert_pem, "CERTIFICATE", "CA certificate")?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| err(format!("CA key is not a PKCS#8 P-256 key: {e}")))?;
        let (trust_domain, spki) = {
            let cert = parse_cert(&cert_der, "CA certificate")?;
            let ca = cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca);
            if !ca {
                return Err(err(
                    "CA certificate is not a CA (basicConstraints CA:FALSE)",
                ));
            }
            let domain = spiffe_uris(&cert)?
                .into_iter()
                .find_map(|uri| uri.strip_prefix("spiffe://").map(str::to_owned))
                .filter(|d| check_trust_domain(d).is_ok())
                .ok_or_else(|| err("CA certificate has no spiffe://<trust domain> URI"))?;
            (domain, cert.public_key().subject_public_key.data.to_vec())
        };
        if key.public_key_raw() != spki.as_slice() {
            return Err(err("CA key does not belong to the CA certificate"));
        }
        Ok(Ca {
            cert_der,
            key,
            trust_domain,
        })
    }

    /// The trust domain `D` of the CA's `spiffe://D` URI: the domain every certificate it issues
    /// belongs to.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        crate::crypto::ecdsa::encode_pem("CERTIFICATE", &self.cert_der)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), &self.key)
            .map_err(|e| err(format!("CA certificate cannot issue: {e}")))
    }

    /// A node certificate and key for `node`.
    pub fn issue(&self, node: &str, validity: Validity) -> Result<Issued, PkiError> {
        check_node_name(node)?;
        let mut params = subject_params(validity, &self.trust_domain, node)?;
        params.subject_alt_names = vec![
            SanType::URI(ia5(&node_spiffe_id(&self.trust_domain, node))?),
            SanType::DnsName(ia5(node)?),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let key = new_key()?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|e| err(format!("could not sign the certificate of {node:?}: {e}")))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// The serial of a certificate this CA issued (its signature is checked).
    pub fn serial_of(&self, cert_pem: &str) -> Result<Vec<u8>, PkiError> {
        let der = single_pem(cert_pem, "CERTIFICATE", "certificate")?;
        let cert = parse_cert(&der, "certificate")?;
        let ca = parse_cert(&self.cert_der, "CA certificate")?;
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| err("certificate was not issued by this CA"))?;
        if cert.is_ca() {
            // Only the CA signs as the CA: this is ca.crt itself, which a CRL cannot revoke.
            return Err(err(
                "that is the CA certificate; a CRL revokes node certificates only",
            ));
        }
        Ok(trim_serial(cert.raw_serial()).to_vec())
    }

    /// A newly signed CRL: the entries of `previous` (checked to be this CA's),
    /// plus `revoke` (serials already listed are kept once), with the CRL number
    /// one above the previous one.
    pub fn sign_crl(
        &self,
        previous: Option<&str>,
        revoke: &[Vec<u8>],
        this_update: i64,
        next_update: i64,
    ) -> Result<String, PkiError> {
        let (this_update, next_update) = Validity {
            not_before: this_update,
            not_after: next_update,
        }
        .times()?;
        let (mut entries, number) = match previous {
            Some(text) => self.read_crl(text)?,
            None => (Vec::new(), 0),
        };
        for serial in revoke {
            let serial = trim_serial(serial);
            if serial.is_empty() {
                return Err(err("cannot revoke an empty serial number"));
            }
            if !entries.iter().any(|e| e.serial_number.as_ref() == serial) {
                entries.push(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: this_update,
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                });
            }
        }
        let number = number
            .checked_add(1)
            .ok_or_else(|| err("CRL number overflow"))?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: entries,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer()?)
            .map_err(|e| err(format!("could not sign the CRL: {e}")))?;
        crl.pem()
            .map_err(|e| err(format!("could not encode the CRL: {e}")))
    }

    /// The entries and number of a CRL this CA signed.
    fn read_crl(&self, text: &str) -> Result<(Vec<RevokedCertParams>, u64), PkiError> {
        let der = single_pem(text, "X509 CRL", "CRL")?;
        let (rest, crl) = CertificateRevocationList::from_der(&der)
            .map_err(|e| err(format!("CRL does not parse: {e}")))?;
        if !rest.is_empty() {
            return Err(err("CRL has trailing bytes"));
        }
        let ca = parse_cert(&self.cert_der, "CA certificate")?;
        crl.verify_signature(ca.public_key())
            .map_err(|_| err("CRL is not signed by this CA"))?;
        let number = match crl.crl_number() {
            Some(n) => {
                let digits = n.to_u64_digits();
                match digits.as_slice() {
                    [] => 0,
                    [one] => *one,
                    _ => return Err(err("CRL number does not fit 64 bits")),
                }
            }
            None => 0,
        };
        let mut entries = Vec::new();
        for revoked in crl.iter_revoked_certificates() {
            let when = OffsetDateTime::from_unix_timestamp(revoked.revocation_date.timestamp())
                .map_err(|e| err(format!("CRL entry date: {e}")))?;
            let reason = revoked
                .reason_code()
                .and_then(|(_, code)| reason_from_code(code.0));
            entries.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(trim_serial(revoked.raw_serial())),
                revocation_time: when,
                reason_code: reason.or(Some(RevocationReason::Unspecified)),
                invalidity_date: None,
            });
        }
        Ok((entries, number))
    }
}

/// The revoked serials (big-endian, no leading zeros) and CRL number of a CRL
/// signed by the CA in `ca_cert_pem`; for tests and `vedette pki` listings.
pub fn crl_entries(ca_cert_pem: &str, crl_pem: &str) -> Result<(Vec<Vec<u8>>, u64), PkiError> {
    let cert_der = single_pem(ca_cert_pem, "CERTIFICATE", "CA certificate")?;
    let der = single_pem(crl_pem, "X509 CRL", "CRL")?;
    let ca = parse_cert(&cert_der, "CA certificate")?;
    let (_, crl) =
        CertificateRevocationList::from_der(&der).map_err(|e| err(format!("CRL: {e}")))?;
    crl.verify_signature(ca.public_key())
        .map_err(|_| err("CRL is not signed by this CA"))?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .unwrap_or(0);
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| trim_serial(r.raw_serial()).to_vec())
        .collect();
    Ok((serials, number))
}

fn reason_from_code(code: u8) -> Option<RevocationReason> {
    Some(match code {
        0 => RevocationReason::Unspecified,
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => return None,
    })
}

/// A serial without the sign-padding zero bytes DER may put in front.
fn trim_serial(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    &raw[start..]
}

/// The node a certificate was issued to by one of the CAs in `ca_pem`: its
/// signature checks against a CA's key, it is not itself a CA, and its SAN URI
/// is `spiffe://<that CA's trust domain>/node/<node>`. Validity dates and
/// revocation are the caller's to weigh: an origin signature is checked long
/// after the segment was sealed (docs/contracts.md, "Origin signatures").
pub fn issued_node(ca_pem: &str, cert_der: &[u8]) -> Result<String, PkiError> {
    let cert = parse_cert(cert_der, "certificate")?;
    if cert.is_ca() {
        return Err(err("a CA certificate does not speak for a node"));
    }
    let blocks = pem::parse_many(ca_pem).map_err(|e| err(format!("CA is not PEM: {e}")))?;
    for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
        let ca = parse_cert(block.contents(), "CA certificate")?;
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            continue;
        }
        let domains: Vec<String> = spiffe_uris(&ca)?
            .into_iter()
            .filter_map(|uri| uri.strip_prefix("spiffe://").map(str::to_owned))
            .collect();
        for uri in spiffe_uris(&cert)? {
            let Some((domain, node)) = uri
                .strip_prefix("spiffe://")
                .and_then(|rest| rest.split_once("/node/"))
            else {
                continue;
            };
            if domains.iter().any(|d| d == domain) {
                check_node_name(node)?;
                return Ok(node.to_owned());
            }
        }
        return Err(err(
            "certificate names no spiffe://<trust domain>/node/<id> of its CA",
        ));
    }
    Err(err("certificate was not issued by the fleet CA"))
}

fn single_pem(text: &str, tag: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let blocks = pem::parse_many(text).map_err(|e| err(format!("{what} is not PEM: {e}")))?;
    let mut blocks = blocks.into_iter();
    match (blocks.next(), blocks.next()) {
        (Some(block), None) if block.tag() == tag => Ok(block.into_contents()),
        (Some(block), None) => Err(err(format!(
            "{what}: expected a PEM '{tag}' block, found '{}'",
            block.tag()
        ))),
        (None, _) => Err(err(format!("{what}: no PEM block found"))),
        (Some(_), Some(_)) => Err(err(format!("{what}: more than one PEM block"))),
    }
}

fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok((&[], cert)) => Ok(cert),
        Ok(_) => Err(err(format!("{what} has trailing bytes"))),
        Err(e) => Err(err(format!("{what} does not parse: {e}"))),
    }
}

fn spiffe_uris(cert: &X509Certificate<'_>) -> Result<Vec<String>, PkiError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| err(format!("subjectAltName does not parse: {e}")))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}
