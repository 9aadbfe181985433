"""Durable appends: ``SegmentStore.append`` with ``durability="durable"``.

Each append returns once its record is on stable storage; concurrent writers
share one write and one ``fdatasync`` (group commit), so 16 writers show what
the device's storage does with batches and 1 writer what one sync costs.
"""

from __future__ import annotations

import os
import threading
import time

from vedette.benchmark.common import BenchError, Metric, Scratch
from vedette.errors import StoreError, StoreFullError
from vedette.store import SegmentStore

RECORD_BYTES = 512
CEILING_BYTES = 4 << 30


def measure(scratch: Scratch, seconds: float, writers: int) -> Metric:
    record = os.urandom(RECORD_BYTES)
    path = scratch.path(f"store-{writers}")
    try:
        store = SegmentStore.open(
            path, ceiling_bytes=CEILING_BYTES, node_id="bench", durability="durable"
        )
    except StoreError as err:
        raise BenchError(f"durable appends: cannot open a store in {path}: {err}") from err
    counts: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    start_line = threading.Barrier(writers + 1)
    deadline = [0.0]

    def work() -> None:
        done = 0
        try:
            start_line.wait()
            while not stop.is_set() and (done == 0 or time.perf_counter() < deadline[0]):
                store.append(record)
                done += 1
        except StoreFullError:
            pass  # the ceiling: what was appended until then still counts
        except BaseException as err:
            with lock:
                failures.append(str(err) or type(err).__name__)
        with lock:
            counts.append(done)

    try:
        store.append(record)  # warm: the open segment exists
        workers = [threading.Thread(target=work, daemon=True) for _ in range(writers)]
        for worker in workers:
            worker.start()
        deadline[0] = time.perf_counter() + seconds
        began = time.perf_counter()
        start_line.wait()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - began
    finally:
        stop.set()
        start_line.abort()
        store.close()
    if failures:
        raise BenchError(f"durable appends: {failures[0]}")
    total = sum(counts)
    plural = "writer" if writers == 1 else "writers"
    return Metric(f"store.w{writers}.appends_s", f"durable appends, {writers} {plural}",
                  total / elapsed, "appends/s", "higher",
                  f"{total} records of {RECORD_BYTES} B")  # fmt: skip
