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
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from vedette._core import DurableQueue
from vedette.runtime.encoding import dumps
from vedette.store import SegmentStore

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
        return dumps(record)

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
        return dumps(record)


class EvidenceQueue:
    """Makes records durable for event loops without blocking them.

    Each event loop gets its own :class:`vedette._core.DurableQueue`: records
    are submitted without waiting, a Rust writer thread makes every record
    waiting durable together (one write, one fdatasync), and reports the
    finished tickets through an eventfd the loop watches. No Python thread is
    involved, so the loop never waits for the interpreter lock on their
    account, and batches grow with the number of calls waiting.
    """

    def __init__(self, store: SegmentStore) -> None:
        self._store = store
        self._channels: dict[asyncio.AbstractEventLoop, _LoopChannel] = {}
        self._lock = threading.Lock()

    def append(self, record: bytes) -> asyncio.Future[None]:
        """A future done once ``record`` is durable, or failed with what the store
        raised. Must be called on a running event loop."""
        loop = asyncio.get_running_loop()
        channel = self._channels.get(loop)
        if channel is None:
            channel = self._open(loop)
        return channel.append(record)

    def flush(self) -> None:
        """Block until every record submitted so far is written (or failed)."""
        with self._lock:
            channels = list(self._channels.values())
        for channel in channels:
            channel.flush()

    def close(self) -> None:
        """Write what is queued, then stop every writer."""
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            channel.close()

    def _open(self, loop: asyncio.AbstractEventLoop) -> _LoopChannel:
        with self._lock:
            channel = self._channels.get(loop)
            if channel is None:
                channel = _LoopChannel(self._store.durable_queue(), loop)
                self._channels[loop] = channel
            return channel


class _LoopChannel:
    """One loop's queue: tickets it waits for and the futures that wait."""

    def __init__(self, queue: DurableQueue, loop: asyncio.AbstractEventLoop) -> None:
        self._queue = queue
        self._loop = loop
        self._waiting: dict[int, asyncio.Future[None]] = {}
        loop.add_reader(queue.fileno(), self._settle)

    def append(self, record: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        try:
            ticket = self._queue.submit(record)
        except Exception as err:  # queue closed or full: this record fails alone
            future.set_exception(err)
            return future
        self._waiting[ticket] = future
        return future

    def flush(self) -> None:
        self._queue.flush()

    def _settle(self) -> None:
        for first, last, error in self._queue.take_completed():
            for ticket in range(first, last + 1):
                future = self._waiting.pop(ticket, None)
                if future is None or future.done():
                    continue  # its caller was cancelled; the record is written all the same
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def close(self) -> None:
        # The loop may be stopped or closed already, and this may not be its
        # thread; the reader only needs to go if the loop lives on.
        if not self._loop.is_closed():
            if self._loop.is_running():
                self._loop.call_soon_threadsafe(self._detach)  # holds self (and the fd) till then
            else:
                self._detach()
        self._queue.close()

    def _detach(self) -> None:
        with contextlib.suppress(Exception):  # the loop closed meanwhile
            self._loop.remove_reader(self._queue.fileno())
