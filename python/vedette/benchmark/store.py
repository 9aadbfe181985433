"""Durable appends: ``SegmentStore.append`` with ``durability="durable"``.

Each append returns once its record is on stable storage; concurrent writers
share one write and one ``fdatasync`` (group commit), so 16 writers show what
the device's storage does with batches and 1 writer what one sync costs.
"""

from __future__ import annotations

import os

from vedette.benchmark.common import BenchError, Metric, Scratch, StopWorker, timed_threads
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

    def append() -> None:
        try:
            store.append(record)
        except StoreFullError:
            raise StopWorker from None  # the ceiling: what was appended until then counts

    try:
        store.append(record)  # warm: the open segment exists
        durations, elapsed = timed_threads(writers, seconds, append)
    except BenchError as err:
        raise BenchError(f"durable appends: {err}") from None
    finally:
        store.close()
    total = len(durations)
    plural = "writer" if writers == 1 else "writers"
    return Metric(f"store.w{writers}.appends_s", f"durable appends, {writers} {plural}",
                  total / elapsed, "appends/s", "higher",
                  f"{total} records of {RECORD_BYTES} B")  # fmt: skip
