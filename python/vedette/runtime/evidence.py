"""Evidence records: one JSON document per decision, and one per tool outcome.

Field names follow OPA's decision logs (``decision_id``, ``timestamp``,
``input``, ``result``, ``bundles``-like release data) so existing decision-log
tooling can read them. Argument values named in ``mask_args`` are replaced by
``"***"`` at any depth before the record is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import os
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from vedette.errors import VedetteError, is_rust_panic

MASK = "***"
SCHEMA = "vedette.evidence/v1"


_second_cache: tuple[int, str] = (-1, "")


def timestamp(unix_ns: int) -> str:
    """RFC 3339 UTC with nanoseconds; the date-time part is formatted once a second."""
    global _second_cache
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    cached_second, prefix = _second_cache
    if cached_second != seconds:
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
        prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
        _second_cache = (seconds, prefix)
    return f"{prefix}.{nanos:09d}Z"


class DecisionIds:
    """Decision ids in UUID form: 64 random bits per process, then a counter.

    Unique across restarts (the random half) and within a process (the
    counter), at a fraction of the cost of ``uuid4()`` per call.
    """

    def __init__(self) -> None:
        self._prefix = int.from_bytes(os.urandom(8), "big")
        self._counter = itertools.count(1)

    def next(self) -> str:
        text = f"{self._prefix:016x}{next(self._counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def masked(value: Any, names: frozenset[str]) -> Any:
    if not names:
        return value
    if isinstance(value, dict):
        return {k: MASK if k in names else masked(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item, names) for item in value]
    return value


class EvidenceWriter:
    """Builds record bytes; the store makes them durable."""

    def __init__(self, node_id: str, mask_args: Iterable[str]) -> None:
        self._node_id = node_id
        self._mask = frozenset(mask_args)

    def decision(
        self,
        *,
        decision_id: str,
        outcome: str,
        reason: str | None,
        caller: str | None,
        agent: str | None,
        tool: str | None,
        args: Any,
        claims: Any,
        release: dict[str, Any] | None,
        result: Any,
        request_id: str | None,
    ) -> bytes:
        now = time.time_ns()
        record = {
            "schema": SCHEMA,
            "kind": "decision",
            "decision_id": decision_id,
            "timestamp": timestamp(now),
            "node": self._node_id,
            "caller": caller,
            "agent": agent,
            "tool": tool,
            "request_id": request_id,
            "input": {"args": masked(args, self._mask), "claims": masked(claims, self._mask)},
            "release": release,
            "result": result,
            "outcome": outcome,
            "reason": reason,
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()

    def tool_outcome(
        self,
        *,
        decision_id: str,
        tool: str,
        status: str,
        output_digest: str | None,
        output_bytes: int | None,
        error: dict[str, str] | None,
        duration_ms: float,
    ) -> bytes:
        record = {
            "schema": SCHEMA,
            "kind": "tool_outcome",
            "decision_id": decision_id,
            "timestamp": timestamp(time.time_ns()),
            "node": self._node_id,
            "tool": tool,
            "status": status,
            "output_digest": output_digest,
            "output_bytes": output_bytes,
            "error": error,
            "duration_ms": round(duration_ms, 3),
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


class RecordSink(Protocol):
    def append_many(self, records: list[bytes]) -> Any: ...


class StoreWriteFailed(VedetteError):
    """A batch of evidence could not be made durable; the message names the cause."""


# Largest batch written with one durable append (one write and one fdatasync).
MAX_BATCH = 1024


class EvidenceQueue:
    """Makes records durable for the event loop without a thread per waiting call.

    One writer thread takes every record queued since its last write and makes
    them durable together with ``append_many`` (one write, one fdatasync), then
    completes each caller's future on its own loop. Under load, batches grow
    with the number of calls waiting, so throughput scales with concurrency
    instead of being capped by a pool of threads each blocked in fdatasync.
    """

    def __init__(self, sink: RecordSink) -> None:
        self._sink = sink
        self._queue: queue.SimpleQueue[
            tuple[bytes, asyncio.Future[None], asyncio.AbstractEventLoop] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="vedette-evidence", daemon=True)
        self._thread.start()

    async def append(self, record: bytes) -> None:
        """Returns once ``record`` is durable; raises what the store raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((record, future, loop))
        await future

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    continue
                batch.append(item)
            if batch:
                self._write(batch)

    def _write(
        self, batch: list[tuple[bytes, asyncio.Future[None], asyncio.AbstractEventLoop]]
    ) -> None:
        error: BaseException | None = None
        try:
            self._sink.append_many([record for record, _, _ in batch])
        except BaseException as err:  # every waiter of this batch gets the store's error
            # Even a Rust panic must not stop this thread: waiters would hang.
            if isinstance(err, Exception):
                error = err
            elif is_rust_panic(err):
                error = StoreWriteFailed(f"the store panicked: {err}")
            else:
                raise
        # One wake-up per event loop, not one per record.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, future, loop in batch:
            by_loop.setdefault(loop, []).append(future)
        for loop, futures in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, futures, error)


def _settle_all(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
