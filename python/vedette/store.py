"""The segment store: durable, tamper-evident evidence under a hard disk ceiling.

``SegmentStore.open(path, ceiling_bytes=..., node_id=...)`` checks the directory
(local file system, owned by this user, not group/world writable; created 0700),
takes an exclusive lock and recovers from any crash before returning. Appends
return once the record is on stable storage (``durability="durable"``, the
default); ``durability="interval"`` returns at once and syncs every
``sync_interval_s`` seconds, so a power cut can lose that window of records.

All methods release the GIL while they do I/O; concurrent appends from many
threads share one write and one ``fdatasync`` (group commit).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from vedette._core import (
    Digest,
    DurableQueue,
    store_acknowledge_quarantine,
    store_recorded_config,
)
from vedette._core import Store as _Store
from vedette.errors import (
    SegmentNotFoundError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StoreRefusedError,
)

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class SegmentInfo:
    """One segment: ``id`` is ``None`` for the open (unsealed) segment."""

    id: str | None
    origin: str
    seq: int
    size: int
    sealed: bool
    acked_by: tuple[str, ...]
    first_record: int
    records: int
    created_unix_ms: int
    prev: str | None


@dataclass(frozen=True)
class CommitStats:
    """Durable commits (one write and one ``fdatasync`` each) since the store was
    opened, and the records and appends they carried."""

    syncs: int
    records: int
    appends: int

    @property
    def records_per_sync(self) -> float:
        return self.records / self.syncs if self.syncs else 0.0


@dataclass(frozen=True)
class Usage:
    """Bytes on disk (everything in the directory, rounded to blocks) against the ceiling."""

    bytes_used: int
    ceiling_bytes: int
    sealed_bytes: int
    open_bytes: int
    evictable_bytes: int
    quarantine_bytes: int
    segments: int


@dataclass(frozen=True)
class StoreHealth:
    """The store's state for health, status and metrics.

    ``state``: ``ok``, ``damaged`` (unacknowledged quarantine), ``full``,
    ``read_only``, ``stopped`` or ``directory_gone``. ``verdict``: ``ok``,
    ``degraded`` (damaged, or usage at or above ``high_water``) or
    ``failing`` (appends are refused, so calls are denied).
    """

    state: str
    verdict: str
    reason: str
    usage_fraction: float
    high_water: float
    bytes_used: int
    ceiling_bytes: int
    unacked_sealed_bytes: int
    sealed_segments: int
    acked_segments: int
    oldest_unacked_age_s: float | None
    quarantine_unacked: int


@dataclass(frozen=True)
class StoreEvent:
    """Something the store did or found: ``quarantined``, ``missing``,
    ``reopened``, ``reopen_failed``, ``stopped`` or ``directory_gone``."""

    kind: str
    detail: str
    unix_ms: int


@dataclass(frozen=True)
class QuarantineReport:
    """Evidence set aside (or found missing); stays until acknowledged."""

    id: str
    kind: str
    reason: str
    source: str
    offset: int | None
    bytes: int
    records_lost: int | None
    file: str | None
    unix_ms: int
    acknowledged_by: str | None
    acknowledged_unix_ms: int | None


def record_fields(record: bytes) -> dict[str, object]:
    """A record as ``{"text": …}`` (UTF-8) or ``{"base64": …}`` (anything else), the
    way ``vedette store export`` and ``vedette archive export`` print records."""
    try:
        return {"text": record.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(record).decode("ascii")}


def acknowledge_quarantine(path: str | os.PathLike[str], report_id: str, by: str) -> None:
    """Record durably that ``by`` acknowledged quarantine report ``report_id``
    of the store in ``path`` (writes ``quarantine/<id>.ack``; the evidence
    stays). Takes no lock: works beside a running node."""
    store_acknowledge_quarantine(os.fspath(path), report_id, by)


def _id_text(segment_id: object) -> str:
    """A segment id as text: ``blake3:<hex>`` given as ``str`` or as a ``Digest``."""
    if isinstance(segment_id, str):
        return segment_id
    if isinstance(segment_id, Digest):
        return str(segment_id)
    raise TypeError(f"a segment id is a str or Digest, got {type(segment_id).__name__}")


class SegmentStore:
    """An open segment store. Use as a context manager, or call :meth:`close`."""

    def __init__(self, core: _Store) -> None:
        self._core = core

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        ceiling_bytes: int | None = None,
        node_id: str | None = None,
        *,
        durability: str = "durable",
        sync_interval_s: float = 0.05,
        segment_max_bytes: int | None = None,
        segment_max_age_s: float | None = None,
        max_record_bytes: int | None = None,
        high_water: float = 0.8,
    ) -> SegmentStore:
        """Open (creating if absent) and recover the store in ``path``.

        ``ceiling_bytes`` and ``node_id`` default to the values the store was
        last opened with (for tools); a new store needs both.
        """
        if ceiling_bytes is None or node_id is None:
            try:
                recorded_node, recorded_ceiling = store_recorded_config(os.fspath(path))
            except StoreError as err:
                raise StoreError(
                    f"{os.fspath(path)}: not an existing store; give ceiling_bytes and node_id"
                    f" ({err})"
                ) from None
            ceiling_bytes = recorded_ceiling if ceiling_bytes is None else ceiling_bytes
            node_id = recorded_node if node_id is None else node_id
        core = _Store.open(
            os.fspath(path),
            ceiling_bytes,
            node_id,
            durability,
            sync_interval_s,
            segment_max_bytes,
            segment_max_age_s,
            max_record_bytes,
            high_water,
        )
        return cls(core)

    @classmethod
    def open_read_only(cls, path: str | os.PathLike[str]) -> SegmentStore:
        """Open an existing store to read it without changing anything on disk.

        Takes no lock, so it works beside the process that has the store open.
        Recovery runs in memory only: damage is reported in :attr:`recovery`
        and damaged segments are left out, but nothing is cut, moved or
        removed. Appends, seals, acks and imports raise ``ValueError``. What it
        reads is a snapshot; a live writer may have moved on.
        """
        return cls(_Store.open_read_only(os.fspath(path)))

    def __enter__(self) -> SegmentStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def node_id(self) -> str:
        return self._core.node_id

    @property
    def path(self) -> str:
        return os.fspath(self._core.path)

    def append(self, record: Buffer) -> int:
        """Append one record; returns its position once it is durable."""
        return self._core.append(record)

    def append_many(self, records: Iterable[Buffer]) -> range:
        """Append records as one batch (all admitted or none); returns their positions."""
        batch = records if isinstance(records, list | tuple) else list(records)
        first = self._core.append_many(batch)
        return range(first, first + len(batch))

    def durable_queue(self) -> DurableQueue:
        """Appends that never block: ``submit`` returns a ticket at once and a
        writer thread makes records durable in batches, reporting finished
        tickets through ``fileno()`` (an eventfd) and ``take_completed()``."""
        return DurableQueue(self._core)

    def flush(self) -> None:
        """Make everything appended so far durable (for ``durability="interval"``)."""
        self._core.flush()

    def iter_records(
        self, since: int | None = None, origin: str | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """Yield ``(position, record)`` after position ``since`` (all when None),
        for ``origin`` (default: this node). Every record yielded passed its checksum."""
        cursor = since
        while True:
            batch = self._core.read_records(cursor, origin)
            if not batch:
                return
            yield from batch
            cursor = batch[-1][0]

    def segments(self) -> list[SegmentInfo]:
        out = []
        for info in self._core.segments():
            info["acked_by"] = tuple(info["acked_by"])
            out.append(SegmentInfo(**info))
        return out

    def seal(self) -> str | None:
        """Seal the open segment now; returns its id (None if it had no records)."""
        return self._core.seal()

    def ack(self, segment_id: str | Digest, by: str) -> None:
        """Durably record that ``by`` holds the sealed segment; it may then be evicted."""
        self._core.ack(_id_text(segment_id), by)

    def ack_all(self, segment_ids: Sequence[str | Digest], by: str) -> None:
        """:meth:`ack` for several segments with one durable catalog write; every
        id must be held, or nothing is recorded."""
        self._core.ack_all([_id_text(s) for s in segment_ids], by)

    def usage(self) -> Usage:
        return Usage(**self._core.usage())

    def commit_stats(self) -> CommitStats:
        """Durable commits since the open and what they carried (group commit's batch size)."""
        return CommitStats(*self._core.commit_stats())

    def chain_heads(self) -> dict[str, tuple[int, str]]:
        """Per origin: sequence and id of the newest sealed segment held."""
        return {origin: (seq, seg_id) for origin, seq, seg_id in self._core.chain_heads()}

    def get_segment(self, segment_id: str | Digest) -> bytes:
        """A sealed segment's bytes, checked against its id before they are returned."""
        return self._core.get_segment(_id_text(segment_id))

    def import_segment(self, data: Buffer, expected_id: str | Digest | None = None) -> str:
        """Store a peer's sealed segment after checking id, structure and chain; returns its id."""
        expected = None if expected_id is None else _id_text(expected_id)
        return self._core.import_segment(data, expected)

    def verify(self, progress: Callable[[int, int], object] | None = None) -> dict[str, object]:
        """Re-check everything; ``faults`` lists what is wrong (empty: all good).

        ``progress(done_bytes, total_bytes)`` is called after each segment.
        """
        return self._core.verify(progress)

    @property
    def recovery(self) -> dict[str, object]:
        """What recovery found and did when this store was opened."""
        return self._core.recovery()

    def put_origin_signature(self, segment_id: str | Digest, blob: Buffer) -> None:
        """Store ``blob`` (opaque, 1 to 4096 bytes) durably as ``<segment>.seg.sig``
        beside a sealed segment; counted against the ceiling, evicted with it."""
        self._core.put_origin_signature(_id_text(segment_id), blob)

    def origin_signature(self, segment_id: str | Digest) -> bytes | None:
        """The origin signature stored for a sealed segment, or None."""
        return self._core.origin_signature(_id_text(segment_id))

    def reopen(self) -> None:
        """Run recovery again in this process (after a stop); refused while the
        directory is not the one opened. Damage found is quarantined and reported."""
        self._core.reopen()

    def check(self) -> StoreHealth:
        """The periodic check (about once a second): directory still there,
        deferred work retried, a stopped store reopened (with backoff)."""
        return StoreHealth(**self._core.check())

    def health(self) -> StoreHealth:
        return StoreHealth(**self._core.health())

    def take_events(self) -> list[StoreEvent]:
        """Events since the last call (cleared), for the runtime to record as evidence."""
        return [StoreEvent(kind, detail, ms) for kind, detail, ms in self._core.take_events()]

    def quarantine(self) -> list[QuarantineReport]:
        """Every quarantine report, oldest first, with its acknowledgement."""
        return [QuarantineReport(**r) for r in self._core.quarantine()]

    def close(self) -> None:
        """Sync anything queued and close; later calls raise StoreError."""
        self._core.close()


__all__ = [
    "CommitStats",
    "QuarantineReport",
    "SegmentInfo",
    "SegmentNotFoundError",
    "SegmentStore",
    "StoreCorruptError",
    "StoreError",
    "StoreEvent",
    "StoreFullError",
    "StoreHealth",
    "StoreLockedError",
    "StoreRefusedError",
    "Usage",
    "acknowledge_quarantine",
    "record_fields",
]
