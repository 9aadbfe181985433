"""A real OCI registry for the release tests: Debian's ``docker-registry``
(distribution 2.8) on a loopback port, storage in a temporary folder."""

from __future__ import annotations

import contextlib
import shutil
import socket
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


def start_registry(root: Path, *, port: int | None = None, htpasswd: str | None = None) -> Registry:
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
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    with open(root / "registry.log", "wb") as log:
        process = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=log)
    registry = Registry(f"127.0.0.1:{port}", root, process)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(root / 'registry.log').read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{registry.host}/v2/", timeout=1).status_code in (200, 401):
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
