"""The `vedette` command, run as a user would run it."""

import hashlib
import subprocess
import sys
from pathlib import Path

import blake3 as blake3_reference

import vedette

VEDETTE = [str(Path(sys.executable).with_name("vedette"))]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*VEDETTE, *args], input=stdin, capture_output=True, timeout=60)


def test_version_and_help():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"vedette, version {vedette.__version__}"
    result = run("--help")
    assert result.returncode == 0
    assert b"hash" in result.stdout


def test_hash_prints_prefixed_digest_and_name_per_file(tmp_path):
    files = []
    for name, content in (("a.txt", b"alpha\n"), ("b b.bin", bytes(range(256)) * 1000)):
        path = tmp_path / name
        path.write_bytes(content)
        files.append((path, content))
    result = run("hash", *(str(path) for path, _ in files))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        f"blake3:{blake3_reference.blake3(content).hexdigest()}  {path}" for path, content in files
    ]
    result = run("hash", "--alg", "sha256", *(str(path) for path, _ in files))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        f"sha256:{hashlib.sha256(content).hexdigest()}  {path}" for path, content in files
    ]


def test_hash_matches_sha256sum_layout(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(b"same as sha256sum")
    ours = run("hash", "--alg", "sha256", str(path)).stdout.decode()
    theirs = subprocess.run(["sha256sum", str(path)], capture_output=True, check=True)
    assert ours == "sha256:" + theirs.stdout.decode()


def test_hash_reads_stdin_with_dash():
    result = run("hash", "-", stdin=b"from a pipe")
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.decode()
        == f"blake3:{blake3_reference.blake3(b'from a pipe').hexdigest()}  -\n"
    )


def test_hash_reports_each_bad_file_and_exits_nonzero(tmp_path):
    good = tmp_path / "good"
    good.write_bytes(b"x")
    result = run("hash", str(tmp_path / "missing"), str(good), str(tmp_path))
    assert result.returncode == 1
    assert f"{good}\n" in result.stdout.decode(), "good files are still hashed"
    errors = result.stderr.decode()
    assert f"vedette hash: {tmp_path / 'missing'}: No such file or directory" in errors
    assert f"vedette hash: {tmp_path}: Is a directory" in errors


def test_usage_errors_exit_2():
    assert run("hash").returncode == 2
    result = run("hash", "--alg", "md5", "x")
    assert result.returncode == 2
    assert b"md5" in result.stderr
    assert run("no-such-command").returncode == 2


def test_token_new_and_hash_agree():
    result = run("token", "new", "--caller", "bot", "--agent", "recon")
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    assert 'id = "bot"' in lines
    assert 'agent = "recon"' in lines
    expected = f"sha256:{hashlib.sha256(token.encode()).hexdigest()}"
    assert f'token_sha256 = "{expected}"' in lines
    hashed = run("token", "hash", stdin=f"{token}\n".encode())
    assert hashed.stdout.decode().strip() == expected
    # No token is a usage error (docs/operations.md, "Exit codes").
    assert run("token", "hash", stdin=b"").returncode == 2
