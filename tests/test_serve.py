"""`vedette serve --example` in a real subprocess, used as a new user would use it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from live_server import operator_client, wait_until_healthy

VEDETTE = str(Path(sys.executable).with_name("vedette"))
TOKEN = "example-token-for-tests"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def example_server(tmp_path):
    port = free_port()
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        "VEDETTE_EXAMPLE_TOKEN": TOKEN,
        "XDG_STATE_HOME": str(tmp_path),
        "TMPDIR": str(tmp_path / "tmp"),
    }
    process = subprocess.Popen(
        [VEDETTE, "serve", "--example", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process)
    yield url, process
    if process.poll() is None:
        process.kill()
    process.communicate()  # reaps it and closes its output pipe


def call(url: str, body: dict, token: str = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(f"{url}/v1/tool", json=body, headers=headers, timeout=10)


def test_example_allows_denies_and_shuts_down_cleanly(example_server, tmp_path):
    url, process = example_server
    allowed = call(url, {"tool": "echo", "args": {"text": "hello"}})
    assert allowed.status_code == 200
    assert allowed.json()["output"] == {"text": "hello"}
    read = call(url, {"tool": "fs.read", "args": {"path": "/data/hello.txt"}})
    assert read.status_code == 200
    assert read.json()["output"]["content"].strip()
    denied = call(url, {"tool": "fs.read", "args": {"path": "/etc/passwd"}})
    assert denied.status_code == 403
    assert denied.json()["decision"] == "deny"
    undeclared = call(url, {"tool": "shell.exec", "args": {"cmd": "id"}})
    assert undeclared.status_code == 403
    claimed = {"tool": "fs.read", "args": {"path": "/etc/passwd"}, "claims": {"role": "admin"}}
    assert call(url, claimed).status_code == 403
    assert call(url, {"tool": "echo", "args": {"text": "x"}}, token="wrong").status_code == 401

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"caller token: {TOKEN}" in output
    assert "curl -s" in output

    # The evidence on disk: the denied call left a decision and no tool outcome.
    # Its state is kept in the user's state folder, and nothing is left in the temp folder.
    store = tmp_path / "vedette" / "example" / "store"
    assert (store / "LOCK").exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    export = subprocess.run(
        [VEDETTE, "store", "export", str(store)], capture_output=True, text=True, check=True
    )
    records = [json.loads(json.loads(line)["text"]) for line in export.stdout.splitlines()]
    denied_id = denied.json()["decision_id"]
    assert [r["kind"] for r in records if r.get("decision_id") == denied_id] == ["decision"]
    allowed_id = allowed.json()["decision_id"]
    assert [r["kind"] for r in records if r.get("decision_id") == allowed_id] == [
        "decision",
        "tool_outcome",
    ]


def test_a_second_serve_on_a_held_store_is_a_one_line_error(example_server, tmp_path):
    url, _ = example_server
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    second = subprocess.run(
        [VEDETTE, "serve", "--example", "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert second.returncode == 2  # cannot run (docs/operations.md, "Exit codes")
    assert second.stdout == ""
    assert second.stderr.startswith("Error: evidence store: store ")
    assert "is locked by another open store" in second.stderr
    assert "Traceback" not in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    # The first one is untouched.
    assert call(url, {"tool": "echo", "args": {"text": "still here"}}).status_code == 200


def test_an_address_in_use_is_cannot_run(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
        done = subprocess.run(
            [VEDETTE, "serve", "--example", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr  # docs/operations.md, "Exit codes"
    assert "address already in use" in done.stderr
    assert done.stderr.rstrip().endswith("Error: a listener could not start (the reason is above)")


def test_config_file_with_a_unix_socket_listener(tmp_path):
    from vedette.example import example_dir

    examples = example_dir()
    port = free_port()
    socket_path = tmp_path / "adapter.sock"
    config = tmp_path / "vedette.toml"
    config.write_text(
        f"""
node_id = "config-node"
state_dir = "state"
[listen]
port = {port}
unix_socket = "adapter.sock"
[[tools.fs_mounts]]
at = "/data"
dir = "{examples / "data"}"
[[callers]]
id = "local-adapter"
agent = "example-assistant"
uid = {os.getuid()}
[[agents]]
name = "example-assistant"
manifest = "{examples / "agent.json"}"
bundle = "{examples / "bundle"}"
unsigned = true
"""
    )
    process = subprocess.Popen(
        [VEDETTE, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the Unix socket never appeared"
            time.sleep(0.1)
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://vedette", timeout=10) as local:
            answer = local.post("/v1/tool", json={"tool": "echo", "args": {"text": "uid"}})
            assert answer.status_code == 200, answer.text
            denied = local.post("/v1/tool", json={"tool": "fs.read", "args": {"path": "/etc"}})
            assert denied.status_code == 403
        # The TCP listener of the same server: no token, no caller.
        tcp = httpx.post(f"http://127.0.0.1:{port}/v1/tool", json={"tool": "echo"}, timeout=10)
        assert tcp.status_code == 401
        with operator_client(tmp_path / "state" / "operator.sock") as operator:
            assert operator.get("/v1/status").json()["node"] == "config-node"
        assert (tmp_path / "state" / "store").is_dir()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output


def test_example_on_granian(tmp_path):
    import granian  # noqa: F401  (in the test extra: this test must run, not skip)

    port = free_port()
    env = {**os.environ, "VEDETTE_EXAMPLE_TOKEN": TOKEN, "XDG_STATE_HOME": str(tmp_path)}
    command = [VEDETTE, "serve", "--example", "--server", "granian", "--listen"]
    process = subprocess.Popen(
        [*command, f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = call(url, {"tool": "echo", "args": {"text": "on granian"}})
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "granian never answered"
                time.sleep(0.2)
        assert answer.status_code == 200
        assert answer.json()["output"] == {"text": "on granian"}
        assert call(url, {"tool": "fs.read", "args": {"path": "/etc/passwd"}}).status_code == 403
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def test_a_deleted_store_folder_turns_health_failing_and_every_call_denied(
    example_server, tmp_path
):
    url, _ = example_server
    assert httpx.get(f"{url}/v1/health", timeout=10).json()["status"] == "ok"
    assert call(url, {"tool": "echo", "args": {"text": "before"}}).status_code == 200
    shutil.rmtree(tmp_path / "vedette" / "example" / "store")
    # The runtime's periodic check finds it within about a second.
    deadline = time.monotonic() + 15
    while (health := httpx.get(f"{url}/v1/health", timeout=10)).status_code != 503:
        assert time.monotonic() < deadline, health.text
        time.sleep(0.2)
    body = health.json()
    assert body["status"] == "failing"
    assert body["checks"]["store"] == "failing"
    assert any("evidence store stopped" in reason for reason in body["reasons"]), body
    denied = call(url, {"tool": "echo", "args": {"text": "after"}})
    assert denied.status_code == 403
    assert denied.json()["decision"] == "deny"
    # Nothing is written into the unlinked files, and nothing reappears.
    assert not (tmp_path / "vedette" / "example" / "store").exists()


def test_unusable_peer_tls_files_make_the_node_degraded():
    from vedette.serve import _peers_health

    assert _peers_health({"tls_error": None}).state == "ok"
    broken = _peers_health({"tls_error": "/etc/vedette/node.key: Permission denied"})
    assert broken.state == "degraded"
    assert "TLS files cannot be used" in broken.reasons[0]
    assert "/etc/vedette" not in broken.reasons[0], "health names no host path"
