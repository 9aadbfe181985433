//! `vedette.releases.signing` and `vedette.peers.pki`: ECDSA P-256 keys in
//! cosign's formats, and the small-fleet PKI.
//!
//! scrypt (key files) and key generation run with the GIL released; signing
//! and verifying small payloads take tens of microseconds and keep it.

use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::PyBytes;

use super::buffer::borrow_bytes;
use super::errors;
use super::hashing::equality_only;
use crate::crypto::origin::{self, OriginSignature, OriginTrust, Signer};
use crate::crypto::pki::{self, Ca, Validity};
use crate::crypto::{ecdsa, keyfile, ScryptParams};
use crate::hashing::Digest;

pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PublicKey>()?;
    module.add_class::<PrivateKey>()?;
    module.add_function(wrap_pyfunction!(decrypt_private_key, module)?)?;
    module.add_function(wrap_pyfunction!(generate_key_pair, module)?)?;
    module.add_function(wrap_pyfunction!(pki_new_ca, module)?)?;
    module.add_function(wrap_pyfunction!(pki_issue, module)?)?;
    module.add_function(wrap_pyfunction!(pki_sign_crl, module)?)?;
    module.add_function(wrap_pyfunction!(pki_crl_entries, module)?)?;
    module.add_function(wrap_pyfunction!(pki_check_node_name, module)?)?;
    module.add_function(wrap_pyfunction!(private_key_from_pem, module)?)?;
    module.add_function(wrap_pyfunction!(new_private_key, module)?)?;
    module.add_function(wrap_pyfunction!(origin_sign, module)?)?;
    module.add_function(wrap_pyfunction!(origin_verify, module)?)?;
    Ok(())
}

/// An ECDSA P-256 public key; see `vedette.releases.signing.PublicKey`.
#[pyclass(frozen, module = "vedette.releases.signing", name = "PublicKey")]
pub struct PublicKey(ecdsa::PublicKey);

#[pymethods]
impl PublicKey {
    #[staticmethod]
    fn from_pem(pem: &Bound<'_, PyAny>) -> PyResult<PublicKey> {
        let pem = borrow_bytes(pem)?;
        ecdsa::PublicKey::from_pem(pem.as_slice())
            .map(PublicKey)
            .map_err(PyErr::from)
    }

    fn pem<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.pem().as_bytes())
    }

    #[getter]
    fn spki_der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.spki_der())
    }

    #[getter]
    fn key_id(&self) -> String {
        self.0.key_id()
    }

    fn verify(&self, payload: &Bound<'_, PyAny>, signature_der: &Bound<'_, PyAny>) -> PyResult<()> {
        let payload = borrow_bytes(payload)?;
        let signature = borrow_bytes(signature_der)?;
        self.0
            .verify(payload.as_slice(), signature.as_slice())
            .map_err(PyErr::from)
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<PublicKey>() else {
            return Ok(py.NotImplemented());
        };
        Ok(equality_only(py, self.0 == other.get().0, op))
    }

    fn __hash__(&self) -> u64 {
        // The key id is a SHA-256: its first bytes are already uniform.
        let der = crate::hashing::sha256(self.0.spki_der());
        let bytes = der.as_bytes();
        u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ])
    }

    fn __repr__(&self) -> String {
        format!("PublicKey('{}')", self.0.key_id())
    }
}

/// An ECDSA P-256 private key; never printed, pickled or exported in the clear.
#[pyclass(frozen, module = "vedette.releases.signing", name = "PrivateKey")]
pub struct PrivateKey(ecdsa::PrivateKey);

#[pymethods]
impl PrivateKey {
    fn sign<'py>(
        &self,
        py: Python<'py>,
        payload: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let payload = borrow_bytes(payload)?;
        let signature = self.0.sign(payload.as_slice())?;
        Ok(PyBytes::new(py, &signature))
    }

    fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key().clone())
    }

    fn __repr__(&self) -> String {
        format!("PrivateKey(public key '{}')", self.0.public_key().key_id())
    }
}

/// Opens a cosign encrypted private key (scrypt runs without the GIL).
#[pyfunction]
fn decrypt_private_key(
    py: Python<'_>,
    pem: &Bound<'_, PyAny>,
    password: &Bound<'_, PyAny>,
) -> PyResult<PrivateKey> {
    let pem = borrow_bytes(pem)?.as_slice().to_vec();
    let password = zeroize::Zeroizing::new(borrow_bytes(password)?.as_slice().to_vec());
    py.detach(|| keyfile::decrypt(&pem, &password))
        .map(PrivateKey)
        .map_err(PyErr::from)
}

/// A new key pair: (encrypted private key PEM, public key PEM).
#[pyfunction]
// The defaults are ScryptParams::COSIGN, written out so Python sees them.
#[pyo3(signature = (password, *, scrypt_n = 65536, scrypt_r = 8, scrypt_p = 1))]
fn generate_key_pair<'py>(
    py: Python<'py>,
    password: &Bound<'py, PyAny>,
    scrypt_n: u64,
    scrypt_r: u32,
    scrypt_p: u32,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let password = zeroize::Zeroizing::new(borrow_bytes(password)?.as_slice().to_vec());
    let params = ScryptParams {
        n: scrypt_n,
        r: scrypt_r,
        p: scrypt_p,
    };
    let (private_pem, public_pem) = py.detach(|| {
        let key = ecdsa::PrivateKey::generate()?;
        let sealed = keyfile::encrypt(&key, &password, params)?;
        Ok::<_, PyErr>((zeroize::Zeroizing::new(sealed), key.public_key().pem()))
    })?;
    Ok((
        PyBytes::new(py, private_pem.as_bytes()),
        PyBytes::new(py, public_pem.as_bytes()),
    ))
}

/// A new CA: (certificate PEM, private key PEM).
#[pyfunction]
fn pki_new_ca(
    py: Python<'_>,
    trust_domain: String,
    not_before: i64,
    not_after: i64,
) -> PyResult<(String, String)> {
    let validity = Validity {
        not_before,
        not_after,
    };
    py.detach(|| pki::new_ca(&trust_domain, validity))
        .map(|issued| (issued.cert_pem, issued.key_pem.to_string()))
        .map_err(PyErr::from)
}

/// A node certificate from the CA: (certificate PEM, private key PEM).
#[pyfunction]
fn pki_issue(
    py: Python<'_>,
    ca_cert_pem: String,
    ca_key_pem: String,
    node: String,
    not_before: i64,
    not_after: i64,
) -> PyResult<(String, String)> {
    let ca_key_pem = zeroize::Zeroizing::new(ca_key_pem);
    let validity = Validity {
        not_before,
        not_after,
    };
    py.detach(|| Ca::load(&ca_cert_pem, &ca_key_pem)?.issue(&node, validity))
        .map(|issued| (issued.cert_pem, issued.key_pem.to_string()))
        .map_err(PyErr::from)
}

/// A newly signed CRL: the previous one's entries plus the given certificates.
#[pyfunction]
#[pyo3(signature = (ca_cert_pem, ca_key_pem, previous_crl_pem, revoke_cert_pems, this_update, next_update))]
fn pki_sign_crl(
    py: Python<'_>,
    ca_cert_pem: String,
    ca_key_pem: String,
    previous_crl_pem: Option<String>,
    revoke_cert_pems: Vec<String>,
    this_update: i64,
    next_update: i64,
) -> PyResult<String> {
    let ca_key_pem = zeroize::Zeroizing::new(ca_key_pem);
    py.detach(|| {
        let ca = Ca::load(&ca_cert_pem, &ca_key_pem)?;
        let serials = revoke_cert_pems
            .iter()
            .map(|cert| ca.serial_of(cert))
            .collect::<Result<Vec<_>, _>>()?;
        ca.sign_crl(
            previous_crl_pem.as_deref(),
            &serials,
            this_update,
            next_update,
        )
    })
    .map_err(PyErr::from)
}

/// The revoked serials and the CRL number of a CRL the CA signed.
#[pyfunction]
fn pki_crl_entries(
    py: Python<'_>,
    ca_cert_pem: String,
    crl_pem: String,
) -> PyResult<(Vec<Vec<u8>>, u64)> {
    py.detach(|| pki::crl_entries(&ca_cert_pem, &crl_pem))
        .map_err(PyErr::from)
}

/// Raises PkiError unless `node` is a valid node name.
#[pyfunction]
fn pki_check_node_name(node: &str) -> PyResult<()> {
    pki::check_node_name(node).map_err(PyErr::from)
}

/// An unencrypted PKCS#8 P-256 key (a node key, or the key `vedette pki issue` wrote).
#[pyfunction]
fn private_key_from_pem(pem: &Bound<'_, PyAny>) -> PyResult<PrivateKey> {
    let text = borrow_bytes(pem)?;
    let block = ::pem::parse(text.as_slice())
        .map_err(|e| PyErr::from(ecdsa::SignatureError(format!("key is not PEM: {e}"))))?;
    if block.tag() != "PRIVATE KEY" {
        return Err(PyErr::from(ecdsa::SignatureError(format!(
            "expected a PEM 'PRIVATE KEY' (PKCS#8) block, found '{}'",
            block.tag()
        ))));
    }
    ecdsa::PrivateKey::from_pkcs8_der(block.contents())
        .map(PrivateKey)
        .map_err(PyErr::from)
}

/// A new P-256 key: (the key, its unencrypted PKCS#8 PEM for a 0600 file).
#[pyfunction]
fn new_private_key(py: Python<'_>) -> PyResult<(PrivateKey, Bound<'_, PyBytes>)> {
    let key = ecdsa::PrivateKey::generate()?;
    let pem = zeroize::Zeroizing::new(::pem::encode(&::pem::Pem::new(
        "PRIVATE KEY",
        key.pkcs8_der().to_vec(),
    )));
    Ok((PrivateKey(key), PyBytes::new(py, pem.as_bytes())))
}

fn segment_id(text: &str) -> PyResult<Digest> {
    Digest::parse(text).map_err(PyErr::from)
}

/// The detached origin-signature blob for segment `seq` of `origin` with id
/// `segment_id`; the signer is the certificate (PEM) when given, else the bare key.
#[pyfunction]
#[pyo3(signature = (key, origin, seq, segment_id, certificate_pem = None))]
fn origin_sign<'py>(
    py: Python<'py>,
    key: &PrivateKey,
    origin: &str,
    seq: u64,
    segment_id: &str,
    certificate_pem: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let id = self::segment_id(segment_id)?;
    let signer = match certificate_pem {
        Some(pem_text) => {
            let text = borrow_bytes(pem_text)?;
            let block = ::pem::parse_many(text.as_slice())
                .map_err(|e| errors::pki_message(format!("certificate is not PEM: {e}")))?
                .into_iter()
                .find(|b| b.tag() == "CERTIFICATE")
                .ok_or_else(|| errors::pki_message("no CERTIFICATE block".into()))?;
            Signer::Certificate(block.into_contents())
        }
        None => Signer::Key(key.0.public_key().spki_der().to_vec()),
    };
    let signature = OriginSignature::sign(&key.0, signer, origin, seq, id)?;
    Ok(PyBytes::new(py, &signature.encode()))
}

/// Checks an origin-signature blob for a segment; returns (signer kind
/// "certificate" or "key", the signer's SPKI DER) or raises OriginSignatureError.
#[pyfunction]
#[pyo3(signature = (blob, origin, seq, segment_id, *, ca_pem = None, pinned_key = None, require_certificate = false))]
#[allow(clippy::too_many_arguments)]
fn origin_verify<'py>(
    py: Python<'py>,
    blob: &Bound<'py, PyAny>,
    origin: &str,
    seq: u64,
    segment_id: &str,
    ca_pem: Option<&str>,
    pinned_key: Option<&Bound<'py, PyAny>>,
    require_certificate: bool,
) -> PyResult<(&'static str, Bound<'py, PyBytes>)> {
    let id = self::segment_id(segment_id)?;
    let blob = borrow_bytes(blob)?;
    let pinned = pinned_key.map(borrow_bytes).transpose()?;
    let trust = OriginTrust {
        ca_pem,
        pinned_key: pinned.as_ref().map(|p| p.as_slice()),
        require_certificate,
    };
    let signature = origin::verify_blob(blob.as_slice(), origin, seq, &id, &trust)?;
    let kind = match signature.signer {
        Signer::Certificate(_) => "certificate",
        Signer::Key(_) => "key",
    };
    let key = signature.public_key()?;
    Ok((kind, PyBytes::new(py, key.spki_der())))
}
