"""Three `vedette serve` processes with certificates from `vedette pki`,
replicating evidence over mutual TLS, one of them killed with SIGKILL
mid-transfer and restarted; `vedette peers status`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import operator_client
from peer_helpers import frontiers, wait_until

from vedette.config import token_digest
from vedette.origin import OriginVerifier
from vedette.store import SegmentStore

VEDETTE = str(Path(sys.executable).with_name("vedette"))
NODES = ("a", "b", "c")
LOAD_TOKEN = "load-token"
# Who dials whom: a full mesh with one dial per pair.
DIALS = {"a": ("b", "c"), "b": ("c",), "c": ()}


class FleetPki:
    """A PKI made with `vedette pki`, as an operator of a small fleet would."""

    def __init__(self, directory: Path, trust_domain: str, nodes: tuple[str, ...]) -> None:
        self.dir = directory
        self.trust_domain = trust_domain
        self.ca = directory / "ca.crt"
        self.crl = directory / "crl.pem"
        pki = [VEDETTE, "pki"]
        run([*pki, "init", "--trust-domain", trust_domain, "--dir", str(directory)])
        for node in nodes:
            run([*pki, "issue", node, "--dir", str(directory)])


def run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    def __init__(self, name: str, root: Path, ca: FleetPki, ports: dict[str, int]) -> None:
        self.name = name
        self.state = root / name
        self.state.mkdir(mode=0o700)
        self.http = free_port()
        self.config = root / f"{name}.toml"
        static = ", ".join(f'"127.0.0.1:{ports[p]}"' for p in DIALS[name])
        self.config.write_text(
            f"""
node_id = "{name}"
state_dir = "{self.state}"
[listen]
port = {self.http}
[store]
ceiling_bytes = {4 << 20}
[quota]
rate_per_s = 100000
burst = 100000
[[callers]]
id = "load"
agent = "unreleased"
token_sha256 = "{token_digest(LOAD_TOKEN)}"
[peers]
ca = "{ca.ca}"
cert = "{ca.dir / f"{name}.crt"}"
key = "{ca.dir / f"{name}.key"}"
crl = "{ca.crl}"
trust_domain = "{ca.trust_domain}"
allow = ["spiffe://{ca.trust_domain}/node/*"]
listen = "127.0.0.1:{ports[name]}"
static = [{static}]
seal_interval_s = 0.3
sync_interval_s = 0.1
retry_base_s = 0.05
retry_cap_s = 0.5
retry_budget = 200
"""
        )
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [VEDETTE, "serve", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code in (200, 503):
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self.kill()}")
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> str:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.communicate(timeout=60)[0]

    def store(self) -> SegmentStore:
        return SegmentStore.open_read_only(self.state / "store")

    def frontiers(self) -> dict[str, int]:
        store = self.store()
        try:
            return frontiers(store)
        finally:
            store.close()

    def evidence(self, n: int) -> None:
        """``n`` recorded decisions: a caller whose agent has no release is denied,
        and every denial is recorded."""
        headers = {"Authorization": f"Bearer {LOAD_TOKEN}"}
        with httpx.Client(headers=headers) as client:
            for i in range(n):
                answer = client.post(f"{self.url}/v1/tool", json={"tool": "echo", "args": {"i": i}})
                assert answer.status_code == 403, answer.text


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[dict[str, Node]]:
    ca = FleetPki(tmp_path / "pki", "fleet.test", NODES)
    ports = {name: free_port() for name in NODES}
    nodes = {name: Node(name, tmp_path, ca, ports) for name in NODES}
    try:
        for node in nodes.values():
            node.start()
        yield nodes
    finally:
        for node in nodes.values():
            if node.process is not None and node.process.returncode is None:
                node.kill(signal.SIGTERM)


def converged(nodes: dict[str, Node]) -> bool:
    seen = [n.frontiers() for n in nodes.values()]
    return all(f == seen[0] for f in seen) and set(seen[0]) == set(NODES)


def test_three_nodes_converge_after_a_sigkill_mid_transfer(
    mesh: dict[str, Node], tmp_path: Path
) -> None:
    a, b, c = mesh["a"], mesh["b"], mesh["c"]
    # Every segment received from a peer came with its origin's signature,
    # checked against the fleet CA, and is kept with it.
    verifier = OriginVerifier(
        ca_pem=(tmp_path / "pki" / "ca.crt").read_text(), require_certificate=True
    )
    a.evidence(40)
    wait_until("a's first segments on b", lambda: b.frontiers().get("a", 0) >= 2)
    # More evidence on a; kill b while it is still arriving.
    a.evidence(200)
    b.kill()
    a.evidence(40)
    b.start()
    b.evidence(10)
    c.evidence(10)
    # Let the event records settle (connections made), then everything converges.
    wait_until("convergence", lambda: converged(mesh), 120)
    time.sleep(1.0)
    wait_until("convergence", lambda: converged(mesh), 120)

    for node in mesh.values():
        store = node.store()
        try:
            sealed = [s for s in store.segments() if s.sealed]
            ids = [s.id for s in sealed]
            assert len(ids) == len(set(ids)), f"{node.name} holds a segment twice"
            keys = [(s.origin, s.seq) for s in sealed]
            assert len(keys) == len(set(keys))
            report = store.verify()
            assert report["faults"] == [], report
            received = [s for s in sealed if s.origin != node.name]
            assert received
            for s in received:
                blob = store.origin_signature(s.id)
                assert verifier.check(blob, s.origin, s.seq, s.id) == "certificate"
        finally:
            store.close()
    # Records of a's decisions are all on c, in order, once.
    store = c.store()
    try:
        positions = [pos for pos, _ in store.iter_records(origin="a")]
        assert positions == list(range(len(positions)))
        decisions = [
            json.loads(r)
            for _, r in store.iter_records(origin="a")
            if json.loads(r).get("kind") == "decision"
        ]
        assert len(decisions) >= 280
        # a's peer events were recorded as evidence, and replicated like the rest.
        events = [
            json.loads(r)
            for _, r in store.iter_records(origin="a")
            if json.loads(r).get("kind") == "peer_event"
        ]
        assert {"listening", "connected"} <= {e["event"] for e in events}
    finally:
        store.close()

    # a's segments are acknowledged by both peers (by ACK, or by their
    # frontiers for what they got through the other), hence evictable.
    def all_acked() -> bool:
        store = a.store()
        try:
            sealed = [s for s in store.segments() if s.sealed and s.origin == "a"]
            return bool(sealed) and all({"b", "c"} <= set(s.acked_by) for s in sealed)
        finally:
            store.close()

    wait_until("acknowledgements", all_acked, 120)
    store = a.store()
    try:
        assert store.usage().evictable_bytes > 0
    finally:
        store.close()

    # Status: over HTTP (read-only) and through the CLI's status file.
    with operator_client(a.state / "operator.sock") as operator:
        status = operator.get("/v1/status").json()["peers"]
        metrics = operator.get("/metrics").text
    assert {p["node"] for p in status["peers"] if p["connected"]} == {"b", "c"}
    assert "vedette_peer_segments_total" in metrics
    assert "vedette_peer_bytes_total" in metrics
    assert "vedette_peer_origin_refused_total 0.0" in metrics
    assert status["origin_refused"] == 0
    shown = subprocess.run(
        [VEDETTE, "peers", "status", "--config", str(a.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "spiffe://fleet.test/node/b" in shown.stdout
    assert "spiffe://fleet.test/node/c" in shown.stdout
    raw = subprocess.run(
        [VEDETTE, "peers", "status", "--config", str(a.config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(raw.stdout)["node"] == "a"
    assert os.stat(a.state / "peers-status.json").st_mode & 0o077 == 0
