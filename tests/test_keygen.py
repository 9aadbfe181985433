"""`vedette keygen`, run as a user would run it: files, modes, passwords, refusals."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from vedette.errors import KeyFileError
from vedette.releases.signing import load_private_key, load_public_key

VEDETTE = str(Path(sys.executable).with_name("vedette"))


def keygen(*args: str, password: str | None = "s3cret", umask: int = 0o022, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "VEDETTE_PASSWORD"}
    if password is not None:
        env["VEDETTE_PASSWORD"] = password
    return subprocess.run(
        # The umask is set by a shell, not preexec_fn (fork in a threaded process).
        ["sh", "-c", f'umask {umask:03o} && exec "$0" "$@"', VEDETTE, "keygen", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_writes_a_usable_cosign_key_pair(tmp_path):
    result = keygen("--out-prefix", str(tmp_path / "release"))
    assert result.returncode == 0, result.stderr
    key_path, pub_path = tmp_path / "release.key", tmp_path / "release.pub"
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    key = load_private_key(key_path, "s3cret")
    assert key.public_key() == load_public_key(pub_path)
    # An independent implementation accepts the public key and vedette's signature.
    public = load_pem_public_key(pub_path.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(key.sign(b"m"), b"m", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(KeyFileError, match="wrong password"):
        load_private_key(key_path, "S3cret")


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_private_key_is_0600_whatever_the_umask(tmp_path, umask):
    result = keygen("--out-prefix", str(tmp_path / "k"), umask=umask)
    assert result.returncode == 0, result.stderr
    assert mode(tmp_path / "k.key") == 0o600
    assert mode(tmp_path / "k.pub") == 0o644


def test_default_prefix_is_cosign(tmp_path):
    result = keygen(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cosign.key").is_file()
    assert (tmp_path / "cosign.pub").is_file()


def test_existing_files_are_kept_unless_forced(tmp_path):
    prefix = str(tmp_path / "k")
    assert keygen("--out-prefix", prefix).returncode == 0
    before = (tmp_path / "k.key").read_bytes()
    again = keygen("--out-prefix", prefix)
    assert again.returncode != 0
    assert b"exists" in again.stderr
    assert b"--force" in again.stderr
    assert (tmp_path / "k.key").read_bytes() == before
    forced = keygen("--out-prefix", prefix, "--force", password="other")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "k.key").read_bytes() != before
    assert mode(tmp_path / "k.key") == 0o600
    load_private_key(tmp_path / "k.key", "other")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_symlink_in_the_way_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep me")
    (tmp_path / "k.key").symlink_to(target)
    result = keygen("--out-prefix", str(tmp_path / "k"))
    assert result.returncode != 0
    assert target.read_bytes() == b"keep me"


def test_no_password_and_no_terminal_is_refused(tmp_path):
    result = keygen("--out-prefix", str(tmp_path / "k"), password=None)
    assert result.returncode != 0
    assert b"VEDETTE_PASSWORD" in result.stderr
    assert not (tmp_path / "k.key").exists()


def test_output_never_shows_key_material(tmp_path):
    result = keygen("--out-prefix", str(tmp_path / "k"))
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    body = b"".join((tmp_path / "k.key").read_bytes().splitlines()[1:-1])
    assert body[:32] not in shown
    assert b"s3cret" not in shown
    assert b"sha256:" in result.stdout
