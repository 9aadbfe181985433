"""The archive uplink against a real three-server NATS JetStream cluster (TLS,
stream replicas 3): segments reach the stream once, are acknowledged in the
store only after the stream holds them, larger ones travel in chunks, and
`vedette archive verify` / `export` read them back; a segment removed,
altered or forged in the stream is reported with exit 1."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nats")

from tests.nats_cluster import NatsCluster, nats_cluster
from vedette.archive import wire
from vedette.archive.reader import read_stream
from vedette.archive.uplink import ArchiveUplink, acknowledger
from vedette.config import ArchiveConfig
from vedette.store import SegmentStore

VEDETTE = str(Path(sys.executable).with_name("vedette"))
STREAM = "EVIDENCE"


def archive_config(cluster: NatsCluster, **changes: object) -> ArchiveConfig:
    files = cluster.client_tls()
    values: dict[str, object] = {
        "servers": tuple(cluster.urls),
        "stream": STREAM,
        "ca": files["ca"],
        "cert": files["cert"],
        "key": files["key"],
        "replicas": 3,
        "retry_base_s": 0.05,
        "retry_cap_s": 0.5,
        "retry_budget": 1000,
        "publish_timeout_s": 3.0,
    }
    values.update(changes)
    return ArchiveConfig(**values)  # type: ignore[arg-type]


def config_file(folder: Path, cluster: NatsCluster) -> Path:
    files = cluster.client_tls()
    servers = ", ".join(f'"{u}"' for u in cluster.urls)
    path = folder / "vedette.toml"
    path.write_text(
        f"""
node_id = "reader"
state_dir = "{folder / "state"}"
[archive]
servers = [{servers}]
stream = "{STREAM}"
ca = "{files["ca"]}"
cert = "{files["cert"]}"
key = "{files["key"]}"
"""
    )
    return path


def wait_until(check, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def record(i: int, size: int = 200) -> bytes:
    return json.dumps(
        {
            "schema": "vedette.evidence/v1",
            "kind": "decision",
            "decision_id": f"d-{i}",
            "timestamp": "2026-12-06T12:00:00.000000000Z",
            "node": "edge-1",
            "agent": "a",
            "outcome": "allow",
            "input": {"args": {"pad": "x" * size}, "claims": {}},
        }
    ).encode()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VEDETTE, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def cluster(tmp_path):
    with nats_cluster(tmp_path / "nats") as c:
        yield c


def test_sealed_segments_reach_the_stream_once_and_verify_and_export_read_them(cluster, tmp_path):
    # 16 MiB ceiling: segments seal at 2 MiB, more than one 1 MB message holds.
    store = SegmentStore.open(tmp_path / "store", 16 << 20, "edge-1")
    by = acknowledger(archive_config(cluster))
    uplink = ArchiveUplink(archive_config(cluster), store)
    try:
        ids = []
        for i in range(0, 3000, 100):
            store.append_many([record(j, 1000) for j in range(i, i + 100)])
            ids.extend(f"d-{j}" for j in range(i, i + 100))
        store.seal()
        uplink.wake()
        sealed = [s for s in store.segments() if s.sealed]
        assert max(s.size for s in sealed) > 1 << 20  # at least one goes in chunks
        wait_until(lambda: all(by in s.acked_by for s in store.segments() if s.sealed))
        status = uplink.status()
        assert status["connected"]
        assert status["backlog_segments"] == 0
        assert uplink.health().state == "ok"
    finally:
        uplink.stop()
    # Restarting the uplink sends nothing again: the store says what is archived.
    again = ArchiveUplink(archive_config(cluster), store)
    time.sleep(1.5)
    assert again.status()["published_messages"] == 0
    again.stop()
    store.close()

    config = config_file(tmp_path, cluster)
    verified = run_cli("archive", "verify", "--config", str(config), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["nodes"]["edge-1"]["segments"] == len(sealed)
    assert report["nodes"]["edge-1"]["records"] == 3000
    assert not [n for n in report["notes"] if n["kind"] == "duplicate"]

    exported = run_cli("archive", "export", "--config", str(config), "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    got = [json.loads(line)["decision_id"] for line in exported.stdout.splitlines()]
    assert sorted(got) == sorted(ids)
    opa = run_cli("archive", "export", "--config", str(config), "--format", "opa",
                  "--node", "edge-1", "--outcome", "allow")  # fmt: skip
    events = [json.loads(line) for line in opa.stdout.splitlines()]
    assert len(events) == 3000
    assert events[0]["path"] == "vedette/decision"
    assert events[0]["labels"]["node"] == "edge-1"
    none = run_cli("archive", "export", "--config", str(config), "--outcome", "deny")
    assert none.returncode == 0
    assert none.stdout == ""


async def _messages(cluster: NatsCluster) -> list:
    import nats

    nc = await nats.connect(servers=cluster.urls, **cluster.connect_options())
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(STREAM, seq)
        out.append((seq, dict(msg.headers or {}), bytes(msg.data)))
    await nc.close()
    return out


async def _tamper(cluster: NatsCluster, delete: list[int], publish: list[tuple]) -> None:
    import nats

    nc = await nats.connect(servers=cluster.urls, **cluster.connect_options())
    js = nc.jetstream()
    for seq in delete:
        await js.delete_msg(STREAM, seq)
    for subject, data, headers in publish:
        await js.publish(subject, data, headers=headers)
    await nc.close()


def _archive_small_segments(cluster: NatsCluster, tmp_path: Path, count: int) -> None:
    store = SegmentStore.open(tmp_path / "store", 1 << 20, "edge-1")
    uplink = ArchiveUplink(archive_config(cluster), store)
    try:
        for i in range(count):
            store.append_many([record(i * 10 + j) for j in range(10)])
            store.seal()
        uplink.wake()
        by = uplink.by
        wait_until(lambda: all(by in s.acked_by for s in store.segments() if s.sealed))
    finally:
        uplink.stop()
        store.close()


@pytest.mark.parametrize("damage", ["removed", "altered", "forged"])
def test_a_segment_removed_altered_or_forged_in_the_stream_is_reported(cluster, tmp_path, damage):
    _archive_small_segments(cluster, tmp_path, 5)
    config = config_file(tmp_path, cluster)
    clean = run_cli("archive", "verify", "--config", str(config))
    assert clean.returncode == 0, clean.stdout + clean.stderr

    messages = asyncio.run(_messages(cluster))
    # The middle of the chain (the stream's order need not be the chain's).
    seq, headers, data = next(m for m in messages if m[1].get(wire.H_SEQ) == "2")
    subject = wire.subject("vedette.evidence", "edge-1")
    if damage == "removed":
        asyncio.run(_tamper(cluster, [seq], []))
        expected = "gap"
    elif damage == "altered":
        changed = data.replace(b"x" * 20, b"y" * 20, 1)
        headers = {**headers, wire.H_MSG_ID: "altered-copy"}
        asyncio.run(_tamper(cluster, [seq], [(subject, changed, headers)]))
        expected = "altered"
    else:
        # A self-consistent segment under edge-1's name at a sequence it used.
        other = SegmentStore.open(tmp_path / "forger", 1 << 20, "edge-1")
        for i in range(3):
            other.append_many([record(900 + i)])
            other.seal()
        forged = other.segments()[2]
        assert forged.id is not None
        forged_bytes = other.get_segment(forged.id)
        other.close()
        forged_headers = {
            wire.H_MSG_ID: forged.id, wire.H_SEGMENT: forged.id, wire.H_CHUNK: "0/1",
            wire.H_SIZE: str(len(forged_bytes)), wire.H_ORIGIN: "edge-1",
            wire.H_SEQ: str(forged.seq), wire.H_PREV: str(forged.prev),
            wire.H_RECORDS: str(forged.records),
        }  # fmt: skip
        asyncio.run(_tamper(cluster, [], [(subject, forged_bytes, forged_headers)]))
        expected = "fork"
    found = run_cli("archive", "verify", "--config", str(config), "--json")
    assert found.returncode == 1, found.stdout + found.stderr
    kinds = {f["kind"] for f in json.loads(found.stdout)["findings"]}
    assert expected in kinds, kinds


def test_verify_cannot_run_without_the_archive(tmp_path):
    cluster = NatsCluster(tmp_path / "nats")  # configured, never started
    config = config_file(tmp_path, cluster)
    done = run_cli("archive", "verify", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr


def test_stream_reads_back_every_segment_in_chunks(cluster, tmp_path):
    _archive_small_segments(cluster, tmp_path, 3)

    async def collect() -> list:
        return [item async for item in read_stream(archive_config(cluster))]

    items = asyncio.run(collect())
    assert len(items) == 3
