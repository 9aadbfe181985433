"""The archive uplink against a real three-server NATS JetStream cluster (TLS, R3).

Three comparisons, each anchor and vedette in the same run:

1. Uplink of 1 MiB sealed segments (origin signatures on, acknowledged in the
   store) vs raw ``nats-py`` JetStream publishes of the same bytes with the same
   window of unacknowledged messages (no reading from the store, no signature,
   no acknowledgement).
2. ``POST /v1/tool`` (wrk, 64 connections) on ``vedette serve --example`` while
   its uplink publishes a backlog flat out vs the same node with the uplink idle.
3. ``vedette archive verify`` (read the stream back, hash, check chains and
   signatures) vs BLAKE3 of the same bytes in memory; and the verification step
   alone over segments already read.

    python bench/compare_archive.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # tests.nats_cluster: the cluster the tests use

from compare_runtime import TOKEN, UNLIMITED, free_port, wait_ready, wrk  # noqa: E402
from report import machine, write_section  # noqa: E402

from tests.nats_cluster import NatsCluster  # noqa: E402
from vedette.archive.reader import read_stream  # noqa: E402
from vedette.archive.uplink import ArchiveUplink, acknowledger  # noqa: E402
from vedette.archive.verify import verify_segments, verify_stream  # noqa: E402
from vedette.config import ArchiveConfig  # noqa: E402
from vedette.hashing import blake3  # noqa: E402
from vedette.origin import NodeSigner, OriginSeals, load_or_make_node_key  # noqa: E402
from vedette.store import SegmentStore  # noqa: E402

SEGMENT_BYTES = 1 << 20
RECORD = b'{"kind":"decision","pad":"' + b"x" * 1000 + b'"}'
IN_FLIGHT = 8


def archive_config(cluster: NatsCluster, stream: str) -> ArchiveConfig:
    files = cluster.client_tls()
    return ArchiveConfig(
        servers=tuple(cluster.urls),
        stream=stream,
        subject_prefix=f"bench.{stream.lower()}",
        ca=files["ca"],
        cert=files["cert"],
        key=files["key"],
        replicas=3,
        bytes_per_second=1e12,
        in_flight=IN_FLIGHT,
        publish_timeout_s=30.0,
    )


def fill(store: SegmentStore, segments: int) -> int:
    """``segments`` sealed segments of about 1 MiB each; returns their total bytes."""
    per_segment = SEGMENT_BYTES // (len(RECORD) + 16)
    for _ in range(segments):
        store.append_many([RECORD] * per_segment)
        store.seal()
    return sum(s.size for s in store.segments() if s.sealed)


def uplink_run(
    cluster: NatsCluster, workdir: Path, segments: int, round_: int = 0
) -> dict[str, float]:
    """From a cold start (connect, find the stream) to every segment acknowledged
    in the store; the stream exists already, as it does for the anchor."""
    config = archive_config(cluster, "UPLINK")
    origin = f"bench-node-{round_}"  # each round its own origin: nothing deduplicated
    signer = NodeSigner(origin, load_or_make_node_key(workdir))
    store = SegmentStore.open(workdir / f"uplink-store-{round_}", 4 << 30, origin)
    total = fill(store, segments)
    seals = OriginSeals(store, signer)
    # A node signs what it seals within a second (its housekeeping), before the
    # uplink's turn comes; signing is part of sealing, not of the upload.
    seals.sign_pending()
    by = acknowledger(config)
    started = time.perf_counter()
    uplink = ArchiveUplink(config, store, signatures=seals.signature)
    try:
        uplink.wake()
        deadline = time.monotonic() + 600
        # The uplink counts a segment once its acknowledgement is durable in the
        # store; reading the count costs the uplink nothing (listing the store
        # every few milliseconds would take its lock and the interpreter's).
        while uplink.archived_segments < segments:
            if time.monotonic() > deadline:
                raise RuntimeError(f"uplink stuck: {uplink.status()}")
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        if not all(by in s.acked_by for s in store.segments() if s.sealed):
            raise RuntimeError("the uplink counted a segment the store does not hold acknowledged")
    finally:
        uplink.stop()
        store.close()
    return {"bytes": total, "seconds": seconds, "mib_s": total / seconds / (1 << 20)}


async def make_streams(cluster: NatsCluster) -> None:
    """Both streams, before anything is timed (an R3 stream's creation elects a leader)."""
    import nats

    nc = await nats.connect(servers=cluster.urls, **cluster.connect_options())
    try:
        js = nc.jetstream()
        await js.add_stream(name="RAW", subjects=["raw.>"], num_replicas=3)
        await js.add_stream(
            name="UPLINK", subjects=["bench.uplink.>"], num_replicas=3, duplicate_window=86400.0
        )
    finally:
        await nc.close()


async def purge_streams(cluster: NatsCluster) -> None:
    import nats

    nc = await nats.connect(servers=cluster.urls, **cluster.connect_options())
    try:
        js = nc.jetstream()
        for stream in ("RAW", "UPLINK"):
            await js.purge_stream(stream)
    finally:
        await nc.close()


async def raw_publish(
    cluster: NatsCluster, workdir: Path, segments: int, round_: int = 0
) -> dict[str, float]:
    """From a cold start (connect) to every publish acknowledged."""
    import nats

    store = SegmentStore.open(workdir / f"raw-store-{round_}", 4 << 30, f"raw-node-{round_}")
    fill(store, segments)
    payloads = [store.get_segment(s.id) for s in store.segments() if s.sealed and s.id]
    store.close()
    started = time.perf_counter()
    nc = await nats.connect(servers=cluster.urls, **cluster.connect_options())
    try:
        js = nc.jetstream()
        window = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int, data: bytes) -> None:
            async with window:
                await js.publish(
                    "raw.node", data, timeout=30, headers={"Nats-Msg-Id": f"{round_}-{i}"}
                )

        await asyncio.gather(*(one(i, p) for i, p in enumerate(payloads)))
        seconds = time.perf_counter() - started
    finally:
        await nc.close()
    total = sum(len(p) for p in payloads)
    return {"bytes": total, "seconds": seconds, "mib_s": total / seconds / (1 << 20)}


async def raw_read(cluster: NatsCluster, stream: str) -> float:
    """Seconds for a plain nats-py ordered consumer to read the whole stream
    (no reassembly, no hashing): what reading alone costs here."""
    import nats

    nc = await nats.connect(servers=cluster.urls, **cluster.connect_options())
    try:
        js = nc.jetstream()
        total = (await js.stream_info(stream)).state.messages
        started = time.perf_counter()
        sub = await js.subscribe(">", stream=stream, ordered_consumer=True,
                                 pending_bytes_limit=64 << 20)  # fmt: skip
        for _ in range(total):
            await sub.next_msg(timeout=30)
        seconds = time.perf_counter() - started
        await sub.unsubscribe()
    finally:
        await nc.close()
    return seconds


async def verify_run(cluster: NatsCluster) -> dict[str, float]:
    config = archive_config(cluster, "UPLINK")
    raw_read_s = await raw_read(cluster, "UPLINK")
    started = time.perf_counter()
    end_to_end = await verify_stream(config)  # what `vedette archive verify` does
    end_to_end_s = time.perf_counter() - started
    if end_to_end.findings:
        raise RuntimeError(f"archive verify found {end_to_end.findings[:3]}")
    items = [item async for item in read_stream(config)]

    async def replay():  # the segments already read, for the verification step alone
        for item in items:
            yield item

    started = time.perf_counter()
    report = await verify_segments(replay())
    check_s = time.perf_counter() - started
    if report.findings:
        raise RuntimeError(f"archive verify found {report.findings[:3]}")
    datas = [item.data for item in items]
    started = time.perf_counter()
    for data in datas:
        blake3(data)
    hash_s = time.perf_counter() - started
    total = report.bytes
    mib = total / (1 << 20)
    return {
        "bytes": total,
        "segments": report.segments,
        "signed": sum(chain.signed for chain in report.nodes.values()),
        "end_to_end_mib_s": mib / end_to_end_s,
        "raw_read_mib_s": mib / raw_read_s,
        "check_mib_s": mib / check_s,
        "blake3_mib_s": mib / hash_s,
    }


def tool_throughput(
    cluster: NatsCluster, workdir: Path, backlog: int, seconds: int, rounds: int
) -> dict:
    """wrk against ``vedette serve --example`` with an [archive] table, idle and
    busy alternating for ``rounds``; the median run of each."""
    cluster.ca.issue("example-node")  # type: ignore[union-attr]
    files = cluster.client_tls("example-node")
    runs: dict[str, list[dict]] = {"idle": [], "busy": []}
    with archive_apart(cluster):
        for round_ in range(rounds):
            for label in ("idle", "busy"):
                runs[label].append(
                    serve_once(cluster, files, workdir, label, backlog if label == "busy" else 0,
                               seconds, round_)
                )  # fmt: skip
    return {label: median_run(each) for label, each in runs.items()} | {
        "idle_all": [round(r["rps"]) for r in runs["idle"]],
        "busy_all": [round(r["rps"]) for r in runs["busy"]],
    }


@contextlib.contextmanager
def archive_apart(cluster: NatsCluster) -> Iterator[None]:
    """The cluster on every core but the first, the node and wrk (children of
    this process) on the first: in a fleet the archive runs elsewhere, so the
    servers' own work (TLS, replication, disk) must not be counted against the
    node. Nothing changes on a single core."""
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        yield
        return
    node_cpu = min(cpus)
    archive_cpus = ",".join(str(c) for c in sorted(cpus - {node_cpu}))
    everywhere = ",".join(str(c) for c in sorted(cpus))

    def pin_cluster(to: str) -> None:
        for proc in cluster.procs:
            if proc is not None and proc.poll() is None:
                subprocess.run(["taskset", "-a", "-p", "-c", to, str(proc.pid)],
                               stdout=subprocess.DEVNULL, check=True)  # fmt: skip

    pin_cluster(archive_cpus)
    os.sched_setaffinity(0, {node_cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)
        pin_cluster(everywhere)


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


def serve_once(
    cluster: NatsCluster,
    files: dict,
    workdir: Path,
    label: str,
    segments: int,
    seconds: int,
    round_: int,
) -> dict:
    state = workdir / f"serve-{label}-{round_}"
    if segments:  # a backlog the uplink sends flat out while wrk runs
        store_dir = state / "vedette" / "example" / "store"
        store_dir.parent.mkdir(parents=True, exist_ok=True)
        with SegmentStore.open(store_dir, 16 << 30, "example-node") as store:
            fill(store, segments)
    env = {
        **os.environ, **UNLIMITED, "VEDETTE_EXAMPLE_TOKEN": TOKEN, "XDG_STATE_HOME": str(state),
        "VEDETTE_ARCHIVE_SERVERS": ",".join(cluster.urls), "VEDETTE_ARCHIVE_STREAM": "SERVE",
        "VEDETTE_ARCHIVE_SUBJECT_PREFIX": f"bench.serve.{label}{round_}",
        "VEDETTE_ARCHIVE_CA": str(files["ca"]), "VEDETTE_ARCHIVE_CERT": str(files["cert"]),
        "VEDETTE_ARCHIVE_KEY": str(files["key"]), "VEDETTE_ARCHIVE_REPLICAS": "3",
    }  # fmt: skip
    # A stream per run: each one's subjects are its own.
    env["VEDETTE_ARCHIVE_STREAM"] = f"SERVE{label.upper()}{round_}"
    port = free_port()
    command = [str(Path(sys.executable).with_name("vedette")), "serve", "--example"]
    node = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, node)
        time.sleep(2 if segments else 0)  # the uplink connects and starts sending
        run = wrk(url, seconds)
        if run["non_2xx"]:
            raise RuntimeError(f"{label}: {run['non_2xx']} answers were not 2xx")
        import httpx

        # Status is the operator's: read it on the node's operator socket.
        operator_socket = state / "vedette" / "example" / "operator.sock"
        transport = httpx.HTTPTransport(uds=str(operator_socket))
        with httpx.Client(transport=transport, timeout=10) as operator:
            archive = operator.get("http://node/v1/status").json().get("archive", {})
        run["backlog_left"] = archive.get("backlog_segments", -1)
        return run
    finally:
        node.terminate()
        node.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs; do not write RESULTS.md")
    args = parser.parse_args()
    facts = machine()
    print(facts)
    segments = 16 if args.quick else 128
    workdir = Path(tempfile.mkdtemp(prefix="vedette-bench-archive-"))
    cluster = NatsCluster(workdir / "nats", max_payload_mb=8)
    try:
        cluster.start_all()
        asyncio.run(make_streams(cluster))
        rounds = 1 if args.quick else 5
        raws, ups = [], []
        for round_ in range(rounds):  # each pair back to back; medians are reported
            # The streams start each round empty, so the servers' disks hold the
            # same amount in every round (verify reads the last round's).
            asyncio.run(purge_streams(cluster))
            raws.append(asyncio.run(raw_publish(cluster, workdir, segments, round_)))
            ups.append(uplink_run(cluster, workdir, segments, round_))
        raw = sorted(raws, key=lambda r: r["mib_s"])[rounds // 2]
        up = sorted(ups, key=lambda r: r["mib_s"])[rounds // 2]
        paired = sorted(u["mib_s"] / r["mib_s"] for u, r in zip(ups, raws, strict=True))
        print("raw", raws, "uplink", ups)
        verify = asyncio.run(verify_run(cluster))
        print("verify", verify)
        serve = tool_throughput(
            cluster, workdir, 64 if args.quick else 512, 3 if args.quick else 8, rounds
        )
        print("serve", serve)
    finally:
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)
    verdict = lambda met: "met" if met else "NOT met"  # noqa: E731
    # The ratio of each back-to-back pair, then their median: the disk and
    # the servers drift between rounds far more than within one pair.
    uplink_ratio = paired[len(paired) // 2]
    serve_ratio = serve["busy"]["rps"] / serve["idle"]["rps"]
    e2e_ratio = verify["end_to_end_mib_s"] / verify["blake3_mib_s"]
    check_ratio = verify["check_mib_s"] / verify["blake3_mib_s"]
    e2e_read_ratio = verify["end_to_end_mib_s"] / verify["raw_read_mib_s"]
    body = f"""## Archive: uplink, serving while it runs, verify

Machine: {facts}.
Command: `python bench/compare_archive.py`. A three-server NATS JetStream cluster
on loopback (`nats-server`, TLS with client certificates, stream replicas 3,
max_payload 8 MB), {segments} sealed segments of about 1 MiB.

| publishing {segments} × 1 MiB, window {IN_FLIGHT}, from connecting to the last \
acknowledgement | MiB/s |
|---|---|
| anchor: raw `nats-py` JetStream publishes of the same bytes | {raw["mib_s"]:.1f} |
| vedette uplink: read from the store, origin-signed, acknowledged in the store | \
{up["mib_s"]:.1f} |
| ratio: median of the {rounds} back-to-back pairs' ratios (goal ≥ 0.8×) | \
{uplink_ratio:.2f}× — {verdict(uplink_ratio >= 0.8)} |

| POST /v1/tool, wrk 64 connections, `vedette serve --example` with `[archive]`; \
the node and wrk on one core, the cluster on the other | requests/s | p99 |
|---|---|---|
| uplink idle | {serve["idle"]["rps"]:.0f} | {serve["idle"]["p99_ms"]:.1f} ms |
| uplink sending a backlog flat out (at its default 8 MiB/s limit) | {serve["busy"]["rps"]:.0f} | \
{serve["busy"]["p99_ms"]:.1f} ms |
| ratio (goal ≥ 0.9×) | {serve_ratio:.2f}× — {verdict(serve_ratio >= 0.9)} | |

Each pair ran {rounds} times, alternating; medians above (uplink MiB/s
{[round(u["mib_s"], 1) for u in ups]} against raw {[round(r["mib_s"], 1) for r in raws]},
pair ratios {[round(u["mib_s"] / r["mib_s"], 2) for u, r in zip(ups, raws, strict=True)]};
requests/s idle {serve["idle_all"]}, busy {serve["busy_all"]}).
Segments still waiting in the busy run's backlog when wrk stopped:
{serve["busy"]["backlog_left"]} (the uplink was still sending throughout).

| verifying {verify["segments"]} segments ({verify["bytes"] / (1 << 20):.0f} MiB, \\
{verify["signed"]} origin-signed) | MiB/s |
|---|---|
| anchor: BLAKE3 of the same bytes in memory | {verify["blake3_mib_s"]:.0f} |
| a plain `nats-py` read of the same stream (no checks): the reading limit here | \\
{verify["raw_read_mib_s"]:.0f} |
| `archive verify`: read the stream back over TLS, checking as it reads | \\
{verify["end_to_end_mib_s"]:.0f} ({e2e_ratio:.2f}×) |
| the checks alone (ids, chains, signatures) over segments already read | \\
{verify["check_mib_s"]:.0f} ({check_ratio:.2f}×) |
| goal ≥ 0.5× | end to end {verdict(e2e_ratio >= 0.5)}; checks {verdict(check_ratio >= 0.5)} | |

Beyond the anchor's work, the uplink reads each segment back from the store
and checks it against its id before sending it, signs it, and makes the
stream's acknowledgement durable in the store's catalog before the segment
may be evicted (acknowledgements that arrive together share one sync).
`archive verify` hashes and parses segments on worker threads while it reads
the next ones, so end to end it runs at {e2e_read_ratio:.2f}× the plain read
of the same stream: reading is bound by the `nats-py` client and the three
servers on the same two cores, which here reach \
{verify["raw_read_mib_s"] / verify["blake3_mib_s"]:.2f}× BLAKE3 with no checks at all.
"""
    print(body)
    if not args.quick:
        write_section("archive", body)


if __name__ == "__main__":
    main()
