"""The archive uplink: sealed segments published to a NATS JetStream stream.

:class:`ArchiveUplink` runs beside serving on its own thread and event loop
(it shares nothing with the decision path but the store, whose calls release
the GIL), and, while the node runs:

- every sealed segment the store holds that ``archive:<stream>`` has not
  acknowledged is read from the store and published, oldest first, as one
  message or in chunks (python/vedette/archive/wire.py), with ``Nats-Msg-Id``
  set so the stream keeps one copy however often it is sent;
- only once the stream has acknowledged every message of a segment (the
  publish acknowledgement: stored, and replicated when the stream has
  replicas) is the segment acknowledged in the store as ``archive:<stream>``,
  which makes it evictable under the ceiling like a peer's acknowledgement
  (acknowledgements that come together share one catalog sync: acks.py);
- publishing is paced to ``bytes_per_second`` by a token bucket, at most
  ``in_flight`` messages wait for their acknowledgement, and an unreachable
  archive is retried with full-jitter exponential backoff, at most
  ``retry_budget`` connection attempts per ``retry_window_s``;
- the store is the only state: after a restart the uplink starts again from
  what the store has not seen acknowledged.

Its state (connected, backlog, age of the last acknowledgement, last error)
is reported by :meth:`status`, :meth:`health` and Prometheus gauges
(docs/operations.md, "Fleet archive").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vedette.archive import wire
from vedette.archive.acks import AckBatcher
from vedette.archive.reader import connect_options
from vedette.backoff import RetrySchedule, full_jitter
from vedette.config import ArchiveConfig
from vedette.errors import SegmentNotFoundError, StoreError
from vedette.quota import TokenBucket
from vedette.runtime.health import Health
from vedette.store import SegmentInfo, SegmentStore

log = logging.getLogger("vedette.archive")

# How often the store is looked at for newly sealed segments when nothing wakes the uplink.
SCAN_S = 0.5
# Segments the stream holds whose acknowledgement waits for the store's sync;
# beyond this many no new segment is published until some are durable.
MAX_ACKING = 64
# How often the chain heads are compared, so that a segment sealed by size (in
# the core, on the write path) is on its way within this long: a small ceiling
# fills in well under a second at a high call rate.
SEAL_WATCH_S = 0.05
# The stream keeps message ids this long to drop duplicates (a restart, a retry).
DUPLICATE_WINDOW_S = 24 * 3600.0


class ArchiveUnavailable(RuntimeError):
    """The archive client is not installed (``pip install 'vedette[archive]'``)."""


def acknowledger(config: ArchiveConfig) -> str:
    """The name the archive acknowledges a segment under: ``archive:<stream>``."""
    return f"archive:{config.stream}"


class ArchiveUplink:
    def __init__(
        self,
        config: ArchiveConfig,
        store: SegmentStore,
        *,
        signatures: Callable[[SegmentInfo], bytes | None] | None = None,
    ) -> None:
        try:
            import nats  # noqa: F401
        except ImportError:
            raise ArchiveUnavailable(
                "the [archive] table needs the NATS client: pip install 'vedette[archive]'"
            ) from None
        self.config = config
        self.store = store
        # A segment's origin signature (python/vedette/origin.py): the runtime
        # signs its own unsigned segments here, before they leave.
        self._signatures = signatures or _stored_signature(store)
        self.by = acknowledger(config)
        self._files = [
            str(p) for p in (config.ca, config.cert, config.key, config.credentials) if p
        ]
        self._lock = threading.Lock()
        self._connected = False
        self._last_error: str | None = None
        self._last_error_unix: float | None = None
        self._last_ack_mono: float | None = None
        self._unreachable_since: float | None = time.monotonic()
        self._backlog_segments = 0
        self._backlog_bytes = 0
        # Segments acknowledged while a look at the store runs (on a worker
        # thread): that look may have read them as waiting.
        self._acked_while_listing: set[str] | None = None
        self._oldest_unarchived_ms: int | None = None
        self.published_bytes = 0
        self.published_messages = 0
        self.archived_segments = 0
        self.errors = 0
        self.max_payload: int | None = None
        # Dials are spaced by the same budget the peer transport keeps
        # (rust/peers/retry.rs); the waits after failures, which count publish
        # failures too, are full-jitter draws under the same ceiling.
        self._dials = RetrySchedule(
            config.retry_base_s, config.retry_cap_s, config.retry_budget, config.retry_window_s
        )
        self._acks = AckBatcher(lambda ids: self.store.ack_all(ids, self.by))
        # One second of pace as the burst: a link paced to 64 KiB/s must never
        # see megabytes at once. A message larger than that waits for a full
        # bucket (``_pace``).
        self._bucket = TokenBucket(config.bytes_per_second, config.bytes_per_second)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vedette-archive", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    # -- control --------------------------------------------------------------

    def wake(self) -> None:
        """Look at the store now (a segment was sealed)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stops publishing; a segment whose acknowledgement had not come stays
        unacknowledged and is sent again by the next start."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(grace_s + 5)

    # -- state ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            return {
                "stream": self.config.stream,
                "connected": self._connected,
                "backlog_segments": self._backlog_segments,
                "backlog_bytes": self._backlog_bytes,
                "oldest_unarchived_unix_ms": self._oldest_unarchived_ms,
                "last_ack_age_s": None
                if self._last_ack_mono is None
                else round(now - self._last_ack_mono, 3),
                "last_error": self._last_error,
                "archived_segments": self.archived_segments,
                "published_bytes": self.published_bytes,
                "published_messages": self.published_messages,
                "errors": self.errors,
                "max_payload": self.max_payload,
            }

    def health(self) -> Health:
        """Degraded while the archive cannot be reached and evidence waits for it."""
        with self._lock:
            connected, backlog, size = (
                self._connected,
                self._backlog_segments,
                self._backlog_bytes,
            )
            since, error = self._unreachable_since, self._last_error
        if connected or backlog == 0:
            return Health.ok()
        waited = 0.0 if since is None else time.monotonic() - since
        why = f" ({error})" if error else ""
        return Health(
            "degraded",
            (
                f"archive {self.config.stream} unreachable for {waited:.0f} s{why}; "
                f"{backlog} sealed segments ({size} bytes) not yet archived",
            ),
        )

    def collector(self) -> Collector:
        return _ArchiveMetrics(self)

    # -- the loop ---------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception:  # never leave the node without saying why
            log.exception("the archive uplink stopped")
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._ready.set()
        watcher = asyncio.create_task(self._watch_seals())
        try:
            await self._connect_and_serve()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch_seals(self) -> None:
        """Wakes the uplink when any origin's newest sealed segment changes."""
        assert self._stop is not None
        heads: dict[str, tuple[int, str]] | None = None
        while not self._stop.is_set():
            try:
                now: dict[str, tuple[int, str]] | None = await asyncio.to_thread(
                    self.store.chain_heads
                )
            except StoreError:
                now = heads  # a stopped store: the scan reports it
            if now != heads:
                heads = now
                self.wake()
            await asyncio.sleep(SEAL_WATCH_S)

    async def _connect_and_serve(self) -> None:
        assert self._stop is not None
        failures = 0
        while not self._stop.is_set():
            await self._sleep(self._dials.wait_s())
            if self._stop.is_set():
                return
            self._dials.attempt()
            try:
                nc = await self._connect()
            except Exception as err:
                self._error(err)
                failures += 1
                self._refresh_backlog()
                await self._sleep(self._backoff(failures))
                continue
            try:
                failures = await self._serve(nc)
            except Exception as err:
                self._error(err)
                failures += 1
            finally:
                self._set_connected(False)
                # A dead connection may not close cleanly.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nc.close(), 5)
            if not self._stop.is_set():
                await self._sleep(self._backoff(failures))

    async def _connect(self) -> Any:
        import nats

        options = connect_options(self.config)
        options.update(
            reconnect_time_wait=0.5,
            name=f"vedette-archive {self.store.node_id}",
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnect,
            reconnected_cb=self._on_reconnect,
        )
        nc = await nats.connect(**options)
        self.max_payload = int(nc.max_payload)
        self._set_connected(True)
        return nc

    async def _on_error(self, err: Exception) -> None:
        self._error(err, quiet=True)

    async def _on_disconnect(self) -> None:
        self._set_connected(False)

    async def _on_reconnect(self) -> None:
        self._set_connected(True)

    async def _serve(self, nc: Any) -> int:
        """Publishes the backlog on one connection until it is lost or the uplink
        stops; returns the failures in a row it ended with."""
        js = nc.jetstream(timeout=self.config.publish_timeout_s)
        await self._ensure_stream(js)
        window = asyncio.Semaphore(self.config.in_flight)
        # Segments being published, and segments the stream holds whose
        # acknowledgement is being made durable in the store: a publish slot is
        # free as soon as the stream has acknowledged, so a slow disk sync
        # never holds the link idle.
        running: dict[str, asyncio.Task[None]] = {}
        acking: dict[str, asyncio.Task[None]] = {}
        infos: dict[str, SegmentInfo] = {}
        failures = 0
        assert self._stop is not None
        assert self._wake is not None
        # Segments listed at the last look at the store and not started since.
        backlog: deque[SegmentInfo] = deque()
        scanned = 0.0
        while not self._stop.is_set():
            if nc.is_closed:
                raise ConnectionError("connection to the archive closed")
            # The store is listed again only when something new may be there (a
            # seal woke the uplink, a scan interval passed) or the last list is
            # used up: listing it after every segment would cost the interpreter
            # lock as much as publishing does.
            if self._wake.is_set() or not backlog or time.monotonic() - scanned >= SCAN_S:
                self._wake.clear()
                listed = await asyncio.to_thread(self._refresh_backlog)
                scanned = time.monotonic()
                backlog = deque(i for i in listed if i.id not in running and i.id not in acking)
            while backlog and len(running) < self.config.in_flight and len(acking) < MAX_ACKING:
                info = backlog.popleft()
                assert info.id is not None
                infos[info.id] = info
                running[info.id] = asyncio.create_task(self._upload(js, info, window))
            tasks = {*running.values(), *acking.values()}
            waiters: set[asyncio.Future[Any]] = set(tasks)
            waiters.add(asyncio.ensure_future(self._wake.wait()))
            waiters.add(asyncio.ensure_future(self._stop.wait()))
            _done, _ = await asyncio.wait(
                waiters, timeout=SCAN_S, return_when=asyncio.FIRST_COMPLETED
            )
            for extra in waiters - tasks:
                extra.cancel()
            failed = False
            for seg_id, task in [*running.items(), *acking.items()]:
                if not task.done():
                    continue
                published = running.pop(seg_id, None) is task
                if not published:
                    del acking[seg_id]
                # A task cancelled under it (shutdown) failed like any other.
                err = asyncio.CancelledError() if task.cancelled() else task.exception()
                if err is None:
                    failures = 0
                    if published:
                        acking[seg_id] = asyncio.create_task(self._acknowledged(infos[seg_id]))
                elif not isinstance(err, SegmentNotFoundError):
                    self._error(err)
                    failed = True
                if err is not None or not published:
                    infos.pop(seg_id, None)
            if failed:
                failures += 1
                if nc.is_closed:
                    break
                await self._sleep(self._backoff(failures))
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        # What the stream holds is acknowledged in the store even as the link
        # goes: only the durable write is left, and it does not need the link.
        await asyncio.gather(*acking.values(), return_exceptions=True)
        return failures

    async def _ensure_stream(self, js: Any) -> None:
        from nats.js.errors import NotFoundError

        c = self.config
        try:
            await js.stream_info(c.stream)
            return
        except NotFoundError:
            if not c.create_stream:
                raise
        await js.add_stream(
            name=c.stream,
            subjects=[f"{c.subject_prefix}.>"],
            num_replicas=c.replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
        )

    async def _upload(self, js: Any, info: SegmentInfo, window: asyncio.Semaphore) -> None:
        """Publishes one segment and acknowledges it once the stream holds every piece."""
        assert info.id is not None
        seg_id = info.id
        data = await asyncio.to_thread(self.store.get_segment, seg_id)
        blob = await asyncio.to_thread(self._signatures, info)
        piece = wire.chunk_size(self.max_payload or 1 << 20)
        count = max(1, -(-len(data) // piece))
        subject = wire.subject(self.config.subject_prefix, info.origin)
        acks: list[asyncio.Task[Any]] = []
        for i in range(count):
            # One message: the bytes as read, not a copy of them.
            chunk = data if count == 1 else data[i * piece : (i + 1) * piece]
            headers = {
                wire.H_MSG_ID: seg_id if count == 1 else f"{seg_id}/{i}",
                wire.H_SEGMENT: seg_id,
                wire.H_CHUNK: f"{i}/{count}",
                wire.H_SIZE: str(len(data)),
                wire.H_ORIGIN: info.origin,
                wire.H_SEQ: str(info.seq),
                wire.H_RECORDS: str(info.records),
            }
            if info.prev is not None:
                headers[wire.H_PREV] = info.prev
            if blob is not None and i == 0:
                headers[wire.H_SIGNATURE] = base64.b64encode(blob).decode("ascii")
            await self._pace(len(chunk))
            await window.acquire()
            acks.append(asyncio.create_task(self._publish(js, subject, chunk, headers, window)))
        results = await asyncio.gather(*acks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _acknowledged(self, info: SegmentInfo) -> None:
        """Every piece of the segment is in the stream: only now may the store
        let it go, once the acknowledgement is durable."""
        assert info.id is not None
        await self._acks.acknowledge(info.id)
        with self._lock:
            self._last_ack_mono = time.monotonic()
            self.archived_segments += 1
            if self._acked_while_listing is not None:
                self._acked_while_listing.add(info.id)
            # The status must not show it waiting until the next scan does.
            self._backlog_segments = max(0, self._backlog_segments - 1)
            self._backlog_bytes = max(0, self._backlog_bytes - info.size)

    async def _publish(
        self,
        js: Any,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        window: asyncio.Semaphore,
    ) -> None:
        try:
            ack = await js.publish(
                subject,
                payload,
                timeout=self.config.publish_timeout_s,
                stream=self.config.stream,
                headers=headers,
            )
        finally:
            window.release()
        if ack.stream != self.config.stream:
            raise RuntimeError(f"acknowledged by stream {ack.stream}, not {self.config.stream}")
        with self._lock:
            self.published_bytes += len(payload)
            self.published_messages += 1

    async def _pace(self, size: int) -> None:
        size = min(size, int(self._bucket.burst))
        while not self._bucket.try_take(size):
            await asyncio.sleep(max(self._bucket.wait_time(size), 0.001))

    # -- bookkeeping ------------------------------------------------------------

    def _refresh_backlog(self) -> list[SegmentInfo]:
        """Sealed segments the archive has not acknowledged, oldest first."""
        with self._lock:
            self._acked_while_listing = set()
        try:
            segments = self.store.segments()
        except StoreError as err:
            self._error(err, quiet=True)
            return []
        finally:
            with self._lock:
                acked = self._acked_while_listing or set()
                self._acked_while_listing = None
        waiting = [
            s
            for s in segments
            if s.sealed and s.id is not None and self.by not in s.acked_by and s.id not in acked
        ]
        waiting.sort(key=lambda s: (s.created_unix_ms, s.origin, s.seq))
        with self._lock:
            self._backlog_segments = len(waiting)
            self._backlog_bytes = sum(s.size for s in waiting)
            self._oldest_unarchived_ms = waiting[0].created_unix_ms if waiting else None
        return waiting

    def _set_connected(self, connected: bool) -> None:
        with self._lock:
            if connected:
                self._unreachable_since = None
            elif self._connected or self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
            self._connected = connected

    def _error(self, err: BaseException, *, quiet: bool = False) -> None:
        text = f"{type(err).__name__}: {err}"[:300]
        for path in self._files:  # no host path in a reason (runtime/health.py)
            text = text.replace(path, "<file>")
        with self._lock:
            self._last_error = text
            self._last_error_unix = time.time()
            self.errors += 1
        (log.debug if quiet else log.warning)("archive: %s", text)

    def _backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^failures))."""
        return full_jitter(self.config.retry_base_s, self.config.retry_cap_s, failures)

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(seconds, 0))


def _stored_signature(store: SegmentStore) -> Callable[[SegmentInfo], bytes | None]:
    def read(info: SegmentInfo) -> bytes | None:
        return None if info.id is None else store.origin_signature(info.id)

    return read


class _ArchiveMetrics(Collector):
    def __init__(self, uplink: ArchiveUplink) -> None:
        self._uplink = uplink

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._uplink.status()
        yield _gauge(
            "vedette_archive_connected",
            "1 while connected to the archive.",
            1 if s["connected"] else 0,
        )
        yield _gauge(
            "vedette_archive_backlog_segments",
            "Sealed segments the archive has not acknowledged.",
            s["backlog_segments"],
        )
        yield _gauge(
            "vedette_archive_backlog_bytes",
            "Bytes of sealed segments the archive has not acknowledged.",
            s["backlog_bytes"],
        )
        age = s["last_ack_age_s"]
        yield _gauge(
            "vedette_archive_last_ack_age_seconds",
            "Seconds since the archive last acknowledged a segment (-1: never).",
            -1 if age is None else age,
        )
        for name, key, text in (
            ("vedette_archive_segments", "archived_segments", "Segments the archive acknowledged."),
            ("vedette_archive_bytes", "published_bytes", "Bytes published to the archive."),
            ("vedette_archive_errors", "errors", "Archive connection and publish errors."),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], s[key])
            yield counter


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, text)
    gauge.add_metric([], value)
    return gauge
