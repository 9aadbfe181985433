//! Signing keys: round trips, tampering, cosign fixtures and hostile key files.
//! The PKI's tests are in `pki_tests.rs`.

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
