"""A real `vedette serve` node archiving to a real three-server NATS JetStream
cluster (TLS, stream replicas 3), under a small evidence-store ceiling.

The node has no peers: the archive is the only place its evidence can go, so
the store stays under its ceiling only because the uplink ships sealed
segments and the stream acknowledges them. These tests drive the node over
HTTP as an adapter would, take NATS servers and the node itself down with
SIGKILL, and then read the stream back with `vedette archive verify` and
`vedette archive export` to check that every answered decision is there,
signed by its origin, once, with no gap in the chain.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("nats")

from tests.live_server import operator_client
from tests.nats_cluster import NatsCluster, nats_cluster
from tests.runtime_fixtures import AGENT, ECHO_SCHEMA, POLICY, write_release
from vedette.archive import wire
from vedette.config import ArchiveConfig, token_digest
from vedette.store import SegmentStore

VEDETTE = str(Path(sys.executable).with_name("vedette"))
TOKEN = "archive-node-token"
# The node's certificate is issued to node-a by the cluster's CA, and the node
# signs its segments with it: the origin must be the name the certificate holds.
NODE = "node-a"
CEILING = 512 * 1024
# ~4 KiB of arguments: each allowed call leaves a decision record of about
# that size (the arguments are evidence) and a small tool-outcome record.
TEXT = "e" * 4000
# Eventual states (a segment archived, a server elected, a backlog drained)
# get this long; nothing here asserts how fast anything is.
DEADLINE_S = 60.0
EVIDENCE_DENIAL = "evidence could not be recorded"
# Calls per second where a test paces its adapter: about half a ceiling of
# evidence a second. Unpaced, one adapter connection fills the 512 KiB store
# in about half a second, less than the uplink's scan interval, and the node
# rightly denies (fail-closed) before the first segment has left.
PACE_PER_S = 50.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Pace:
    """Spaces calls ``1/per_s`` apart on a fixed schedule (a slow call is not
    followed by a longer pause)."""

    def __init__(self, per_s: float = PACE_PER_S) -> None:
        self.step = 1.0 / per_s
        self.next = time.monotonic()

    def wait(self) -> None:
        self.next += self.step
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self.next = time.monotonic()


def wait_for(check, what: str, timeout_s: float = DEADLINE_S, every_s: float = 0.1) -> Any:
    """Polls ``check`` until it returns something truthy; fails naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached within {timeout_s:.0f} s: {what}"
        time.sleep(every_s)


class Node:
    """One `vedette serve` process with an [archive] table pointing at the cluster
    and no [peers]; ``start()`` again after ``kill9()`` reuses its state folder."""

    def __init__(
        self, folder: Path, cluster: NatsCluster, stream: str, bytes_per_second: int = 8 << 20
    ) -> None:
        self.folder = folder
        self.stream = stream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "node.log"
        agent = write_release(folder / "releases", AGENT, [("echo", ECHO_SCHEMA)], POLICY)
        files = cluster.client_tls(NODE)
        servers = ", ".join(f'"{u}"' for u in cluster.urls)
        self.config = folder / "vedette.toml"
        self.config.write_text(
            f"""
node_id = "{NODE}"
state_dir = "state"
[listen]
port = {self.port}
[store]
ceiling_bytes = {CEILING}
seal_after_s = 0.5
[quota]
rate_per_s = 100000
burst = 100000
[[callers]]
id = "adapter"
agent = "{AGENT}"
token_sha256 = "{token_digest(TOKEN)}"
[[agents]]
name = "{AGENT}"
manifest = "{agent.manifest}"
bundle = "{agent.bundle}"
unsigned = true
[archive]
servers = [{servers}]
stream = "{stream}"
subject_prefix = "vedette.{stream.lower()}"
ca = "{files["ca"]}"
cert = "{files["cert"]}"
key = "{files["key"]}"
replicas = 3
publish_timeout_s = 3.0
retry_base_s = 0.05
retry_cap_s = 0.5
retry_budget = 1000
bytes_per_second = {bytes_per_second}
"""
        )
        self.client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    @property
    def archive(self) -> ArchiveConfig:
        """The node's own [archive] table, for reading its stream from the test."""
        from vedette.config import load_config

        archive = load_config(self.config).archive
        assert archive is not None
        return archive

    @property
    def store_dir(self) -> Path:
        return self.folder / "state" / "store"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        # A file, not a pipe: a node logging "archive unreachable" for a minute
        # must never block on a pipe nobody reads.
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [VEDETTE, "serve", "--config", str(self.config)], stdout=log, stderr=log
            )
        wait_for(self._answers, "the node answers /v1/health", timeout_s=30)

    def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log.read_text(errors="replace")[-3000:]
        try:
            return self.client.get("/v1/health", timeout=2).status_code in (200, 503)
        except httpx.TransportError:
            return False

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.client.close()

    def call(self, text: str = TEXT) -> httpx.Response:
        return self.client.post("/v1/tool", json={"tool": "echo", "args": {"text": text}})

    def status(self) -> dict[str, Any]:
        with operator_client(self.config.parent / "state" / "operator.sock") as operator:
            return operator.get("/v1/status").json()

    def health(self) -> tuple[int, dict[str, Any]]:
        answer = self.client.get("/v1/health")
        return answer.status_code, answer.json()

    def drained(self) -> bool:
        """The archive connected and every sealed segment acknowledged by it
        (the store's own count: the uplink's backlog is a snapshot of its last
        look at the store)."""
        status = self.status()
        archive, store = status["archive"], status["store"]
        return bool(
            archive["connected"]
            and archive["backlog_segments"] == 0
            and store["unacked_sealed_bytes"] == 0
        )

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def cluster(tmp_path):
    with nats_cluster(tmp_path / "nats") as c:
        yield c


@pytest.fixture
def node(tmp_path, cluster):
    made: list[Node] = []

    def make(stream: str = "EVIDENCE", bytes_per_second: int = 8 << 20) -> Node:
        folder = tmp_path / "node"
        folder.mkdir()
        n = Node(folder, cluster, stream, bytes_per_second)
        made.append(n)
        n.start()
        return n

    yield make
    for n in made:
        n.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VEDETTE, *args], capture_output=True, text=True, timeout=300)


def verify(node: Node) -> dict[str, Any]:
    """`vedette archive verify --json` with the node's own configuration; exit 0."""
    done = run_cli("archive", "verify", "--config", str(node.config), "--json")
    assert done.returncode == 0, f"exit {done.returncode}: {done.stdout}{done.stderr[-1500:]}"
    return json.loads(done.stdout)


def exported_ids(node: Node) -> list[str]:
    done = run_cli(
        "archive", "export", "--config", str(node.config), "--node", NODE, "--format", "jsonl"
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-1500:]}"
    return [json.loads(line)["decision_id"] for line in done.stdout.splitlines()]


def wait_exported(node: Node, ids: set[str]) -> list[str]:
    """Until every id in ``ids`` can be exported from the archive (the last calls
    sit in the open segment until it is sealed by age and shipped)."""
    wait_for(node.drained, "the archive acknowledged every sealed segment")
    got: list[str] = []

    def complete() -> bool:
        nonlocal got
        got = exported_ids(node)
        return ids <= set(got)

    try:
        wait_for(complete, "every answered decision id in the archive", every_s=0.5)
    except AssertionError as err:
        missing = sorted(ids - set(got))
        raise AssertionError(f"{err}; {len(missing)} missing, e.g. {missing[:5]}") from None
    return got


def assert_clean_chain(report: dict[str, Any]) -> dict[str, Any]:
    """No finding, no duplicate, the node's chain complete from seq 0 and every
    segment carrying an origin signature that verified."""
    assert report["clean"], report["findings"]
    assert report["findings"] == []
    assert not [n for n in report["notes"] if n["kind"] == "duplicate"], report["notes"]
    chain = report["nodes"][NODE]
    assert chain["first_seq"] == 0
    # One segment per sequence number and none missing: nothing was evicted
    # from the store before the archive held it.
    assert chain["segments"] == chain["last_seq"] + 1, chain
    assert chain["signed"] == chain["segments"], chain
    assert chain["unsigned"] == 0, chain
    return chain


async def _stream_messages(node: Node) -> list[tuple[int, dict[str, str]]]:
    """Every message in the node's stream: its sequence and headers."""
    from vedette.archive.reader import connect

    config = node.archive
    nc = await connect(config)
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(config.stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(config.stream, seq)
            out.append((seq, {str(k): str(v) for k, v in (msg.headers or {}).items()}))
        return out
    finally:
        await nc.close()


async def _stream_leader(node: Node) -> str:
    from vedette.archive.reader import connect

    nc = await connect(node.archive)
    try:
        info = await nc.jetstream(timeout=10).stream_info(node.stream)
        return str(info.cluster.leader)
    finally:
        await nc.close()


def test_node_serves_ten_ceilings_of_calls_with_zero_denials_while_the_archive_is_up(node):
    n = node()
    wait_for(lambda: n.status()["archive"]["connected"], "the uplink connects")
    allowed: list[str] = []
    refused: list[tuple[int, str]] = []
    target = 10 * CEILING
    calls = 0
    pace = Pace()
    # Half a ceiling of evidence a second: the store stays under its ceiling
    # only if the uplink keeps shipping and the stream keeps acknowledging,
    # so any denial here is the store filling up while the archive is up.
    while n.status()["archive"]["published_bytes"] < target:
        for _ in range(50):
            pace.wait()
            answer = n.call()
            calls += 1
            body = answer.json()
            if answer.status_code == 200 and body["decision"] == "allow":
                allowed.append(body["decision_id"])
            else:
                refused.append((answer.status_code, body.get("reason", "")))
        assert not refused, f"{len(refused)} of {calls} calls refused, first: {refused[0]}"
        assert calls < 20_000, "ten ceilings of evidence never reached the archive"
    assert len(set(allowed)) == calls
    # The store never held more than its ceiling while ten times that passed through.
    store = n.status()["store"]
    assert store["ceiling_bytes"] == CEILING
    assert store["bytes_used"] <= CEILING

    got = wait_exported(n, set(allowed))
    report = verify(n)
    chain = assert_clean_chain(report)
    assert report["bytes"] >= target, (report["bytes"], target)
    # The store kept a fraction of that: segments were evicted once archived.
    assert chain["segments"] > store["sealed_segments"]
    # Each decision once in the export: the stream holds each segment once.
    counts = Counter(got)
    assert all(counts[i] == 1 for i in allowed)


def test_one_nats_server_killed_mid_upload_loses_nothing(node, cluster):
    n = node()
    allowed: list[str] = []
    denied: list[str] = []

    pace = Pace()

    def burst(count: int) -> None:
        for _ in range(count):
            pace.wait()
            answer = n.call()
            body = answer.json()
            if answer.status_code == 200:
                allowed.append(body["decision_id"])
            else:
                # Fail-closed is the only acceptable refusal: no room for the
                # evidence while the stream elects a new leader.
                assert answer.status_code == 403, (answer.status_code, body)
                assert EVIDENCE_DENIAL in body["reason"], body
                denied.append(body["decision_id"])

    burst(60)
    wait_for(lambda: n.status()["archive"]["archived_segments"] >= 3, "first segments archived")
    # The stream's leader is the server whose loss hurts an upload most: the
    # remaining two must elect a new one before anything is acknowledged.
    leader = asyncio.run(_stream_leader(n))
    victim = int(leader.removeprefix("s"))
    cluster.stop(victim)
    assert cluster.procs[victim] is None
    burst(60)
    after_stop = n.status()["archive"]["archived_segments"]

    # Two servers of three carry on: the uplink keeps archiving new segments.
    def progressed() -> bool:
        burst(10)
        return n.status()["archive"]["archived_segments"] >= after_stop + 10

    wait_for(progressed, "segments archived with one server down")
    assert allowed, "no call was allowed"
    # The node answers allow again once the archive acknowledges (fail-closed
    # denials, if any, were temporary).
    answer = n.call()
    assert answer.status_code == 200, answer.text
    allowed.append(answer.json()["decision_id"])

    # Read back with the killed server still down, more than once: the stream
    # has three replicas, so losing one server must not stop a reader either.
    got = wait_exported(n, set(allowed))
    assert not set(denied) & set(got), "a denied call's decision is in the archive"
    for _ in range(3):
        assert_clean_chain(verify(n))
        assert set(allowed) <= set(exported_ids(n))
    assert n.process is not None
    assert n.process.poll() is None


def test_whole_cluster_down_degrades_then_fails_closed_then_recovers_without_restart(node, cluster):
    n = node()
    assert n.process is not None
    pid = n.process.pid
    wait_for(lambda: n.status()["archive"]["archived_segments"] >= 1, "a first segment archived")
    for _ in range(20):
        assert n.call().status_code == 200
    wait_for(n.drained, "the warm-up evidence archived")
    allowed: list[str] = []

    cluster.stop_all()
    # Once the uplink has seen the connection go, no acknowledgement from
    # before the outage can still land and free room in the store.
    wait_for(lambda: not n.status()["archive"]["connected"], "the uplink sees the outage")
    store_states: list[str] = []
    first_denial: dict[str, Any] | None = None
    deadline = time.monotonic() + 120
    # With nowhere to send evidence, calls are allowed while the store has
    # room, the store check turns degraded above the high-water mark, and once
    # the store is full calls are denied.
    while first_denial is None:
        assert time.monotonic() < deadline, f"the store never filled: {store_states[-5:]}"
        answer = n.call()
        body = answer.json()
        if answer.status_code == 200:
            allowed.append(body["decision_id"])
        else:
            first_denial = body
        code, health = n.health()
        store_states.append(health["checks"]["store"])
        assert (code == 503) == (health["status"] == "failing"), (code, health)
    assert len(allowed) > 10, "the store should admit calls until it is full"
    assert first_denial["decision"] == "deny"
    assert EVIDENCE_DENIAL in first_denial["reason"], first_denial
    assert "degraded" in store_states, store_states
    assert store_states.index("degraded") < store_states.index("failing"), store_states
    code, health = n.health()
    assert code == 503, health
    assert health["checks"]["store"] == "failing", health
    assert any("full" in r for r in health["reasons"]), health
    # The uplink says why: the archive is unreachable with evidence waiting.
    wait_for(lambda: n.health()[1]["checks"]["archive"] == "degraded", "the archive check degraded")
    assert n.status()["archive"]["connected"] is False

    # While full, never an allow without durable evidence: a call is denied for
    # its evidence, or (when sealing by age gave back the open segment's
    # reserved room) allowed with its record, which the export must show later.
    denied = 0
    for _ in range(30):
        answer = n.call()
        if answer.status_code == 200:
            allowed.append(answer.json()["decision_id"])
            continue
        assert answer.status_code == 403, answer.text
        assert EVIDENCE_DENIAL in answer.json()["reason"]
        denied += 1
    assert denied > 0, "a full store must deny"
    assert n.health()[0] == 503

    cluster.start_all()
    # The same process reconnects, ships its backlog, and the room the
    # archive's acknowledgements free lets the store admit again.
    wait_for(n.drained, "the backlog drained after the cluster came back")

    def healthy() -> bool:
        # Every part ok but the releases, which say the agent runs unsigned files.
        code, health = n.health()
        parts = {part: state for part, state in health["checks"].items() if part != "releases"}
        return code == 200 and set(parts.values()) == {"ok"}

    # Before any new call: a node that says 503 is a node a load balancer
    # sends nothing to, so health must recover on the drained store alone
    # (housekeeping looks at the store every second; 30 s is ample).
    try:
        wait_for(healthy, "/v1/health ok again once the backlog drained", timeout_s=30)
        stuck = None
    except AssertionError as err:
        stuck = f"{err}; still {n.health()}; store {n.status()['store']}"
    for _ in range(20):
        answer = n.call()
        assert answer.status_code == 200, answer.text
        allowed.append(answer.json()["decision_id"])
    assert n.process.pid == pid
    assert n.process.poll() is None

    got = wait_exported(n, set(allowed))
    assert set(allowed) <= set(got)
    assert_clean_chain(verify(n))
    assert stuck is None, stuck
    assert healthy()


def test_node_sigkilled_mid_upload_leaves_every_segment_in_the_archive_exactly_once(node):
    # The uplink paced below the rate evidence is made, so that a backlog is
    # certainly waiting when the node is killed.
    n = node(bytes_per_second=96 << 10)
    wait_for(lambda: n.status()["archive"]["connected"], "the uplink connects")
    allowed: list[str] = []
    stop = threading.Event()

    def adapter() -> None:
        # Calls keep coming until the node dies under them, paced so that the
        # backlog grows (faster than the uplink's pace) without the store
        # filling before the kill.
        while not stop.wait(1 / PACE_PER_S):
            try:
                answer = n.call()
            except httpx.TransportError:
                return
            if answer.status_code == 200:
                allowed.append(answer.json()["decision_id"])

    caller = threading.Thread(target=adapter, daemon=True)
    caller.start()

    def uploading() -> bool:
        # The store's own count of sealed segments the archive has not yet
        # acknowledged (the uplink's backlog drains the moment it acks).
        status = n.status()
        store = status["store"]
        waiting = store["sealed_segments"] - store["acked_segments"]
        return status["archive"]["archived_segments"] >= 2 and waiting >= 3

    try:
        wait_for(uploading, "the uplink busy with a backlog", every_s=0.01)
        n.kill9()
    finally:
        stop.set()
        caller.join(30)
    answered = set(allowed)
    assert len(answered) > 20

    # What the dead node left: sealed segments the archive had not acknowledged.
    by = f"archive:{n.stream}"
    with SegmentStore.open_read_only(n.store_dir) as left:
        unacked = {s.id for s in left.segments() if s.sealed and by not in s.acked_by}
    in_stream = {h[wire.H_SEGMENT] for _, h in asyncio.run(_stream_messages(n))}
    # (Segments both in the stream and unacknowledged were published but their
    # acknowledgement never reached the store: the restart sends them again.)
    resent = unacked & in_stream
    # The kill came mid-upload: sealed evidence was still waiting for the archive.
    assert unacked, "the node was killed with nothing left to upload"

    # Same state folder, same store; the pace lifted so the backlog drains quickly.
    paced = f"bytes_per_second = {96 << 10}\n"
    assert paced in n.config.read_text()
    n.config.write_text(n.config.read_text().replace(paced, f"bytes_per_second = {8 << 20}\n"))
    n.start()

    # The backlog leaves first (had it filled the store, calls would be denied
    # until it has, as they must be).
    def drained() -> bool:
        store = n.status()["store"]
        return store["sealed_segments"] == store["acked_segments"]

    wait_for(drained, "the backlog drains")
    for _ in range(20):
        answer = n.call()
        assert answer.status_code == 200, answer.text
        answered.add(answer.json()["decision_id"])
    wait_exported(n, answered)

    messages = asyncio.run(_stream_messages(n))
    per_segment = Counter(h[wire.H_SEGMENT] for _, h in messages)
    assert all(h[wire.H_CHUNK] == "0/1" for _, h in messages)  # small segments: one message each
    twice = {seg: count for seg, count in per_segment.items() if count != 1}
    assert not twice, f"segments stored more than once: {twice} (resent after restart: {resent})"
    assert unacked <= set(per_segment), "a segment unacknowledged at the kill never arrived"
    chain = assert_clean_chain(verify(n))
    assert chain["segments"] == len(per_segment)
