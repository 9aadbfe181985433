"""A real OCI registry for the release tests: Debian's ``docker-registry``
(distribution 2.8) on a loopback port, storage in a temporary folder."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

BINARY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    root: Path
    process: subprocess.Popen[bytes]
    username: str | None = None
    password: str | None = None

    def ref(self, repository: str, tag: str) -> str:
        return f"oci://{self.host}/{repository}:{tag}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_registry(
    root: Path,
    *,
    port: int | None = None,
    htpasswd: str | None = None,
    tls: tuple[Path, Path, Path] | None = None,
) -> Registry:
    if not Path(BINARY).exists():
        pytest.fail(f"{BINARY} is missing: scripts/test installs Debian's docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    auth = ""
    if htpasswd is not None:
        (root / "htpasswd").write_text(htpasswd)
        auth = f"auth:\n  htpasswd:\n    realm: vedette-tests\n    path: {root / 'htpasswd'}\n"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        + auth
    )
    with open(root / "registry.log", "wb") as log:
        process = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=log)
    registry = Registry(f"127.0.0.1:{port}", root, process)
    scheme, verify = "http", True
    if tls is not None:
        scheme, verify = "https", ssl.create_default_context(cafile=str(tls[2]))
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(root / 'registry.log').read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{scheme}://{registry.host}/v2/", timeout=1, verify=verify)
            if answer.status_code in (200, 401):
                return registry
        if time.monotonic() > deadline:
            registry.stop()
            raise RuntimeError("docker-registry did not answer /v2/ within 30 s")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    server = start_registry(tmp_path_factory.mktemp("registry"))
    yield server
    server.stop()


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 (cert, key, CA), by openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is missing: scripts/test installs it")
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=vedette test CA")  # fmt: skip
    run("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return folder / "server.pem", folder / "server.key", folder / "ca.pem"


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("tls-registry")
    server = start_registry(root, tls=make_tls_files(root / "tls"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        pytest.fail("htpasswd is missing: scripts/test installs apache2-utils")
    line = subprocess.run(
        [htpasswd, "-Bbn", "fleet", "s3cret-pass"], check=True, capture_output=True, text=True
    ).stdout.strip()
    server = start_registry(tmp_path_factory.mktemp("auth-registry"), htpasswd=line + "\n")
    server.username, server.password = "fleet", "s3cret-pass"
    yield server
    server.stop()
