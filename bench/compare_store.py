"""Segment store against SQLite (WAL, synchronous=FULL), side by side in one run.

    python bench/compare_store.py [--seconds 3] [--gib 1.0] [--dir DIR]

Reports durable appends/s of 256-byte records with 1 and 16 writer threads
(SQLite: one transaction per record per writer, a connection per thread),
append_many in interval mode from one thread, open + recovery time of a large
store, and bytes written to disk per payload byte. Ratios are vedette/SQLite
measured in the same run on the same directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vedette.store import SegmentStore

RECORD = b"r" * 256


def _write_bytes() -> int:
    """Bytes this process caused to be sent to the storage layer (/proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def run_threads(threads: int, seconds: float, work: Callable[[int, threading.Event], int]) -> float:
    """Run ``work(thread_index, stop)`` on ``threads`` threads for ``seconds``; ops/s."""
    stop = threading.Event()
    counts = [0] * threads

    def body(i: int) -> None:
        counts[i] = work(i, stop)

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def vedette_appends(base: Path, threads: int, seconds: float) -> float:
    path = base / f"vedette-{threads}"
    with SegmentStore.open(path, ceiling_bytes=4 << 30, node_id="bench") as store:

        def work(_i: int, stop: threading.Event) -> int:
            n = 0
            while not stop.is_set():
                store.append(RECORD)
                n += 1
            return n

        rate = run_threads(threads, seconds, work)
        stats = store.commit_stats()
    shutil.rmtree(path)
    print(f"  vedette, {threads} writer(s): {stats.records_per_sync:.1f} records per fdatasync")
    return rate


def sqlite_appends(base: Path, threads: int, seconds: float) -> float:
    path = base / f"sqlite-{threads}.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    setup.close()

    def work(_i: int, stop: threading.Event) -> int:
        db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=FULL")
        n = 0
        while not stop.is_set():
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO records (body) VALUES (?)", (RECORD,))
            db.execute("COMMIT")
            n += 1
        db.close()
        return n

    rate = run_threads(threads, seconds, work)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return rate


def interval_append_many(base: Path, total: int) -> float:
    path = base / "vedette-interval"
    batch = [RECORD] * 10_000
    with SegmentStore.open(
        path, ceiling_bytes=8 << 30, node_id="bench", durability="interval"
    ) as store:
        start = time.perf_counter()
        for _ in range(total // len(batch)):
            store.append_many(batch)
        store.flush()
        elapsed = time.perf_counter() - start
    shutil.rmtree(path)
    return total / elapsed


def write_amplification(
    base: Path, records: int, batch: int, durability: str
) -> tuple[float, float]:
    """(file bytes / payload bytes, kernel write_bytes / payload bytes) for appends
    in commits of ``batch`` records (what ``batch`` concurrent writers would share)."""
    path = base / f"vedette-amp-{batch}-{durability}"
    before = _write_bytes()
    with SegmentStore.open(
        path, ceiling_bytes=8 << 30, node_id="bench", durability=durability
    ) as store:
        for _ in range(records // batch):
            store.append_many([RECORD] * batch)
        store.seal()
    os.sync()
    written = _write_bytes() - before
    on_disk = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    payload = records * len(RECORD)
    shutil.rmtree(path)
    return on_disk / payload, written / payload


def open_recovery(base: Path, gib: float) -> tuple[float, float, int]:
    """Seconds to open a store of ``gib`` GiB (page cache warm) and (cold is not
    measured: dropping caches needs the whole machine); returns (first, second, bytes)."""
    path = base / "vedette-large"
    target = int(gib * (1 << 30))
    batch = [RECORD] * 10_000
    with SegmentStore.open(
        path, ceiling_bytes=target + (256 << 20), node_id="bench", durability="interval"
    ) as store:
        while store.usage().bytes_used < target:
            store.append_many(batch)
        store.flush()
        size = store.usage().bytes_used
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        store = SegmentStore.open(path)
        timings.append(time.perf_counter() - start)
        store.close()
    shutil.rmtree(path)
    return timings[0], timings[1], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--interval-records", type=int, default=2_000_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="vedette-bench-", dir=args.dir))
    base.chmod(0o700)
    try:
        print(f"directory: {base}")
        for threads in (1, 16):
            v = vedette_appends(base, threads, args.seconds)
            s = sqlite_appends(base, threads, args.seconds)
            print(
                f"durable appends/s, {threads:2d} writer(s): vedette {v:10.0f}  "
                f"sqlite WAL FULL {s:10.0f}  ratio {v / s:6.2f}x"
            )
        rate = interval_append_many(base, args.interval_records)
        print(f"append_many, interval mode, 1 thread: {rate:,.0f} records/s")
        for records, batch, durability in (
            (5_000, 1, "durable"),
            (200_000, 100, "durable"),
            (400_000, 1000, "durable"),
            (400_000, 10_000, "interval"),
        ):
            file_ratio, kernel_ratio = write_amplification(base, records, batch, durability)
            print(
                f"bytes per payload byte, 256 B records, {batch:5d} per commit ({durability}): "
                f"file {file_ratio:.3f}, kernel write_bytes {kernel_ratio:.3f}"
            )
        first, second, size = open_recovery(base, args.gib)
        print(f"open + recovery of {size / (1 << 30):.2f} GiB: {first:.3f} s, again {second:.3f} s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
