//! A CA, node certificates and CRLs made with rcgen, for the transport's tests.

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};

use super::TlsSettings;

pub(crate) struct TestCa {
    pub dir: PathBuf,
    params: CertificateParams,
    key: KeyPair,
    next_serial: u64,
    pub trust_domain: String,
}

impl TestCa {
    pub(crate) fn new(dir: &Path, trust_domain: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{trust_domain} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // The CA names its trust domain, as `vedette pki` makes it: origin
        // signatures are checked against it (crypto::pki::issued_node).
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{trust_domain}").try_into().unwrap(),
        )];
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.crt"), cert.pem()).unwrap();
        let mut ca = TestCa {
            dir: dir.to_path_buf(),
            params,
            key,
            next_serial: 100,
            trust_domain: trust_domain.into(),
        };
        ca.write_crl(&[], false);
        ca
    }

    /// Issues `node`'s certificate; returns its serial.
    pub(crate) fn issue(&mut self, node: &str, expired: bool) -> u64 {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{}/node/{node}", self.trust_domain)
                .try_into()
                .unwrap(),
        )];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.next_serial += 1;
        params.serial_number = Some(SerialNumber::from(self.next_serial));
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = if expired {
            date_time_ymd(2021, 1, 1)
        } else {
            date_time_ymd(4000, 1, 1)
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(self.dir.join(format!("{node}.crt")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{node}.key")), key.serialize_pem()).unwrap();
        self.next_serial
    }

    pub(crate) fn write_crl(&mut self, revoked: &[u64], expired: bool) {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: if expired {
                date_time_ymd(2021, 1, 1)
            } else {
                date_time_ymd(4000, 1, 1)
            },
            crl_number: SerialNumber::from(self.next_serial),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2020, 6, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        self.next_serial += 1;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let crl = params.signed_by(&issuer).unwrap();
        // Written beside and renamed, as an operator's tool would, so a reader never sees half a file.
        let tmp = self.dir.join("crl.pem.tmp");
        std::fs::write(&tmp, crl.pem().unwrap()).unwrap();
        std::fs::rename(&tmp, self.dir.join("crl.pem")).unwrap();
    }

    pub(crate) fn settings(&self, node: &str) -> TlsSettings {
        TlsSettings {
            ca: self.dir.join("ca.crt"),
            cert: self.dir.join(format!("{node}.crt")),
            key: self.dir.join(format!("{node}.key")),
            crl: vec![self.dir.join("crl.pem")],
            trust_domain: Some(self.trust_domain.clone()),
            allow: Vec::new(),
        }
    }
}
