"""Side-by-side: vedette's hashing and token buckets against their anchors.

Anchors: the `blake3` package, `hashlib`, and a pure-Python lock-based token
bucket. Run with the bench extra installed:

    python bench/compare_foundation.py            # prints and updates bench/RESULTS.md
    python bench/compare_foundation.py --quick    # fewer rounds, no file written
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import blake3 as blake3_package
from report import Comparison, compare, comparison_table, format_seconds, machine, write_section

from vedette import hashing, quota

SIZES = [("64 B", 64), ("4 KiB", 4 << 10), ("1 MiB", 1 << 20), ("64 MiB", 64 << 20)]
FILE_SIZE = 256 << 20


class LockedTokenBucket:
    """The usual pure-Python token bucket: a lock, a float level, time.monotonic()."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def try_take(self, n: float = 1) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
            self.updated = now
            if self.tokens >= n:
                self.tokens -= n
                return True
            return False


def hashing_rows(rounds: int) -> list[Comparison]:
    rows = []
    for label, size in SIZES:
        data = os.urandom(size)
        assert hashing.blake3(data).raw == blake3_package.blake3(data).digest()
        assert hashing.sha256(data).raw == hashlib.sha256(data).digest()
        rows.append(
            compare(
                f"BLAKE3 one-shot {label}",
                "blake3 package (1 thread)",
                lambda data=data: blake3_package.blake3(data).digest(),
                lambda data=data: hashing.blake3(data),
                goal=1.0,
                rounds=rounds,
            )
        )
        rows.append(
            compare(
                f"SHA-256 one-shot {label}",
                "hashlib.sha256",
                lambda data=data: hashlib.sha256(data).digest(),
                lambda data=data: hashing.sha256(data),
                goal=1.0 if size >= 4096 else None,
                rounds=rounds,
            )
        )
    return rows


def file_rows(rounds: int) -> list[Comparison]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data"
        with path.open("wb") as out:
            for _ in range(FILE_SIZE >> 20):
                out.write(os.urandom(1 << 20))
        auto = blake3_package.blake3.AUTO

        def anchor() -> bytes:
            return blake3_package.blake3(max_threads=auto).update_mmap(path).digest()

        def ours() -> hashing.Digest:
            return hashing.hash_file(path)

        assert anchor() == ours().raw
        return [
            compare(
                "hash_file 256 MiB, BLAKE3, all threads",
                "blake3 package update_mmap, max_threads=AUTO",
                anchor,
                ours,
                goal=1.0,
                rounds=rounds,
                min_time=0.3,
            )
        ]


def bucket_rows(rounds: int) -> tuple[list[Comparison], float]:
    # Rates so high that every take succeeds: the path a permitted call takes.
    ours = quota.TokenBucket(1e12, 1e9)
    theirs = LockedTokenBucket(1e12, 1e9)
    row = compare(
        "TokenBucket.try_take()",
        "pure-Python locked bucket",
        theirs.try_take,
        ours.try_take,
        goal=10.0,
        rounds=rounds,
        min_time=0.2,
    )
    return [row], row.vedette_s


def import_time_ms(module: str, runs: int = 9) -> float:
    """Median self-reported cumulative import time of ``module``, in a fresh interpreter."""
    times = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        for line in result.stderr.splitlines():
            fields = [field.strip() for field in line.split("|")]
            if len(fields) == 3 and fields[2] == module:
                times.append(int(fields[1]) / 1000)
    return statistics.median(times)


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds; do not write RESULTS.md")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    facts = machine()
    print(facts)
    rows = hashing_rows(rounds) + file_rows(rounds)
    bucket, try_take_s = bucket_rows(rounds)
    rows += bucket
    import_ms = import_time_ms("vedette")
    table = comparison_table(rows)
    try_take_ns = try_take_s * 1e9
    body = f"""## Foundation: hashing and token buckets

Machine: {facts}.
Command: `python bench/compare_foundation.py` ({rounds} interleaved rounds; median per-call time).

{table}

| absolute goal | measured | goal | |
|---|---|---|---|
| `TokenBucket.try_take()` per call | {try_take_ns:.0f} ns | ≤ 150 ns \
| {verdict(try_take_ns <= 150)} |
| `import vedette` (`-X importtime`, cumulative, median of 9) | {import_ms:.1f} ms | ≤ 50 ms \
| {verdict(import_ms <= 50)} |

The ratio is anchor time over vedette time from the median per-call times;
the per-round range shows how much it moved between rounds of this run.
Where vedette and the anchor run the same SIMD or SHA-NI code (BLAKE3 and
SHA-256 from 1 MiB up, the threaded file hash) the ratio sits at 1.0 within
that band: there is no call overhead left to win at those sizes.
SHA-256 at 64 B has no goal (the issue sets one from 4 KiB up); it is reported
for completeness. Times for 64 MiB one-shot hashes and the 256 MiB file include
no disk I/O: the data is in memory or the page cache.
"""
    print(table)
    print(f"try_take: {format_seconds(try_take_s)}; import vedette: {import_ms:.1f} ms")
    if not args.quick:
        write_section("foundation", body)


if __name__ == "__main__":
    main()
