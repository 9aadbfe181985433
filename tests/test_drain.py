"""The air-gapped drain: a node without network hands its sealed evidence to a
folder (removable media) while `vedette serve` keeps running, the copy is
checked, the segments become evictable, and they import cleanly elsewhere."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from live_server import wait_until_healthy

from vedette.drain import DrainError, drain, import_drained
from vedette.example import example_dir
from vedette.store import SegmentStore

VEDETTE = str(Path(sys.executable).with_name("vedette"))
TOKEN = "drain-test-token"
CEILING = 512 * 1024


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(
    folder: Path, node: str, port: int, ceiling: int = CEILING, operator_socket: Path | None = None
) -> Path:
    from vedette.config import token_digest

    examples = example_dir()
    config = folder / "vedette.toml"
    config.write_text(
        f"""
node_id = "{node}"
state_dir = "state"
[listen]
port = {port}
[store]
ceiling_bytes = {ceiling}
[quota]
rate_per_s = 100000
burst = 100000
[[tools.fs_mounts]]
at = "/data"
dir = "{examples / "data"}"
[[callers]]
id = "adapter"
agent = "example-assistant"
token_sha256 = "{token_digest(TOKEN)}"
[[agents]]
name = "example-assistant"
manifest = "{examples / "agent.json"}"
bundle = "{examples / "bundle"}"
unsigned = true
"""
        + (f'[operator]\nsocket = "{operator_socket}"\n' if operator_socket else "")
    )
    return config


@pytest.fixture
def node(tmp_path):
    port = free_port()
    config = write_config(tmp_path, "edge-1", port)
    process = subprocess.Popen(
        [VEDETTE, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process)
    yield url, config, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)


def calls(url: str, count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"tool": "echo", "args": {"text": "x" * 900}}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        return [client.post("/v1/tool", json=body).status_code for _ in range(count)]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VEDETTE, *args], capture_output=True, text=True, timeout=120)


def test_drain_while_serving_frees_the_store_and_the_copy_imports_elsewhere(node, tmp_path):
    url, config, process = node
    # Enough allowed calls to seal a few segments, well under the ceiling.
    assert set(calls(url, 120)) == {200}
    media = tmp_path / "usb"
    drained = run_cli(
        "store", "drain", "--config", str(config), "--to", str(media), "--label", "usb1"
    )
    assert drained.returncode == 0, drained.stderr
    assert "acknowledged as media:usb1" in drained.stdout
    (manifest_path,) = media.glob("drain-edge-1-*.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == "vedette.drain/v1"
    assert manifest["label"] == "usb1"
    ids = [entry["id"] for entry in manifest["segments"]]
    assert ids, "sealed segments were drained"
    # The node (still running) holds them as acknowledged by the media.
    with SegmentStore.open_read_only(tmp_path / "state" / "store") as store:
        held = {s.id: s.acked_by for s in store.segments() if s.sealed}
    assert all(held[i] == ("media:usb1",) for i in ids)
    # So it can go on far past its ceiling: each drained segment is evicted as needed.
    for _ in range(4):
        assert set(calls(url, 120)) == {200}
        again = run_cli(
            "store", "drain", "--config", str(config), "--to", str(media), "--label", "usb1"
        )
        assert again.returncode == 0, again.stderr
    assert process.poll() is None

    # Elsewhere: another node's store takes every drained segment, each checked.
    other = tmp_path / "archive-node"
    other.mkdir()
    other_config = write_config(other, "desk", free_port(), ceiling=64 << 20)
    imported = run_cli("store", "import", "--config", str(other_config), "--from", str(media))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    result = json.loads(imported.stdout)
    assert result["refused"] == {}
    assert result["imported"] == len(list((media / "segments").glob("*.seg")))
    verified = run_cli("store", "verify", str(other / "state" / "store"))
    assert verified.returncode == 0, verified.stdout


def test_a_copy_that_does_not_read_back_is_not_acknowledged(tmp_path):
    with SegmentStore.open(tmp_path / "store", 1 << 20, "edge-2") as store:
        for _ in range(3):
            store.append(b"record" * 100)
            store.seal()
        media = tmp_path / "usb"

        def damage_the_copy(done: int, total: int) -> None:
            copied = sorted((media / "segments").glob("*.seg"))[0]
            data = bytearray(copied.read_bytes())
            data[len(data) // 2] ^= 0x40
            copied.write_bytes(bytes(data))

        with pytest.raises(DrainError, match="reads back as"):
            drain(store, media, "usb2", progress=damage_the_copy)
        assert all(not s.acked_by for s in store.segments())
        # Run again onto good media: the damaged file is replaced, all acknowledged.
        report = drain(store, tmp_path / "usb-ok", "usb2")
        assert (report.copied, report.verified, report.acknowledged) == (3, 3, 3)
        assert all(s.acked_by == ("media:usb2",) for s in store.segments() if s.sealed)
        # Already acknowledged by this media: a second drain has nothing to do.
        assert drain(store, tmp_path / "usb-ok", "usb2").acknowledged == 0


def test_drained_segments_import_into_a_fresh_store(tmp_path):
    with SegmentStore.open(tmp_path / "a", 1 << 20, "edge-3") as source:
        for n in range(4):
            source.append(f"record {n}".encode())
            source.seal()
        drain(source, tmp_path / "usb", "stick")
    with SegmentStore.open(tmp_path / "b", 1 << 20, "desk") as target:
        assert import_drained(target, tmp_path / "usb") == {"imported": 4, "refused": {}}
        records = [r for _, r in target.iter_records(origin="edge-3")]
        assert records == [f"record {n}".encode() for n in range(4)]
        # A file altered on the media is refused by the store and named.
        victim = next((tmp_path / "usb" / "segments").glob("*.seg"))
        victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    with SegmentStore.open(tmp_path / "c", 1 << 20, "desk2") as target:
        result = import_drained(target, tmp_path / "usb")
        assert result["imported"] == 3
        assert list(result["refused"]) == [victim.name]


@pytest.mark.parametrize("label", ["", "with space", "a/b", "x" * 201])
def test_a_label_must_be_a_plain_name(tmp_path, label):
    store = SegmentStore.open(tmp_path / "store", 1 << 20, "edge-4")
    with store, pytest.raises(DrainError, match="drain label"):
        drain(store, tmp_path / "usb", label)


def curl_as_nobody(socket_path: Path) -> subprocess.CompletedProcess[str]:
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket"]
    return subprocess.run(
        [*command, str(socket_path), "http://node/v1/status"],
        capture_output=True,
        text=True,
        user=65534,
        timeout=60,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_the_operator_socket_admits_only_the_nodes_own_user(tmp_path):
    shared = Path(tempfile.mkdtemp(prefix="vedette-operator-"))
    shared.chmod(0o755)  # others may reach the folder; the socket itself must stop them
    socket_path = shared / "operator.sock"
    config = write_config(tmp_path, "edge-5", free_port(), operator_socket=socket_path)
    process = subprocess.Popen(
        [VEDETTE, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket_path.is_socket():
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the operator socket never appeared"
            time.sleep(0.1)
        assert socket_path.stat().st_mode & 0o777 == 0o600
        # Another user cannot connect at all (curl: "couldn't connect", 000)…
        refused = curl_as_nobody(socket_path)
        assert (refused.returncode, refused.stdout) == (7, "000")
        # …and were the socket's mode loosened, the peer uid check still refuses.
        socket_path.chmod(0o666)
        assert curl_as_nobody(socket_path).stdout == "403"
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, timeout=10) as owner:
            assert owner.get("http://node/v1/status").json()["node"] == "edge-5"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        assert not socket_path.exists(), "the node removes its socket when it stops"
        shutil.rmtree(shared)
