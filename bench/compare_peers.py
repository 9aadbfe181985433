"""Peer transport against Python's ``ssl`` with asyncio streams, side by side in one run.

    python bench/compare_peers.py [--segments 256] [--rounds 3] [--handshakes 300]
                                  [--idle 200] [--replication-only] [--write]

1. Replication throughput: ``--segments`` sealed segments of 1 MiB replicated
   from node a to a fresh node b over loopback mutual TLS (verified, imported
   and fsynced into b's store in batches, acknowledged), against an asyncio ``ssl``
   server (in its own process) sending the same bytes, length-prefixed, to an
   asyncio ``ssl`` client that only reads them (and, second anchor, one that
   also writes and fsyncs each to a file as the store does).
2. Full mutual-TLS handshakes per second, one after another: rustls
   (``PeerService.probe`` against a vedette listener) against Python ``ssl``
   (a blocking client against the asyncio server). Same certificates (P-256).
3. Memory per idle peer connection: resident memory of a listener process
   before and after ``--idle`` authenticated, idle connections.

Both sides of every comparison run in the same run, interleaved by round;
``--write`` puts the results into bench/RESULTS.md under "peers".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from peer_pki import OpensslCa
from report import machine, write_section

from vedette.peers.service import PeerService
from vedette.store import SegmentStore

MIB = 1 << 20
NOTE = """The replication goal (≥ 3× the bytes-only anchor) is not met on this
machine. vedette's figure stays end to end: the sender reads each segment
back and checks its BLAKE3 id before sending it; the receiver checks the id,
every record checksum and the chain as the segment arrives, writes it (the
block-aligned part with O_DIRECT), fdatasyncs it, renames it and fsyncs the
directory, and only then ACKs it. Segments that arrive while one batch is
being flushed are imported together as the next batch (files written and
synced side by side, one directory fsync per batch); the sender reads the
next segment while the current one is on the wire; quotas are charged in
chunks of up to 256 KiB. Where the time went in a traced run on this machine
(256 × 1 MiB): importing cost 1.4–2.7 ms a segment (less in bigger batches)
and is the bound; checking a segment as it arrives took 0.35–0.45 ms. A test
build that skipped the disk write moved 570–710 MB/s against 670–760 MB/s
for the bytes-only anchor in the same run: both nodes share the 2 cores, and
TLS both ways plus two BLAKE3 passes already fill them. Writing a MiB into
fresh page-cache pages costs about 3 ms on this virtual machine (0.1 ms into
cached pages), which is why imports bypass the cache. Reaching 3× would take
cores of its own for each node and a disk that syncs well above 1 GB/s; the
anchor that also writes and fsyncs each segment is the like-for-like
comparison. Rounds vary with the load of the shared machine (load average
above); the per-round figures are listed. Handshakes: rustls on ring against
CPython's OpenSSL, both with ECDSA P-256 certificates and CRL checking on the
vedette side; the Python client's own cost is part of the anchor's figure.
Idle memory includes a 16 KiB socket read buffer per connection under TLS
(44.6 KiB per connection before it); the figure moves between runs with the
allocator (57 and 104 KiB in two runs of the same build).
Before batched imports (64 segments, one fsync'd import at a time) vedette
moved 293 MB/s against 464 MB/s for the bytes-only anchor, 0.63×."""
FAST = {
    "rate_in": 4e9,
    "burst_in": 256.0 * MIB,
    "rate_out": 4e9,
    "burst_out": 256.0 * MIB,
    "sync_interval_s": 0.05,
    "max_connections": 1024,
    "max_pending": 1024,
    "idle_timeout_s": 600.0,
    "retry_base_s": 0.01,
    "retry_cap_s": 0.05,
    "retry_budget": 1000,
}


def server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    return ctx


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# -- child processes -----------------------------------------------------------


def child_anchor(pki: Path, segments_dir: Path | None) -> None:
    """asyncio ssl server: on any request line, sends every segment file, length-prefixed."""
    blobs = [p.read_bytes() for p in sorted(segments_dir.iterdir())] if segments_dir else []
    ctx = server_context(pki / "ca.crt", pki / "a.crt", pki / "a.key")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():
                for blob in blobs:
                    writer.write(struct.pack("<I", len(blob)))
                    writer.write(blob)
                    await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)

    asyncio.run(main())


def child_vedette(pki: Path, store_dir: Path) -> None:
    """A vedette listener (node a) on its own store; exits on a line on stdin."""
    store = SegmentStore.open(store_dir, 64 * MIB, "a")
    ca = pki
    service = PeerService(
        store, ca=ca / "ca.crt", cert=ca / "a.crt", key=ca / "a.key", crl=[ca / "crl.pem"], **FAST
    )
    print(service.listen("127.0.0.1:0").rsplit(":", 1)[1], flush=True)
    sys.stdin.readline()
    service.stop()
    store.close()


def spawn(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


def finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(60)


# -- 1. throughput --------------------------------------------------------------


def fill_segments(store: SegmentStore, count: int) -> int:
    payload = os.urandom(MIB - 4096)
    for i in range(count):
        store.append(payload[:-8] + struct.pack("<Q", i))
        store.seal()
    return sum(s.size for s in store.segments() if s.sealed)


def vedette_replication(
    source: PeerService, addr: str, ca: OpensslCa, work: Path, count: int
) -> float:
    shutil.rmtree(work, ignore_errors=True)
    sb = SegmentStore.open(work, 2048 * MIB, "b", segment_max_bytes=2 * MIB)
    b = PeerService(sb, **ca.files("b"), **FAST)  # type: ignore[arg-type]
    start = time.perf_counter()
    b.dial(addr)
    while sb.chain_heads().get("a", (-1, ""))[0] < count - 1:
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    b.stop()
    sb.close()
    shutil.rmtree(work, ignore_errors=True)
    return elapsed


async def _anchor_fetch(port: int, ctx: ssl.SSLContext, count: int, sink: Path | None) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(b"all\n")
    await writer.drain()
    total = 0
    for i in range(count):
        (n,) = struct.unpack("<I", await reader.readexactly(4))
        blob = await reader.readexactly(n)
        total += n
        if sink is not None:
            path = sink / f"{i}.seg"
            with open(path, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
    writer.close()
    return total


def anchor_replication(port: int, ctx: ssl.SSLContext, count: int, sink: Path | None) -> float:
    if sink is not None:
        shutil.rmtree(sink, ignore_errors=True)
        sink.mkdir()
    start = time.perf_counter()
    asyncio.run(_anchor_fetch(port, ctx, count, sink))
    return time.perf_counter() - start


# -- 2. handshakes ----------------------------------------------------------------


def anchor_handshakes(port: int, ctx: ssl.SSLContext, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port))
        tls = ctx.wrap_socket(raw)
        tls.close()
    return time.perf_counter() - start


# -- 3. memory ----------------------------------------------------------------------


def idle_memory(proc: subprocess.Popen[str], port: int, ctx: ssl.SSLContext, k: int) -> float:
    """Bytes of resident memory per idle, authenticated connection held by ``proc``."""
    hello = struct.pack("<I", 13) + bytes([1]) + struct.pack("<HQH", 1, 0, 0)
    time.sleep(0.5)
    before = rss_bytes(proc.pid)
    held = []
    for _ in range(k):
        tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
        tls.sendall(hello)
        held.append(tls)
    time.sleep(2.0)
    after = rss_bytes(proc.pid)
    for tls in held:
        tls.close()
    return (after - before) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument(
        "--replication-only",
        action="store_true",
        help="measure replication throughput only (not with --write)",
    )
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.replication_only and args.write:
        parser.error("--replication-only measures too little for --write")
    if args.child:
        kind, *rest = args.child
        if kind == "anchor":
            child_anchor(Path(rest[0]), Path(rest[1]) if len(rest) > 1 else None)
        else:
            child_vedette(Path(rest[0]), Path(rest[1]))
        return

    facts = machine()
    root = Path(tempfile.mkdtemp(prefix="vedette-bench-peers-"))
    try:
        ca = OpensslCa(root / "pki", "bench.example")
        for node in ("a", "b", "c"):
            ca.issue(node)
        sa = SegmentStore.open(root / "a", 2048 * MIB, "a", segment_max_bytes=2 * MIB)
        total = fill_segments(sa, args.segments)
        blobs = root / "blobs"
        blobs.mkdir()
        for s in sa.segments():
            if s.sealed and s.id:
                (blobs / f"{s.seq:06d}").write_bytes(sa.get_segment(s.id))
        a = PeerService(sa, **ca.files("a"), **FAST)  # type: ignore[arg-type]
        addr = a.listen("127.0.0.1:0")
        anchor, anchor_port = spawn("anchor", str(ca.dir), str(blobs))
        cctx = client_context(ca.ca, ca.dir / "b.crt", ca.dir / "b.key")

        v_times, plain_times, sync_times = [], [], []
        for r in range(args.rounds):
            v_times.append(vedette_replication(a, addr, ca, root / f"b{r}", args.segments))
            plain_times.append(anchor_replication(anchor_port, cctx, args.segments, None))
            sync_times.append(anchor_replication(anchor_port, cctx, args.segments, root / "sink"))
        v, plain, synced = (statistics.median(t) for t in (v_times, plain_times, sync_times))
        if args.replication_only:
            mb = total / 1e6
            a.stop()
            finish(anchor)
            sa.close()
            print(
                f"replicate {args.segments} × 1 MiB: vedette "
                f"{', '.join(f'{mb / t:.0f}' for t in v_times)} MB/s; anchor "
                f"{', '.join(f'{mb / t:.0f}' for t in plain_times)} MB/s (read only), "
                f"{', '.join(f'{mb / t:.0f}' for t in sync_times)} MB/s (fsync); "
                f"median ratios {plain / v:.2f}× (read only), {synced / v:.2f}× (fsync)"
            )
            return

        c_store = SegmentStore.open(root / "c", 64 * MIB, "c")
        c = PeerService(c_store, **ca.files("c"), **FAST)  # type: ignore[arg-type]
        hs_v, hs_a = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            c.probe(addr, args.handshakes)
            hs_v.append(args.handshakes / (time.perf_counter() - start))
            hs_a.append(args.handshakes / anchor_handshakes(anchor_port, cctx, args.handshakes))
        c.stop()
        c_store.close()
        a.stop()
        finish(anchor)

        listener, port = spawn("vedette", str(ca.dir), str(root / "listener"))
        mem_v = idle_memory(listener, port, cctx, args.idle)
        finish(listener)
        anchor, anchor_port = spawn("anchor", str(ca.dir))
        mem_a = idle_memory(anchor, anchor_port, cctx, args.idle)
        finish(anchor)
        sa.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    mb = total / 1e6
    hv, ha = statistics.median(hs_v), statistics.median(hs_a)
    rows = [
        (
            f"replicate {args.segments} × 1 MiB segments",
            "asyncio ssl, bytes read only",
            f"{mb / plain:.0f} MB/s",
            f"{mb / v:.0f} MB/s",
            plain / v,
            "≥ 3×",
        ),
        (
            f"replicate {args.segments} × 1 MiB segments",
            "asyncio ssl, each written and fsynced",
            f"{mb / synced:.0f} MB/s",
            f"{mb / v:.0f} MB/s",
            synced / v,
            "—",
        ),
        (
            "full mTLS handshakes, sequential",
            "Python ssl client → asyncio ssl server",
            f"{ha:.0f}/s",
            f"{hv:.0f}/s",
            hv / ha,
            "≥ 1.5×",
        ),
        (
            f"memory per idle peer connection ({args.idle} held)",
            "asyncio ssl server",
            f"{mem_a / 1024:.1f} KiB",
            f"{mem_v / 1024:.1f} KiB",
            mem_a / mem_v if mem_v > 0 else float("nan"),
            "report",
        ),
    ]
    lines = [
        "## peers",
        "",
        "`python bench/compare_peers.py --write` (release build). Ratio above 1 means",
        "vedette is faster (or, for memory, smaller). vedette's replication is end to",
        "end: each segment verified (BLAKE3 id, chain), written and fsynced by b's",
        "store, and acknowledged; the first anchor only moves the bytes.",
        "",
        f"Machine: {facts}.",
        "",
        "| benchmark | anchor | anchor | vedette | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for name, anchor_name, a_text, v_text, ratio, goal in rows:
        lines.append(f"| {name} | {anchor_name} | {a_text} | {v_text} | {ratio:.2f}× | {goal} |")
    lines.append("")
    lines.append(
        f"Per round: vedette {', '.join(f'{mb / t:.0f}' for t in v_times)} MB/s; "
        f"anchor {', '.join(f'{mb / t:.0f}' for t in plain_times)} MB/s (read only), "
        f"{', '.join(f'{mb / t:.0f}' for t in sync_times)} MB/s (fsync); handshakes/s "
        f"vedette {', '.join(f'{h:.0f}' for h in hs_v)}, anchor "
        f"{', '.join(f'{h:.0f}' for h in hs_a)}."
    )
    lines += ["", NOTE]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("peers", text)


if __name__ == "__main__":
    main()
