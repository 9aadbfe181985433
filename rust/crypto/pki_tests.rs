//! The PKI: certificates and CRLs read back with x509-parser and checked with
//! rustls-webpki, the verifier of the peer transport's rustls.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::crypto::pki::{self, Ca, Validity};

const NOW: i64 = 1_767_225_600; // 2026-01-01
const YEAR: Validity = Validity {
    not_before: NOW,
    not_after: NOW + 365 * 86_400,
};

fn ca(domain: &str) -> Ca {
    let issued = pki::new_ca(domain, YEAR).unwrap();
    Ca::load(&issued.cert_pem, &issued.key_pem).unwrap()
}

fn der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

#[test]
fn node_certificate_names_its_node_and_both_uses() {
    let ca = ca("fleet.example");
    assert_eq!(ca.trust_domain(), "fleet.example");
    let node = ca.issue("node-1", YEAR).unwrap();
    let der = der(&node.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        ["URI:spiffe://fleet.example/node/node-1", "DNS:node-1"]
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!cert.is_ca());
    assert_eq!(cert.raw_serial().len(), 16);
    assert!(node.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let serial = ca.serial_of(&node.cert_pem).unwrap();
    assert_eq!(serial, cert.raw_serial());
}

#[test]
fn serials_are_random() {
    let ca = ca("d");
    let a = ca.issue("a", YEAR).unwrap();
    let b = ca.issue("a", YEAR).unwrap();
    assert_ne!(
        ca.serial_of(&a.cert_pem).unwrap(),
        ca.serial_of(&b.cert_pem).unwrap()
    );
}

#[test]
fn bad_names_are_refused() {
    let ca = ca("d");
    for bad in [
        "",
        "../x",
        "a/b",
        "a.b",
        "-a",
        "a-",
        "UPPER",
        "ca",
        "crl",
        "a b",
        "é",
        &"x".repeat(64),
    ] {
        assert!(ca.issue(bad, YEAR).is_err(), "{bad:?}");
    }
    for bad in ["", "Fleet", "a/b", "a:b"] {
        assert!(pki::new_ca(bad, YEAR).is_err(), "{bad:?}");
    }
    let empty = Validity {
        not_before: NOW,
        not_after: NOW,
    };
    assert!(ca.issue("a", empty).is_err());
}

#[test]
fn revocations_accumulate_and_the_crl_number_grows() {
    let ca = ca("d");
    let a = ca.issue("a", YEAR).unwrap();
    let b = ca.issue("b", YEAR).unwrap();
    let ca_pem = ca_cert_pem(&ca);
    let empty = ca.sign_crl(None, &[], NOW, NOW + 86_400).unwrap();
    assert_eq!(pki::crl_entries(&ca_pem, &empty).unwrap(), (vec![], 1));
    let sa = ca.serial_of(&a.cert_pem).unwrap();
    let sb = ca.serial_of(&b.cert_pem).unwrap();
    let one = ca
        .sign_crl(Some(&empty), std::slice::from_ref(&sa), NOW, NOW + 86_400)
        .unwrap();
    let two = ca
        .sign_crl(Some(&one), &[sb.clone(), sa.clone()], NOW + 1, NOW + 86_400)
        .unwrap();
    let (serials, number) = pki::crl_entries(&ca_pem, &two).unwrap();
    assert_eq!(number, 3);
    assert_eq!(serials, vec![sa, sb]);
}

#[test]
fn another_cas_crl_and_certificates_are_refused() {
    let ours = ca("d");
    let theirs = ca("d");
    let foreign = theirs.issue("a", YEAR).unwrap();
    assert!(ours.serial_of(&foreign.cert_pem).is_err());
    let their_crl = theirs.sign_crl(None, &[], NOW, NOW + 60).unwrap();
    let err = ours
        .sign_crl(Some(&their_crl), &[], NOW, NOW + 60)
        .err()
        .unwrap();
    assert!(err.0.contains("not signed by this CA"), "{err}");
}

#[test]
fn the_ca_cannot_revoke_itself() {
    let ca = ca("d");
    let err = ca.serial_of(&ca.cert_pem()).err().unwrap();
    assert!(err.0.contains("CA certificate"), "{err}");
}

#[test]
fn a_key_from_another_ca_does_not_load() {
    let a = pki::new_ca("d", YEAR).unwrap();
    let b = pki::new_ca("d", YEAR).unwrap();
    let err = Ca::load(&a.cert_pem, &b.key_pem).err().unwrap();
    assert!(err.0.contains("does not belong"), "{err}");
    let node = Ca::load(&a.cert_pem, &a.key_pem)
        .unwrap()
        .issue("n", YEAR)
        .unwrap();
    assert!(Ca::load(&node.cert_pem, &node.key_pem).is_err());
}

fn ca_cert_pem(ca: &Ca) -> String {
    ca.cert_pem()
}

/// The checks the peer transport's rustls makes: chain to the CA, EKU,
/// revocation for the whole chain with unknown status denied and expired
/// CRLs rejected, and the node's names.
mod webpki_accepts {
    use std::time::Duration;

    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use webpki::{
        anchor_from_trusted_cert, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage,
        OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder,
        UnknownStatusPolicy, ALL_VERIFICATION_ALGS,
    };

    use super::{ca, der, NOW, YEAR};

    fn check(
        ca_pem: &str,
        crl_pem: &str,
        cert_pem: &str,
        at: i64,
        usage: KeyUsage,
    ) -> Result<(), webpki::Error> {
        let ca_der = CertificateDer::from(der(ca_pem));
        let anchor = anchor_from_trusted_cert(&ca_der)?;
        let cert_der = CertificateDer::from(der(cert_pem));
        let cert = EndEntityCert::try_from(&cert_der)?;
        let crl: CertRevocationList<'_> = OwnedCertRevocationList::from_der(&der(crl_pem))?.into();
        let crls = [&crl];
        let revocation = RevocationOptionsBuilder::new(&crls)
            .unwrap()
            .with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(UnknownStatusPolicy::Deny)
            .with_expiration_policy(ExpirationPolicy::Enforce)
            .build();
        let time = UnixTime::since_unix_epoch(Duration::from_secs(at as u64));
        cert.verify_for_usage(
            ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            time,
            usage,
            Some(revocation),
            None,
        )?;
        Ok(())
    }

    #[test]
    fn fresh_certificates_pass_and_revoked_ones_fail() {
        let ca = ca("fleet.example");
        let ca_pem = ca.cert_pem();
        let a = ca.issue("node-a", YEAR).unwrap();
        let b = ca.issue("node-b", YEAR).unwrap();
        let crl = ca.sign_crl(None, &[], NOW, NOW + 86_400).unwrap();
        let at = NOW + 60;
        for usage in [KeyUsage::server_auth(), KeyUsage::client_auth()] {
            check(&ca_pem, &crl, &a.cert_pem, at, usage).unwrap();
        }
        let revoked = ca
            .sign_crl(
                Some(&crl),
                &[ca.serial_of(&a.cert_pem).unwrap()],
                NOW + 1,
                NOW + 86_400,
            )
            .unwrap();
        let err = check(&ca_pem, &revoked, &a.cert_pem, at, KeyUsage::client_auth());
        assert_eq!(err, Err(webpki::Error::CertRevoked));
        check(&ca_pem, &revoked, &b.cert_pem, at, KeyUsage::client_auth()).unwrap();
        // An expired CRL fails every handshake.
        let late = NOW + 2 * 86_400;
        let err = check(
            &ca_pem,
            &revoked,
            &b.cert_pem,
            late,
            KeyUsage::client_auth(),
        );
        assert!(
            matches!(err, Err(webpki::Error::CrlExpired { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn names_are_the_spiffe_uri_and_the_dns_name() {
        let ca = ca("fleet.example");
        let a = ca.issue("node-a", YEAR).unwrap();
        let cert_der = CertificateDer::from(der(&a.cert_pem));
        let cert = EndEntityCert::try_from(&cert_der).unwrap();
        let name = ServerName::try_from("node-a").unwrap();
        cert.verify_is_valid_for_subject_name(&name).unwrap();
        let other = ServerName::try_from("node-b").unwrap();
        assert!(cert.verify_is_valid_for_subject_name(&other).is_err());
    }

    #[test]
    fn another_cas_certificate_and_crl_fail() {
        let ours = ca("fleet.example");
        let theirs = ca("fleet.example");
        let intruder = theirs.issue("node-a", YEAR).unwrap();
        let crl = ours.sign_crl(None, &[], NOW, NOW + 86_400).unwrap();
        let their_crl = theirs.sign_crl(None, &[], NOW, NOW + 86_400).unwrap();
        let ours_pem = ours.cert_pem();
        let at = NOW + 60;
        assert!(check(
            &ours_pem,
            &crl,
            &intruder.cert_pem,
            at,
            KeyUsage::client_auth()
        )
        .is_err());
        // Our certificate with only a foreign CRL: revocation status unknown, denied.
        let a = ours.issue("node-a", YEAR).unwrap();
        assert!(check(
            &ours_pem,
            &their_crl,
            &a.cert_pem,
            at,
            KeyUsage::client_auth()
        )
        .is_err());
    }
}
