"""The small-fleet PKI, checked with OpenSSL as an independent verifier."""

import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vedette.errors import PkiError
from vedette.peers import pki

VEDETTE = str(Path(sys.executable).with_name("vedette"))
DOMAIN = "fleet.example"


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)


def verify(directory: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    return openssl(
        "verify",
        "-CAfile",
        str(directory / "ca.crt"),
        "-crl_check_all",
        "-CRLfile",
        str(directory / "crl.pem"),
        str(cert),
    )


def cli(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # The umask is set by a shell, not preexec_fn (fork in a threaded process).
        ["sh", "-c", f'umask {umask:03o} && exec "$0" "$@"', VEDETTE, "pki", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def crl_number(directory: Path) -> int:
    text = openssl("crl", "-in", str(directory / "crl.pem"), "-noout", "-text").stdout
    found = re.search(r"CRL Number:\s*\n\s*(\d+)", text)
    assert found, text
    return int(found.group(1))


@pytest.fixture
def ca_dir(tmp_path):
    directory = tmp_path / "pki"
    pki.init_ca(directory, DOMAIN)
    return directory


def test_init_writes_a_ca_and_an_empty_signed_crl(tmp_path):
    result = cli("init", "--trust-domain", DOMAIN, "--dir", str(tmp_path / "p"), umask=0)
    assert result.returncode == 0, result.stderr
    directory = tmp_path / "p"
    assert mode(directory / "ca.key") == 0o600
    text = openssl("x509", "-in", str(directory / "ca.crt"), "-noout", "-text").stdout
    assert "CA:TRUE" in text
    assert "Certificate Sign, CRL Sign" in text
    assert f"URI:spiffe://{DOMAIN}" in text
    assert "prime256v1" in text
    crl = openssl("crl", "-in", str(directory / "crl.pem"), "-noout", "-text").stdout
    assert "No Revoked Certificates" in crl
    assert crl_number(directory) == 1
    # The CRL verifies against the CA and runs for CRL_VALIDITY_DAYS.
    checked = openssl(
        "crl", "-in", str(directory / "crl.pem"), "-CAfile", str(directory / "ca.crt"), "-noout"
    )
    assert checked.returncode == 0, checked.stderr
    next_update = openssl("crl", "-in", str(directory / "crl.pem"), "-noout", "-nextupdate")
    when = time.mktime(
        time.strptime(next_update.stdout.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
    )
    days = (when - time.mktime(time.gmtime())) / 86_400
    assert pki.CRL_VALIDITY_DAYS - 1 < days <= pki.CRL_VALIDITY_DAYS


def test_init_refuses_to_overwrite_a_ca(ca_dir):
    before = (ca_dir / "ca.key").read_bytes()
    with pytest.raises(PkiError, match="exists"):
        pki.init_ca(ca_dir, DOMAIN)
    assert (ca_dir / "ca.key").read_bytes() == before


def test_issued_certificate_verifies_with_openssl(ca_dir, tmp_path):
    result = cli("issue", "node-1", "--dir", str(ca_dir), umask=0)
    assert result.returncode == 0, result.stderr
    assert mode(ca_dir / "node-1.key") == 0o600
    checked = verify(ca_dir, ca_dir / "node-1.crt")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The key file is the certificate's own key.
    cert_key = openssl("x509", "-in", str(ca_dir / "node-1.crt"), "-noout", "-pubkey").stdout
    file_key = openssl("pkey", "-in", str(ca_dir / "node-1.key"), "-pubout").stdout
    assert cert_key == file_key


def test_issued_certificate_has_spiffe_id_dns_name_and_both_ekus(ca_dir):
    pki.issue(ca_dir, "node-1")
    text = openssl("x509", "-in", str(ca_dir / "node-1.crt"), "-noout", "-text").stdout
    assert f"URI:spiffe://{DOMAIN}/node/node-1, DNS:node-1" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
    # Hostname checking as a TLS client would do it.
    checked = openssl(
        "verify", "-CAfile", str(ca_dir / "ca.crt"), "-verify_hostname", "node-1",
        str(ca_dir / "node-1.crt"),
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    wrong = openssl(
        "verify", "-CAfile", str(ca_dir / "ca.crt"), "-verify_hostname", "node-2",
        str(ca_dir / "node-1.crt"),
    )  # fmt: skip
    assert wrong.returncode != 0


def test_serials_are_random_and_128_bits(ca_dir):
    serials = set()
    for node in ("a", "b", "c"):
        pki.issue(ca_dir, node)
        out = openssl("x509", "-in", str(ca_dir / f"{node}.crt"), "-noout", "-serial").stdout
        serials.add(out.strip().split("=", 1)[1])
    assert len(serials) == 3
    assert all(len(serial) == 32 for serial in serials)


def test_revoked_certificate_is_refused_and_revocations_accumulate(ca_dir):
    for node in ("a", "b", "c"):
        pki.issue(ca_dir, node)
    result = cli("revoke", str(ca_dir / "a.crt"), "--dir", str(ca_dir))
    assert result.returncode == 0, result.stderr
    assert "CRL number 2" in result.stdout
    refused = verify(ca_dir, ca_dir / "a.crt")
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr
    assert verify(ca_dir, ca_dir / "b.crt").returncode == 0
    pki.revoke(ca_dir, ca_dir / "b.crt")
    assert crl_number(ca_dir) == 3
    assert verify(ca_dir, ca_dir / "a.crt").returncode != 0
    assert verify(ca_dir, ca_dir / "b.crt").returncode != 0
    assert verify(ca_dir, ca_dir / "c.crt").returncode == 0
    assert len(pki.crl_info(ca_dir).revoked) == 2
    # Revoking again keeps one entry; re-signing keeps them all.
    pki.revoke(ca_dir, ca_dir / "a.crt")
    result = cli("crl", "--dir", str(ca_dir))
    assert result.returncode == 0, result.stderr
    info = pki.crl_info(ca_dir)
    assert (len(info.revoked), info.number) == (2, 5)
    assert verify(ca_dir, ca_dir / "a.crt").returncode != 0


def test_another_cas_certificate_is_refused(ca_dir, tmp_path):
    other = tmp_path / "other"
    pki.init_ca(other, DOMAIN)
    pki.issue(other, "intruder")
    refused = verify(ca_dir, other / "intruder.crt")
    assert refused.returncode != 0
    assert "unable to get local issuer certificate" in refused.stdout + refused.stderr
    with pytest.raises(PkiError, match="not issued by this CA"):
        pki.revoke(ca_dir, other / "intruder.crt")
    assert crl_number(ca_dir) == 1


def test_a_crl_not_signed_by_the_ca_is_not_extended(ca_dir, tmp_path):
    other = tmp_path / "other"
    pki.init_ca(other, DOMAIN)
    (ca_dir / "crl.pem").write_bytes((other / "crl.pem").read_bytes())
    pki.issue(ca_dir, "a")
    with pytest.raises(PkiError, match="not signed by this CA"):
        pki.revoke(ca_dir, ca_dir / "a.crt")


@pytest.mark.parametrize(
    "name", ["", "../evil", "a/b", "a.b", "-a", "a-", "Node", "ca", "crl", "x" * 64, "nöde"]
)
def test_bad_node_names_are_refused(ca_dir, name):
    with pytest.raises(PkiError, match="node name"):
        pki.issue(ca_dir, name)
    assert sorted(p.name for p in ca_dir.iterdir()) == [".pki.lock", "ca.crt", "ca.key", "crl.pem"]


def test_bad_node_name_on_the_command_line_writes_nothing(ca_dir, tmp_path):
    result = cli("issue", "../outside", "--dir", str(ca_dir))
    assert result.returncode != 0
    assert "node name" in result.stderr
    assert not (tmp_path / "outside.crt").exists()


def test_existing_node_files_are_kept_unless_replaced(ca_dir):
    pki.issue(ca_dir, "a")
    before = (ca_dir / "a.crt").read_bytes()
    with pytest.raises(PkiError, match="exists"):
        pki.issue(ca_dir, "a")
    assert (ca_dir / "a.crt").read_bytes() == before
    pki.issue(ca_dir, "a", replace=True)
    assert (ca_dir / "a.crt").read_bytes() != before
    assert mode(ca_dir / "a.key") == 0o600
    assert verify(ca_dir, ca_dir / "a.crt").returncode == 0


def test_validity_override_makes_expired_and_future_certificates(ca_dir):
    now = int(time.time())
    pki.issue(ca_dir, "old", not_before=now - 10 * 86_400, not_after=now - 86_400)
    expired = verify(ca_dir, ca_dir / "old.crt")
    assert expired.returncode != 0
    assert "certificate has expired" in expired.stdout + expired.stderr
    pki.issue(ca_dir, "later", not_before=now + 86_400, not_after=now + 10 * 86_400)
    future = verify(ca_dir, ca_dir / "later.crt")
    assert future.returncode != 0
    assert "not yet valid" in future.stdout + future.stderr
    with pytest.raises(PkiError, match="empty"):
        pki.issue(ca_dir, "never", not_before=now, not_after=now)


def test_days_sets_the_node_lifetime(ca_dir):
    pki.issue(ca_dir, "short", days=2)
    out = openssl("x509", "-in", str(ca_dir / "short.crt"), "-noout", "-checkend", str(86_400))
    assert out.returncode == 0
    out = openssl("x509", "-in", str(ca_dir / "short.crt"), "-noout", "-checkend", str(3 * 86_400))
    assert out.returncode != 0


def test_bad_trust_domain_is_refused(tmp_path):
    with pytest.raises(PkiError, match="trust domain"):
        pki.init_ca(tmp_path / "p", "Not/A Domain")
    assert not (tmp_path / "p" / "ca.key").exists()


def test_the_ca_certificate_cannot_be_revoked(ca_dir):
    with pytest.raises(PkiError, match="CA certificate"):
        pki.revoke(ca_dir, ca_dir / "ca.crt")
    assert crl_number(ca_dir) == 1
