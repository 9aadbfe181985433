//! Signing keys: round trips, tampering, cosign fixtures and hostile key files.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::ecdsa::{PrivateKey, PublicKey};
use super::keyfile::{self, KeyFileErrorKind, ScryptParams, LEGACY_PEM_TAG, PEM_TAG};

/// Cheap scrypt parameters so the tests spend no time in the KDF.
const FAST: ScryptParams = ScryptParams { n: 16, r: 8, p: 1 };

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cosign");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

#[test]
fn sign_then_verify_round_trips() {
    let key = PrivateKey::generate().unwrap();
    let signature = key.sign(b"payload").unwrap();
    key.public_key().verify(b"payload", &signature).unwrap();
}

#[test]
fn flipped_signature_byte_is_refused() {
    let key = PrivateKey::generate().unwrap();
    let signature = key.sign(b"payload").unwrap();
    for at in 0..signature.len() {
        let mut bad = signature.clone();
        bad[at] ^= 0x01;
        assert!(
            key.public_key().verify(b"payload", &bad).is_err(),
            "byte {at}"
        );
    }
}

#[test]
fn other_payload_and_other_key_are_refused() {
    let key = PrivateKey::generate().unwrap();
    let other = PrivateKey::generate().unwrap();
    let signature = key.sign(b"payload").unwrap();
    assert!(key.public_key().verify(b"payload!", &signature).is_err());
    assert!(other.public_key().verify(b"payload", &signature).is_err());
}

#[test]
fn public_key_pem_round_trips_and_names_itself() {
    let key = PrivateKey::generate().unwrap();
    let pem = key.public_key().pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let back = PublicKey::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(&back, key.public_key());
    assert!(back.key_id().starts_with("sha256:"));
    assert_eq!(back.key_id().len(), "sha256:".len() + 64);
}

#[test]
fn encrypted_key_round_trips_and_wrong_password_says_so() {
    let key = PrivateKey::generate().unwrap();
    let text = keyfile::encrypt(&key, b"hunter2", FAST).unwrap();
    assert!(text.starts_with(&format!("-----BEGIN {PEM_TAG}-----\n")));
    let back = keyfile::decrypt(text.as_bytes(), b"hunter2").unwrap();
    assert_eq!(back.public_key(), key.public_key());
    let err = keyfile::decrypt(text.as_bytes(), b"hunter3").unwrap_err();
    assert_eq!(err.kind, KeyFileErrorKind::WrongPassword);
    assert!(err.message.contains("wrong password"), "{}", err.message);
}

#[test]
fn written_key_file_has_cosign_json_fields() {
    let key = PrivateKey::generate().unwrap();
    let text = keyfile::encrypt(&key, b"", FAST).unwrap();
    let block = pem::parse(&text).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(block.contents()).unwrap();
    assert_eq!(doc["kdf"]["name"], "scrypt");
    assert_eq!(doc["kdf"]["params"]["N"], 16);
    assert_eq!(doc["cipher"]["name"], "nacl/secretbox");
    let salt = STANDARD
        .decode(doc["kdf"]["salt"].as_str().unwrap())
        .unwrap();
    let nonce = STANDARD
        .decode(doc["cipher"]["nonce"].as_str().unwrap())
        .unwrap();
    assert_eq!((salt.len(), nonce.len()), (32, 24));
}

#[test]
fn cosign_made_keys_load() {
    // Written by cosign, published in sigstore-rs (see tests/data/cosign/README.md).
    let legacy = fixture("ecdsa_encrypted_private.key");
    assert!(String::from_utf8_lossy(&legacy).contains(LEGACY_PEM_TAG));
    let key = keyfile::decrypt(&legacy, b"123").unwrap();
    let signature = key.sign(b"x").unwrap();
    key.public_key().verify(b"x", &signature).unwrap();
    let current = fixture("cosign_generated_encrypted_empty_private.key");
    keyfile::decrypt(&current, b"").unwrap();
}

#[test]
fn published_sigstore_signature_vector_verifies() {
    let public = PublicKey::from_pem(&fixture("ecdsa_test.pub")).unwrap();
    let signature = STANDARD
        .decode(String::from_utf8(fixture("sign_me.sig")).unwrap().trim())
        .unwrap();
    public.verify(b"sign me", &signature).unwrap();
    assert!(public.verify(b"sign me!", &signature).is_err());
}

#[test]
fn hostile_scrypt_parameters_are_refused_before_any_work() {
    for (n, r, p) in [
        (1u64 << 30, 8, 1),
        (1 << 20, 8, 1),
        (1 << 16, 1024, 1),
        (1 << 16, 8, 64),
        (3, 8, 1),
        (0, 8, 1),
    ] {
        let body = format!(
            r#"{{"kdf":{{"name":"scrypt","params":{{"N":{n},"r":{r},"p":{p}}},"salt":"AAAA"}},"cipher":{{"name":"nacl/secretbox","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},"ciphertext":"AAAA"}}"#
        );
        let text = super::ecdsa::encode_pem(PEM_TAG, body.as_bytes());
        let err = keyfile::decrypt(text.as_bytes(), b"").unwrap_err();
        assert!(
            matches!(
                err.kind,
                KeyFileErrorKind::Limits | KeyFileErrorKind::Malformed
            ),
            "N={n} r={r} p={p}: {err}"
        );
    }
}

#[test]
fn malformed_key_files_are_refused_with_a_reason() {
    let key = PrivateKey::generate().unwrap();
    let good = keyfile::encrypt(&key, b"pw", FAST).unwrap();
    let block = pem::parse(&good).unwrap();
    let body = String::from_utf8(block.contents().to_vec()).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("not pem at all".into(), "PEM"),
        (super::ecdsa::encode_pem(PEM_TAG, b"{not json"), "JSON"),
        (
            super::ecdsa::encode_pem(
                PEM_TAG,
                body.replace("nacl/secretbox", "aes-gcm").as_bytes(),
            ),
            "cipher.name",
        ),
        (
            super::ecdsa::encode_pem(PEM_TAG, body.replace("\"scrypt\"", "\"pbkdf2\"").as_bytes()),
            "kdf.name",
        ),
        (
            super::ecdsa::encode_pem(
                PEM_TAG,
                body.replace("\"ciphertext\":\"", "\"ciphertext\":\"!")
                    .as_bytes(),
            ),
            "base64",
        ),
        (super::ecdsa::encode_pem("CERTIFICATE", b"x"), "CERTIFICATE"),
        (format!("{good}{good}"), "more than one"),
    ];
    for (text, needle) in cases {
        let err = keyfile::decrypt(text.as_bytes(), b"pw").unwrap_err();
        assert!(err.message.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn other_curves_are_refused_by_name() {
    let p384 = fixture("p384.pub");
    let err = PublicKey::from_pem(&p384).unwrap_err();
    assert_eq!(err.kind, KeyFileErrorKind::Unsupported);
    assert!(err.message.contains("P-384"), "{err}");
    let ed = fixture("ed25519.pub");
    let err = PublicKey::from_pem(&ed).unwrap_err();
    assert!(err.message.contains("Ed25519"), "{err}");
}

#[test]
fn sealed_keys_of_other_curves_are_refused_by_name() {
    let rng = ring::rand::SystemRandom::new();
    let p384 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    let sealed = keyfile::seal_der(p384.as_ref(), b"pw", FAST).unwrap();
    let err = keyfile::decrypt(sealed.as_bytes(), b"pw").unwrap_err();
    assert_eq!(err.kind, KeyFileErrorKind::Unsupported);
    assert!(err.message.contains("P-384"), "{err}");
    let sealed = keyfile::seal_der(b"\x30\x03\x02\x01\x00", b"pw", FAST).unwrap();
    let err = keyfile::decrypt(sealed.as_bytes(), b"pw").unwrap_err();
    assert!(err.message.contains("PKCS#8"), "{err}");
}

#[test]
fn published_sigstore_private_key_signs_for_its_public_key() {
    let block = pem::parse(fixture("ecdsa_test.key")).unwrap();
    let sealed = keyfile::seal_der(block.contents(), b"pw", FAST).unwrap();
    let key = keyfile::decrypt(sealed.as_bytes(), b"pw").unwrap();
    let public = PublicKey::from_pem(&fixture("ecdsa_test.pub")).unwrap();
    assert_eq!(key.public_key(), &public);
    public
        .verify(b"sign me", &key.sign(b"sign me").unwrap())
        .unwrap();
}

#[test]
fn cosign_defaults_are_what_the_bindings_advertise() {
    // rust/bindings/crypto.rs spells these out in generate_key_pair's signature.
    assert_eq!(
        ScryptParams::COSIGN,
        ScryptParams {
            n: 65536,
            r: 8,
            p: 1
        }
    );
}

mod pki {
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
            anchor_from_trusted_cert, CertRevocationList, EndEntityCert, ExpirationPolicy,
            KeyUsage, OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder,
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
            let crl: CertRevocationList<'_> =
                OwnedCertRevocationList::from_der(&der(crl_pem))?.into();
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
}
