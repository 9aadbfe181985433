//! cosign's encrypted private-key file, read and written byte-compatibly.
//!
//! `cosign generate-key-pair` writes a PEM block `ENCRYPTED SIGSTORE PRIVATE KEY`
//! (older versions: `ENCRYPTED COSIGN PRIVATE KEY`) whose body is the JSON of
//! go-securesystemslib's `encrypted` package:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<b64, 32 bytes>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<b64, 24 bytes>"},
//!  "ciphertext":"<b64>"}
//! ```
//!
//! The key is `scrypt(password, salt, N, r, p, 32)`; the ciphertext is the
//! NaCl secretbox (XSalsa20-Poly1305, tag first) of the PKCS#8 DER of the key.
//! Reading refuses scrypt parameters beyond [`ScryptParams::within_limits`]
//! so a hostile file cannot make the reader allocate gigabytes or spin for minutes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use zeroize::Zeroizing;

use super::ecdsa::{encode_pem, parse_single_pem, PrivateKey};

/// The PEM label cosign writes today.
pub const PEM_TAG: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label of keys written by cosign before 1.x's rename; still read.
pub const LEGACY_PEM_TAG: &str = "ENCRYPTED COSIGN PRIVATE KEY";

const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// A key file is a few hundred bytes; anything far larger is not one.
const MAX_FILE_LEN: usize = 64 * 1024;

/// What went wrong reading or writing a key file; the message names the cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KeyFileError {
    /// The broad cause, so a caller can tell a wrong password from a bad or unsupported file.
    pub kind: KeyFileErrorKind,
    /// What went wrong, in words fit for the operator; never holds key material or the password.
    pub message: String,
}

/// The broad cause of a [`KeyFileError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFileErrorKind {
    /// The password does not open the key (secretbox authentication failed).
    WrongPassword,
    /// Not PEM, not the JSON document, bad base64, wrong lengths.
    Malformed,
    /// Well-formed, but a key type, curve, KDF or cipher vedette does not use.
    Unsupported,
    /// scrypt parameters beyond the accepted bounds.
    Limits,
}

impl KeyFileError {
    pub(crate) fn malformed(message: String) -> KeyFileError {
        KeyFileError {
            kind: KeyFileErrorKind::Malformed,
            message,
        }
    }
    pub(crate) fn unsupported(message: String) -> KeyFileError {
        KeyFileError {
            kind: KeyFileErrorKind::Unsupported,
            message,
        }
    }
    fn limits(message: String) -> KeyFileError {
        KeyFileError {
            kind: KeyFileErrorKind::Limits,
            message,
        }
    }
}

/// scrypt's cost parameters as the key file states them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScryptParams {
    /// scrypt's CPU/memory cost N: a power of two above 1.
    pub n: u64,
    /// scrypt's block size r (at least 1).
    pub r: u32,
    /// scrypt's parallelism p (at least 1).
    pub p: u32,
}

impl ScryptParams {
    /// What current cosign writes (go-securesystemslib's defaults): N = 2^16, r = 8, p = 1.
    pub const COSIGN: ScryptParams = ScryptParams {
        n: 1 << 16,
        r: 8,
        p: 1,
    };

    /// Largest N read: 2^20 (cosign writes 2^15 or 2^16).
    pub const MAX_N: u64 = 1 << 20;
    /// Largest scrypt memory accepted, 128·N·r bytes: 256 MiB.
    pub const MAX_MEMORY: u64 = 256 * 1024 * 1024;
    /// Largest total work accepted, N·r·p: 32 times cosign's default.
    pub const MAX_WORK: u64 = (1 << 16) * 8 * 32;

    /// Refuses parameters that are invalid or would cost more than the bounds above.
    pub fn within_limits(&self) -> Result<u8, KeyFileError> {
        let ScryptParams { n, r, p } = *self;
        if n < 2 || !n.is_power_of_two() {
            return Err(KeyFileError::malformed(format!(
                "scrypt N = {n} is not a power of two above 1"
            )));
        }
        if r == 0 || p == 0 {
            return Err(KeyFileError::malformed(format!(
                "scrypt r = {r}, p = {p}: both must be at least 1"
            )));
        }
        let memory = 128u64.saturating_mul(n).saturating_mul(u64::from(r));
        let work = n.saturating_mul(u64::from(r)).saturating_mul(u64::from(p));
        if n > Self::MAX_N || memory > Self::MAX_MEMORY || work > Self::MAX_WORK {
            return Err(KeyFileError::limits(format!(
                "scrypt parameters N = {n}, r = {r}, p = {p} exceed the accepted bounds \
                 (N <= {}, 128*N*r <= {} bytes, N*r*p <= {})",
                Self::MAX_N,
                Self::MAX_MEMORY,
                Self::MAX_WORK
            )));
        }
        // n is a power of two no larger than 2^20.
        Ok(n.trailing_zeros() as u8)
    }

    fn derive(
        &self,
        password: &[u8],
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyFileError> {
        let log_n = self.within_limits()?;
        let params = scrypt::Params::new(log_n, self.r, self.p, KEY_LEN)
            .map_err(|err| KeyFileError::limits(format!("scrypt parameters refused: {err}")))?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        scrypt::scrypt(password, salt, &params, key.as_mut())
            .map_err(|err| KeyFileError::limits(format!("scrypt failed: {err}")))?;
        Ok(key)
    }
}

/// Seals `key` under `password` as cosign does and returns the PEM text.
pub fn encrypt(
    key: &PrivateKey,
    password: &[u8],
    params: ScryptParams,
) -> Result<String, KeyFileError> {
    seal_der(key.pkcs8_der(), password, params)
}

/// Seals any PKCS#8 DER as cosign does (tests use it for keys vedette refuses).
pub fn seal_der(
    pkcs8_der: &[u8],
    password: &[u8],
    params: ScryptParams,
) -> Result<String, KeyFileError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt)
        .and_then(|()| rng.fill(&mut nonce))
        .map_err(|_| KeyFileError::malformed("no randomness available".into()))?;
    let secret = params.derive(password, &salt)?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(secret.as_ref()));
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), pkcs8_der)
        .map_err(|_| KeyFileError::malformed("secretbox sealing failed".into()))?;
    // Field order as Go's encoding/json writes the structs; base64 needs no escaping.
    let json = format!(
        concat!(
            r#"{{"kdf":{{"name":"scrypt","params":{{"N":{},"r":{},"p":{}}},"salt":"{}"}},"#,
            r#""cipher":{{"name":"nacl/secretbox","nonce":"{}"}},"ciphertext":"{}"}}"#
        ),
        params.n,
        params.r,
        params.p,
        STANDARD.encode(salt),
        STANDARD.encode(nonce),
        STANDARD.encode(&sealed),
    );
    Ok(encode_pem(PEM_TAG, json.as_bytes()))
}

/// Opens a cosign encrypted key file and loads the P-256 key inside.
pub fn decrypt(pem_text: &[u8], password: &[u8]) -> Result<PrivateKey, KeyFileError> {
    let sealed = SealedKey::parse(pem_text)?;
    let secret = sealed.params.derive(password, &sealed.salt)?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(secret.as_ref()));
    let der = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                sealed.ciphertext.as_slice(),
            )
            .map_err(|_| KeyFileError {
                kind: KeyFileErrorKind::WrongPassword,
                message: "wrong password: the key file does not decrypt with it \
                          (secretbox authentication failed)"
                    .into(),
            })?,
    );
    PrivateKey::from_pkcs8_der(&der)
}

/// The parsed, still sealed, contents of a key file.
#[derive(Debug)]
pub struct SealedKey {
    /// The scrypt cost parameters, already checked by [`ScryptParams::within_limits`].
    pub params: ScryptParams,
    /// The scrypt salt, as decoded from base64 (1 to 1024 bytes).
    pub salt: Vec<u8>,
    /// The secretbox nonce: exactly 24 bytes.
    pub nonce: Vec<u8>,
    /// The secretbox of the PKCS#8 DER: the Poly1305 tag first, then the encrypted key.
    pub ciphertext: Vec<u8>,
}

impl SealedKey {
    /// Parses and checks everything but the password: PEM label, JSON shape,
    /// names, base64, lengths and scrypt bounds.
    pub fn parse(pem_text: &[u8]) -> Result<SealedKey, KeyFileError> {
        if pem_text.len() > MAX_FILE_LEN {
            return Err(KeyFileError::malformed(format!(
                "key file is {} bytes; a cosign key file is under {MAX_FILE_LEN}",
                pem_text.len()
            )));
        }
        let block = parse_single_pem(pem_text)?;
        match block.tag() {
            PEM_TAG | LEGACY_PEM_TAG => {}
            "PRIVATE KEY" | "EC PRIVATE KEY" => {
                return Err(KeyFileError::unsupported(format!(
                    "'{}' is an unencrypted private key: vedette reads only cosign's \
                     encrypted format ('{PEM_TAG}')",
                    block.tag()
                )))
            }
            other => {
                return Err(KeyFileError::malformed(format!(
                    "expected a PEM '{PEM_TAG}' block, found '{other}'"
                )))
            }
        }
        let doc: Value = serde_json::from_slice(block.contents())
            .map_err(|err| KeyFileError::malformed(format!("key file body is not JSON: {err}")))?;
        let kdf = object(&doc, "kdf")?;
        expect_name(kdf, "kdf", "scrypt")?;
        let params = object(kdf, "params")?;
        let params = ScryptParams {
            n: integer(params, "kdf.params.N", "N")?,
            r: small_integer(params, "kdf.params.r", "r")?,
            p: small_integer(params, "kdf.params.p", "p")?,
        };
        params.within_limits()?;
        let salt = bytes(kdf, "kdf.salt", "salt")?;
        if salt.is_empty() || salt.len() > 1024 {
            return Err(KeyFileError::malformed(format!(
                "kdf.salt is {} bytes",
                salt.len()
            )));
        }
        let cipher = object(&doc, "cipher")?;
        expect_name(cipher, "cipher", "nacl/secretbox")?;
        let nonce = bytes(cipher, "cipher.nonce", "nonce")?;
        if nonce.len() != NONCE_LEN {
            return Err(KeyFileError::malformed(format!(
                "cipher.nonce is {} bytes, secretbox needs {NONCE_LEN}",
                nonce.len()
            )));
        }
        let ciphertext = bytes(&doc, "ciphertext", "ciphertext")?;
        Ok(SealedKey {
            params,
            salt,
            nonce,
            ciphertext,
        })
    }
}

fn object<'a>(value: &'a Value, key: &str) -> Result<&'a Value, KeyFileError> {
    match value.get(key) {
        Some(found @ Value::Object(_)) => Ok(found),
        Some(_) => Err(KeyFileError::malformed(format!(
            "key file field '{key}' is not an object"
        ))),
        None => Err(KeyFileError::malformed(format!(
            "key file has no '{key}' field"
        ))),
    }
}

fn expect_name(value: &Value, at: &str, expected: &str) -> Result<(), KeyFileError> {
    match value.get("name").and_then(Value::as_str) {
        Some(name) if name == expected => Ok(()),
        Some(name) => Err(KeyFileError::unsupported(format!(
            "{at}.name is '{name}'; only '{expected}' is supported"
        ))),
        None => Err(KeyFileError::malformed(format!("{at}.name is missing"))),
    }
}

fn integer(value: &Value, at: &str, key: &str) -> Result<u64, KeyFileError> {
    value.get(key).and_then(Value::as_u64).ok_or_else(|| {
        KeyFileError::malformed(format!("{at} is missing or not a positive integer"))
    })
}

fn small_integer(value: &Value, at: &str, key: &str) -> Result<u32, KeyFileError> {
    let wide = integer(value, at, key)?;
    u32::try_from(wide)
        .map_err(|_| KeyFileError::limits(format!("{at} = {wide} exceeds the accepted bounds")))
}

fn bytes(value: &Value, at: &str, key: &str) -> Result<Vec<u8>, KeyFileError> {
    let text = value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| KeyFileError::malformed(format!("{at} is missing or not a string")))?;
    STANDARD
        .decode(text)
        .map_err(|err| KeyFileError::malformed(format!("{at} is not valid base64: {err}")))
}
