//! Mutual TLS for peers: rustls 0.23 on the ring provider, TLS 1.3 only.
//!
//! Enforces INV-09 at the handshake: both sides present a certificate that
//! chains to the configured CA, is valid now, carries the right extended key
//! usage, and is not revoked by a CRL of its chain. A certificate whose
//! revocation status is unknown (no CRL from its issuer) is refused, and so
//! is any certificate when a CRL has expired. The peer's identity (SAN URI
//! `spiffe://<trust domain>/node/<id>`, else its first DNS name) must pass
//! the allow-list, checked inside the handshake so that a refused peer never
//! completes it. The service reads and writes no protocol byte before the
//! handshake future has completed.
//!
//! [`TlsFiles`] rebuilds both configurations whenever the CA, CRL, certificate
//! or key file changes (checked at each accept and dial), so a new CRL takes
//! effect without a restart; a change of mode counts (chmod 000 is a file that
//! can no longer be read). A file that cannot be read or used, a CRL file
//! that holds no CRL among them, fails closed: no handshake is made, and live
//! connections are closed, until it is fixed.
//!
//! This file holds the settings, the configurations built from the files and
//! their reloading; `identity` reads and checks a peer's identity, and
//! `verify` holds the verifiers and the labels of refused handshakes.

mod identity;
#[cfg(test)]
pub(crate) mod testpki;
#[cfg(test)]
mod tests;
mod verify;

pub use identity::{identity_of, pattern_matches, PeerIdentity};
pub use verify::{rejection_reason, NotAllowed};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::error::PeerError;
use verify::{IdentityCheckedClients, IdentityCheckedServers};

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, Error as TlsError, RootCertStore, ServerConfig};

/// Where the node's PKI material lives, and who may connect.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// PEM: the CA certificate(s) peers must chain to.
    pub ca: PathBuf,
    /// PEM: this node's certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM: this node's private key.
    pub key: PathBuf,
    /// PEM: CRLs, one file may hold several. Required: without a CRL from the
    /// CA, every peer's revocation status is unknown and every peer is refused.
    pub crl: Vec<PathBuf>,
    /// When set, SAN URIs must be `spiffe://<trust_domain>/node/<id>`.
    pub trust_domain: Option<String>,
    /// Identity patterns (`*` matches any run of characters); empty allows
    /// every identity the CA vouches for.
    pub allow: Vec<String>,
}

/// The ring provider, restricted to TLS 1.3 suites.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Both configurations built from one reading of the files, and their
/// verifiers (to check the certificates of live connections again).
#[derive(Clone)]
pub struct TlsConfigs {
    /// What accepted connections handshake with: this node's chain and key,
    /// TLS 1.3 only, a client certificate required and verified.
    pub server: Arc<ServerConfig>,
    /// What dials handshake with: this node's chain and key as the client
    /// certificate, TLS 1.3 only, the server verified by identity, not name.
    pub client: Arc<ClientConfig>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<dyn ServerCertVerifier>,
    /// The same reading of the files, for origin signatures.
    pub origin: Arc<OriginKeys>,
}

/// What the sync protocol checks origin signatures against, and signs this
/// node's own segments with (docs/contracts.md, "Peer sync protocol"):
/// the fleet CA and this node's key and certificate, read with the TLS files
/// so that a new CA or certificate applies to both at once.
pub struct OriginKeys {
    /// PEM: the fleet CA(s) a segment's signer certificate must be issued by.
    pub ca_pem: String,
    /// This node's key and certificate, or why they cannot sign (a key that
    /// is not P-256 in PKCS#8: such a node serves only segments signed already).
    pub signer: Result<NodeKey, String>,
}

/// This node's signing key and its certificate (DER, the leaf of `cert`).
pub struct NodeKey {
    /// The node's P-256 private key (its TLS key), which signs its segments.
    pub key: crate::crypto::ecdsa::PrivateKey,
    /// The node's leaf certificate (DER), carried in each signature so a
    /// receiver can check it was issued by the fleet CA to this node.
    pub cert_der: Vec<u8>,
}

impl fmt::Debug for OriginKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key: only whether there is one.
        f.debug_struct("OriginKeys")
            .field(
                "signer",
                &self.signer.as_ref().map(|k| k.key.public_key().key_id()),
            )
            .finish_non_exhaustive()
    }
}

impl OriginKeys {
    fn build(
        settings: &TlsSettings,
        leaf: &[u8],
        key: &PrivateKeyDer<'_>,
    ) -> Result<OriginKeys, String> {
        let ca_pem = std::fs::read_to_string(&settings.ca)
            .map_err(|e| format!("{}: {e}", settings.ca.display()))?;
        let signer = match key {
            PrivateKeyDer::Pkcs8(der) => {
                crate::crypto::ecdsa::PrivateKey::from_pkcs8_der(der.secret_pkcs8_der())
                    .map_err(|e| format!("{}: cannot sign segments: {e}", settings.key.display()))
            }
            _ => Err(format!(
                "{}: cannot sign segments: not a PKCS#8 key",
                settings.key.display()
            )),
        }
        .map(|key| NodeKey {
            key,
            cert_der: leaf.to_vec(),
        });
        Ok(OriginKeys { ca_pem, signer })
    }
}

impl TlsConfigs {
    /// The configurations from the files `settings` names; an error names the file.
    pub fn build(settings: &TlsSettings) -> Result<TlsConfigs, PeerError> {
        Self::from_files(settings).map_err(PeerError::Files)
    }

    fn from_files(settings: &TlsSettings) -> Result<TlsConfigs, String> {
        let provider = provider();
        let ca = read_certs(&settings.ca)?;
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots.add(cert).map_err(|e| {
                format!(
                    "{}: not a usable CA certificate: {e}",
                    settings.ca.display()
                )
            })?;
        }
        let roots = Arc::new(roots);
        // Without a CRL the verifiers check no revocation at all (rustls skips
        // the check): a CRL file that holds none is unusable, not empty.
        if settings.crl.is_empty() {
            return Err("no CRL file: every peer's revocation status would go unchecked".into());
        }
        let mut crls = Vec::new();
        for path in &settings.crl {
            let found: Vec<CertificateRevocationListDer<'static>> =
                CertificateRevocationListDer::pem_file_iter(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            if found.is_empty() {
                return Err(format!("{}: no CRL in the file", path.display()));
            }
            crls.extend(found);
        }
        let chain = read_certs(&settings.cert)?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate", settings.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&settings.key)
            .map_err(|e| format!("{}: no usable private key: {e}", settings.key.display()))?;
        let origin = Arc::new(OriginKeys::build(settings, &chain[0], &key)?);

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .with_crls(crls.clone())
                .enforce_revocation_expiration()
                .build()
                .map_err(|e| format!("client verifier: {e}"))?;
        let client_verifier = Arc::new(IdentityCheckedClients {
            inner: client_verifier,
            trust_domain: settings.trust_domain.clone(),
            allow: settings.allow.clone(),
        });
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS 1.3: {e}"))?
            .with_client_cert_verifier(Arc::clone(&client_verifier) as Arc<dyn ClientCertVerifier>)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("{}: {e}", settings.cert.display()))?;

        let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            Arc::clone(&provider),
        )
        .with_crls(crls)
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| format!("server verifier: {e}"))?;
        let server_verifier = Arc::new(IdentityCheckedServers {
            inner: server_verifier,
            trust_domain: settings.trust_domain.clone(),
            allow: settings.allow.clone(),
        });
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS 1.3: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(
                Arc::clone(&server_verifier) as Arc<dyn ServerCertVerifier>
            )
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("{}: {e}", settings.cert.display()))?;
        Ok(TlsConfigs {
            server: Arc::new(server),
            client: Arc::new(client),
            client_verifier,
            server_verifier,
            origin,
        })
    }

    /// Checks a connected peer's chain again, as its handshake did (chain,
    /// validity, EKU, CRLs, identity), against these configurations: a peer
    /// revoked by a new CRL is found while it is connected.
    pub fn recheck(
        &self,
        chain: &[CertificateDer<'static>],
        peer_is_client: bool,
    ) -> Result<(), TlsError> {
        let (end_entity, intermediates) = chain
            .split_first()
            .ok_or(TlsError::NoCertificatesPresented)?;
        let now = UnixTime::now();
        if peer_is_client {
            self.client_verifier
                .verify_client_cert(end_entity, intermediates, now)
                .map(|_| ())
        } else {
            let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
            self.server_verifier
                .verify_server_cert(end_entity, intermediates, &name, &[], now)
                .map(|_| ())
        }
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The PKI files and the configurations last built from them.
pub struct TlsFiles {
    settings: TlsSettings,
    state: Mutex<Loaded>,
}

struct Loaded {
    stamps: Vec<Option<Stamp>>,
    configs: Result<TlsConfigs, PeerError>,
    reloads: u64,
}

impl TlsFiles {
    /// Reads the files now; an error here names the file.
    pub fn new(settings: TlsSettings) -> Result<TlsFiles, PeerError> {
        let stamps = stamps(&settings);
        let configs = TlsConfigs::build(&settings)?;
        Ok(TlsFiles {
            settings,
            state: Mutex::new(Loaded {
                stamps,
                configs: Ok(configs),
                reloads: 0,
            }),
        })
    }

    /// The settings the files were named by.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The configurations for the next handshake, rebuilt first if any file
    /// changed since they were built. Fails closed while a file is unusable.
    pub fn current(&self) -> Result<TlsConfigs, PeerError> {
        let now = stamps(&self.settings);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now != st.stamps {
            st.configs = TlsConfigs::build(&self.settings);
            st.stamps = now;
            st.reloads += 1;
        }
        st.configs.clone()
    }

    /// Rebuilds the configurations from the files now.
    pub fn reload(&self) -> Result<(), PeerError> {
        let now = stamps(&self.settings);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.configs = TlsConfigs::build(&self.settings);
        st.stamps = now;
        st.reloads += 1;
        st.configs.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// The origin keys of the configurations last built, without looking at
    /// the files (cheap enough for every segment); `None` while the files are
    /// unusable, and then every segment received is refused.
    pub fn origin_keys(&self) -> Option<Arc<OriginKeys>> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.configs.as_ref().ok().map(|c| Arc::clone(&c.origin))
    }

    /// How many times the configurations were rebuilt, because a file
    /// changed or a reload was asked for, whether or not the files were
    /// usable; a connection that sees it move checks its peer again.
    pub fn reloads(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).reloads
    }
}

/// What tells that a file changed: its modification time, its size (a
/// rewrite within the file system's timestamp granularity), its change time
/// (a new mode: chmod 000 makes a file unreadable without touching its
/// contents) and its inode (another file renamed over it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
    changed: (i64, i64),
    inode: u64,
}

/// Every file's [`Stamp`]; `None` for a file whose metadata cannot be read.
fn stamps(settings: &TlsSettings) -> Vec<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    let mut paths = vec![&settings.ca, &settings.cert, &settings.key];
    paths.extend(settings.crl.iter());
    paths
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some(Stamp {
                modified: m.modified().ok()?,
                len: m.len(),
                changed: (m.ctime(), m.ctime_nsec()),
                inode: m.ino(),
            })
        })
        .collect()
}
