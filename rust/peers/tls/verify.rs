//! The verifiers every handshake runs (INV-09): rustls's WebPKI verifiers
//! (chain, validity, extended key usage, CRLs) with the identity check added,
//! and the short labels a refused handshake is counted under.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as TlsError, OtherError,
    SignatureScheme,
};

use super::identity_of;

/// Why a handshake was refused, as a short stable label for metrics and events.
pub fn rejection_reason(err: &TlsError) -> &'static str {
    match err {
        TlsError::NoCertificatesPresented => "no_certificate",
        TlsError::InvalidCertificate(cert) => match cert {
            CertificateError::Revoked => "revoked",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::UnknownIssuer => "unknown_issuer",
            CertificateError::UnknownRevocationStatus => "unknown_revocation_status",
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => "expired_crl",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "invalid_purpose"
            }
            CertificateError::BadSignature => "bad_signature",
            CertificateError::Other(other) if other.0.is::<NotAllowed>() => "not_allowed",
            _ => "invalid_certificate",
        },
        TlsError::AlertReceived(_) => "alert_received",
        TlsError::PeerIncompatible(_) => "incompatible",
        _ => "tls_error",
    }
}

/// The identity failed the trust-domain or allow-list check.
#[derive(Debug)]
pub struct NotAllowed(pub String);

impl fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer identity not allowed: {}", self.0)
    }
}

impl std::error::Error for NotAllowed {}

fn not_allowed(reason: String) -> TlsError {
    TlsError::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(NotAllowed(
        reason,
    )))))
}

/// The WebPKI client verifier (chain, EKU clientAuth, CRLs) plus the identity check.
#[derive(Debug)]
pub(super) struct IdentityCheckedClients {
    pub(super) inner: Arc<dyn ClientCertVerifier>,
    pub(super) trust_domain: Option<String>,
    pub(super) allow: Vec<String>,
}

impl ClientCertVerifier for IdentityCheckedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        identity_of(end_entity, self.trust_domain.as_deref(), &self.allow).map_err(not_allowed)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // TLS 1.2 is not offered; fail closed if it were ever reached.
        Err(TlsError::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The WebPKI server verifier (chain, EKU serverAuth, CRLs) plus the identity
/// check in place of the host-name check: peers are dialled by address and
/// named by their SAN URI, which host-name matching does not cover.
#[derive(Debug)]
pub(super) struct IdentityCheckedServers {
    pub(super) inner: Arc<rustls::client::WebPkiServerVerifier>,
    pub(super) trust_domain: Option<String>,
    pub(super) allow: Vec<String>,
}

impl ServerCertVerifier for IdentityCheckedServers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        // The chain, validity, EKU and revocation are checked before the name;
        // only a name mismatch is left to the identity check below.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(_)
            | Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            Err(other) => return Err(other),
        }
        identity_of(end_entity, self.trust_domain.as_deref(), &self.allow).map_err(not_allowed)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(TlsError::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
