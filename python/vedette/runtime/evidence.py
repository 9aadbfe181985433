"""Evidence: records made durable for event loops.

The records themselves (one JSON document per decision, one per tool outcome,
field names after OPA's decision logs, masked argument values) are encoded in
the Rust core (``rust/gate/record.rs``): by :class:`vedette._core.Gate`, and
for release events by ``vedette._core.event_record``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from vedette._core import DurableQueue
from vedette.config import Config
from vedette.store import SegmentStore


def open_store(config: Config) -> SegmentStore:
    """The evidence store ``config`` names."""
    # The store makes its own folder (0700); the state folder above it is ours.
    config.store_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SegmentStore.open(
        config.store_dir,
        ceiling_bytes=config.store.ceiling_bytes,
        node_id=config.node_id,
        durability=config.store.durability,
        high_water=config.store.high_water,
    )


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

    def append(self, record: bytes, *, lazy: bool = False) -> asyncio.Future[None]:
        """A future done once ``record`` is durable, or failed with what the store
        raised. Must be called on a running event loop. A ``lazy`` record (one
        nobody waits for) is written with the next batch, or 10 ms later."""
        loop = asyncio.get_running_loop()
        channel = self._channels.get(loop)
        if channel is None:
            channel = self._open(loop)
        return channel.append(record, lazy)

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
        self._commit_scheduled = False
        loop.add_reader(queue.fileno(), self._settle)

    def append(self, record: bytes, lazy: bool) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        try:
            # Every record is queued lazily; those someone waits for are
            # committed once at the loop's next turn, together with all the
            # others of this turn: one wake-up of the writer, not one each.
            ticket = self._queue.submit_lazy(record)
        except Exception as err:  # queue closed or full: this record fails alone
            future.set_exception(err)
            return future
        self._waiting[ticket] = future
        if not lazy and not self._commit_scheduled:
            self._commit_scheduled = True
            self._loop.call_soon(self._commit)
        return future

    def _commit(self) -> None:
        self._commit_scheduled = False
        self._queue.commit()

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
