"""Who can reach what (INV-10, docs/threat-model.md): the adapter listener
serves only the decision path, speaks TLS when configured (checked with
`openssl s_client` and an HTTPS client), requires client certificates when
given a CA, and refuses to bind beyond loopback in plain HTTP; status and
metrics are on the operator listener, whose loopback port admits only the
operator's token. Against real `vedette serve --example` processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from live_server import operator_client, wait_for_port
from peer_pki import OpensslCa

from vedette.config import ConfigError, ListenConfig, OperatorConfig, token_digest

VEDETTE = str(Path(sys.executable).with_name("vedette"))
TOKEN = "listener-security-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ECHO = {"tool": "echo", "args": {"text": "over tls"}}
OPERATOR_TOKEN = "operator-token-listener-security-test"
HEALTH_REQUEST = b"GET /v1/health HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> OpensslCa:
    """A CA, a server certificate for 127.0.0.1 and an adapter's client certificate."""
    ca = OpensslCa(tmp_path_factory.mktemp("adapter-pki"), "adapters.test")
    ca.issue("server", san="IP:127.0.0.1")
    ca.issue("adapter")
    return ca


@contextmanager
def serve(tmp_path: Path, **settings: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`vedette serve --example` on a free loopback port with ``settings`` as
    ``VEDETTE_*`` variables; yields once the node is ready: its port accepts
    connections and, on its operator socket, its health is ok (the example's
    signed release is active)."""
    port = free_port()
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "VEDETTE_EXAMPLE_TOKEN": TOKEN,
        "XDG_STATE_HOME": str(home),
        **{f"VEDETTE_{key.upper()}": value for key, value in settings.items()},
    }
    process = subprocess.Popen(
        [VEDETTE, "serve", "--example", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, process)
        deadline = time.monotonic() + 30
        with operator_client(home / "vedette" / "example" / "operator.sock") as operator:
            while True:
                try:
                    if operator.get("/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the node never became healthy"
                time.sleep(0.1)
        yield port, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def s_client(port: int, ca: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """openssl's own client: verifies the server against ``ca`` and sends a request."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "scripts/test installs openssl"
    command = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca)]
    command += ["-verify_return_error", "-verify_ip", "127.0.0.1", "-ign_eof", *extra]
    return subprocess.run(command, input=HEALTH_REQUEST, capture_output=True, timeout=60)


# -- the adapter listener's address --------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "node.example"])
def test_a_plain_bind_beyond_loopback_is_refused(host):
    with pytest.raises(ConfigError, match=r"listen\.host: .* beyond loopback"):
        ListenConfig(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_tls(host):
    assert ListenConfig(host=host).host == host


def test_beyond_loopback_with_tls_or_an_explicit_plaintext_setting(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert ListenConfig(host="0.0.0.0", tls_cert=cert, tls_key=key).tls_cert == cert
    assert ListenConfig(host="0.0.0.0", insecure_plaintext=True).insecure_plaintext
    with pytest.raises(ConfigError, match="give both or neither"):
        ListenConfig(tls_cert=cert)
    with pytest.raises(ConfigError, match="tls_client_ca"):
        ListenConfig(tls_client_ca=cert)


def test_serve_refuses_a_plain_bind_beyond_loopback(tmp_path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    done = subprocess.run(
        [VEDETTE, "serve", "--example", "--listen", f"0.0.0.0:{free_port()}"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "beyond loopback" in done.stderr
    assert "insecure_plaintext" in done.stderr


# -- TLS on the adapter listener -----------------------------------------------------


def test_the_adapter_listener_speaks_tls(tmp_path, pki):
    files = {"listen_tls_cert": str(pki.dir / "server.crt")}
    files["listen_tls_key"] = str(pki.dir / "server.key")
    with serve(tmp_path, **files) as (port, _):
        # An independent client verifies the chain and the address, and is answered.
        done = s_client(port, pki.ca, "-brief")
        assert done.returncode == 0, done.stderr.decode()
        assert b"HTTP/1.1 200" in done.stdout
        assert b"Verification: OK" in done.stderr
        # An HTTPS client calls a tool.
        with httpx.Client(verify=ssl.create_default_context(cafile=pki.ca)) as client:
            answer = client.post(f"https://127.0.0.1:{port}/v1/tool", json=ECHO, headers=AUTH)
        assert answer.status_code == 200
        assert answer.json()["output"] == {"text": "over tls"}
        # Plain HTTP on the TLS port gets no answer.
        with pytest.raises(httpx.TransportError):
            httpx.post(f"http://127.0.0.1:{port}/v1/tool", json=ECHO, headers=AUTH, timeout=10)


def test_client_certificates_are_required_when_a_ca_is_given(tmp_path, pki):
    files = {"listen_tls_cert": str(pki.dir / "server.crt")}
    files["listen_tls_key"] = str(pki.dir / "server.key")
    files["listen_tls_client_ca"] = str(pki.ca)
    with serve(tmp_path, **files) as (port, _):
        without = s_client(port, pki.ca)
        assert b"HTTP/1.1 200" not in without.stdout
        cert, key = str(pki.dir / "adapter.crt"), str(pki.dir / "adapter.key")
        with_cert = s_client(port, pki.ca, "-cert", cert, "-key", key)
        assert b"HTTP/1.1 200" in with_cert.stdout, with_cert.stderr.decode()
        context = ssl.create_default_context(cafile=pki.ca)
        with pytest.raises(httpx.TransportError), httpx.Client(verify=context) as client:
            client.post(f"https://127.0.0.1:{port}/v1/tool", json=ECHO, headers=AUTH)
        context.load_cert_chain(pki.dir / "adapter.crt", pki.dir / "adapter.key")
        with httpx.Client(verify=context) as client:
            answer = client.post(f"https://127.0.0.1:{port}/v1/tool", json=ECHO, headers=AUTH)
        assert answer.status_code == 200


def test_unreadable_tls_files_stop_the_node_at_start_with_one_line(tmp_path, pki):
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path),
        "VEDETTE_LISTEN_TLS_CERT": str(pki.dir / "server.crt"),
        "VEDETTE_LISTEN_TLS_KEY": str(tmp_path / "missing.key"),
    }
    done = subprocess.run(
        [VEDETTE, "serve", "--example", "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "listen.tls_*" in done.stderr
    assert "Traceback" not in done.stderr


# -- status and metrics: the operator's, not an adapter's ----------------------------


def test_status_and_metrics_are_on_the_operator_listener_only(tmp_path):
    operator_port = free_port()
    settings = {
        "operator_listen": f"127.0.0.1:{operator_port}",
        "operator_token_sha256": str(token_digest(OPERATOR_TOKEN)),
    }
    with serve(tmp_path, **settings) as (port, _):
        adapter = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{adapter}/v1/tool", json=ECHO, headers=AUTH).status_code == 200
        for path in ("/v1/status", "/metrics"):
            assert httpx.get(f"{adapter}{path}", headers=AUTH).status_code == 404
        assert httpx.get(f"{adapter}/v1/health").status_code == 200
        # The operator's loopback port: its own token, never an adapter's.
        operator = f"http://127.0.0.1:{operator_port}"
        assert httpx.get(f"{operator}/metrics", headers=AUTH).status_code == 401
        owner = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        metrics = httpx.get(f"{operator}/metrics", headers=owner)
        assert metrics.status_code == 200
        assert 'outcome="allow",tool="echo"} 1.0' in metrics.text
        # And the operator socket, to the node's own user.
        socket_path = tmp_path / "home" / "vedette" / "example" / "operator.sock"
        with operator_client(socket_path) as local:
            assert local.get("/v1/status").json()["node"] == "example-node"


@pytest.mark.parametrize("listen", ["0.0.0.0:9797", "192.0.2.1:9797", "localhost:9797"])
def test_the_operator_port_stays_on_loopback(listen):
    with pytest.raises(ConfigError, match=r"operator\.listen"):
        OperatorConfig(listen=listen, token_sha256=token_digest(OPERATOR_TOKEN))


def test_the_operator_port_needs_a_token():
    with pytest.raises(ConfigError, match="token_sha256"):
        OperatorConfig(listen="127.0.0.1:9797")
