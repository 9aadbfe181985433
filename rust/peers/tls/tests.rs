use std::os::unix::fs::PermissionsExt;

use super::testpki::TestCa;
use super::*;

fn leaf(ca: &TestCa, node: &str) -> Vec<CertificateDer<'static>> {
    read_certs(&ca.dir.join(format!("{node}.crt"))).unwrap()
}

#[test]
fn a_crl_file_that_holds_no_crl_is_unusable_not_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&tmp.path().join("pki"), "test.example");
    ca.issue("a", false);
    let b = ca.issue("b", false);
    ca.write_crl(&[b], false);
    let settings = ca.settings("a");
    let configs = TlsConfigs::build(&settings).unwrap();
    let err = configs.recheck(&leaf(&ca, "b"), true).unwrap_err();
    assert_eq!(rejection_reason(&err), "revoked");
    // Garbage, or an empty file: no CRL, so nothing would be checked for revocation.
    for content in ["not a CRL\n", ""] {
        std::fs::write(ca.dir.join("crl.pem"), content).unwrap();
        let err = TlsConfigs::build(&settings).err().unwrap();
        assert!(
            matches!(err, PeerError::Files(ref m) if m.contains("crl.pem") && m.contains("no CRL")),
            "{err}"
        );
    }
    let none = TlsSettings {
        crl: Vec::new(),
        ..settings
    };
    let err = TlsConfigs::build(&none).err().unwrap();
    assert!(
        matches!(err, PeerError::Files(ref m) if m.contains("no CRL file")),
        "{err}"
    );
}

#[test]
fn a_change_of_mode_alone_rebuilds_the_configurations() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(&tmp.path().join("pki"), "test.example");
    ca.issue("a", false);
    let files = TlsFiles::new(ca.settings("a")).unwrap();
    let key = ca.dir.join("a.key");
    assert!(files.current().is_ok());
    assert_eq!(files.reloads(), 0);
    // chmod 000: the contents, size and modification time stay as they were.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).unwrap();
    let now = files.current();
    assert_eq!(files.reloads(), 1, "a file made unreadable went unnoticed");
    // Root reads it all the same; anyone else cannot, and fails closed.
    if std::fs::read(&key).is_err() {
        assert!(
            matches!(now, Err(PeerError::Files(ref m)) if m.contains("a.key")),
            "{:?}",
            now.err()
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(files.current().is_ok());
    assert_eq!(files.reloads(), 2);
    // Another file renamed over it, same size, same modification time: a change too.
    let copy = ca.dir.join("a.key.new");
    std::fs::copy(&key, &copy).unwrap();
    let mtime = std::fs::metadata(&key).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&copy, &key).unwrap();
    assert!(files.current().is_ok());
    assert_eq!(files.reloads(), 3);
}
