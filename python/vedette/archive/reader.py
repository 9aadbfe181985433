"""Reading the archive stream back: every segment, reassembled from its chunks.

``read_stream(config, node=None)`` yields one :class:`ArchivedSegment` per
segment whose messages were all found (in stream order of its last chunk) and
one :class:`Incomplete` for every segment some chunk of which is missing. It
reads through an ordered consumer up to the stream's last message at the
start, so a stream that keeps growing is read as of that moment. Memory is
bounded by the segments whose chunks are still being gathered
(``max_partial_bytes``; beyond that the oldest partial one is given up as
incomplete).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from vedette.archive import wire
from vedette.config import ArchiveConfig

MAX_PARTIAL_BYTES = 256 << 20
IDLE_TIMEOUT_S = 10.0
# Tries at asking for the stream and at creating the reading consumer (0.5 s,
# 1 s, 2 s, 4 s, 8 s apart): a cluster that just lost a server elects new
# leaders within seconds, and a reader should wait that out, not fail.
SUBSCRIBE_ATTEMPTS = 6


class ArchiveReadError(RuntimeError):
    """The stream could not be read (unreachable, missing, refused)."""


@dataclass
class ArchivedSegment:
    segment_id: str
    data: bytes
    headers: dict[str, str]
    signature: bytes | None
    stream_seqs: list[int]


@dataclass
class Incomplete:
    segment_id: str
    headers: dict[str, str]
    have: int
    of: int
    stream_seqs: list[int]


@dataclass
class _Partial:
    count: int
    size: int
    headers: dict[str, str]
    chunks: dict[int, bytes] = field(default_factory=dict)
    seqs: list[int] = field(default_factory=list)
    signature: bytes | None = None

    def held(self) -> int:
        return sum(len(c) for c in self.chunks.values())


def connect_options(config: ArchiveConfig) -> dict[str, Any]:
    """``nats.connect`` arguments for the ``[archive]`` table: its servers, TLS
    (the CA, and the node's certificate when given) and credentials. The client
    moves to another server of the cluster on its own a few times; beyond that
    the caller's own retry takes over."""
    options: dict[str, Any] = {
        "servers": list(config.servers),
        "connect_timeout": 5,
        "allow_reconnect": True,
        "max_reconnect_attempts": 3,
    }
    tls = config.ca is not None or any(u.startswith("tls://") for u in config.servers)
    if tls or config.cert is not None:
        context = ssl.create_default_context(cafile=str(config.ca) if config.ca else None)
        if config.cert is not None and config.key is not None:
            context.load_cert_chain(str(config.cert), str(config.key))
        options["tls"] = context
    if config.credentials is not None:
        options["user_credentials"] = str(config.credentials)
    return options


async def connect(config: ArchiveConfig) -> Any:
    import nats

    return await nats.connect(**connect_options(config))


async def read_stream(
    config: ArchiveConfig,
    *,
    node: str | None = None,
    max_partial_bytes: int = MAX_PARTIAL_BYTES,
    progress: Callable[[int, int], object] | None = None,
) -> AsyncIterator[ArchivedSegment | Incomplete]:
    """Every segment in the stream (of ``node`` only, when given); see the module doc."""
    try:
        nc = await connect(config)
    except Exception as err:
        raise ArchiveReadError(f"cannot reach the archive: {type(err).__name__}: {err}") from err
    try:
        js = nc.jetstream(timeout=10)
        info = await _retried(f"stream {config.stream}", lambda: js.stream_info(config.stream))
        last = int(info.state.last_seq)
        total = int(info.state.messages)
        if last == 0 or total == 0:
            return
        subject = (
            f"{config.subject_prefix}.>"
            if node is None
            else wire.subject(config.subject_prefix, node)
        )
        sub = await _subscribe(js, subject, config.stream)
        partial: dict[str, _Partial] = {}
        seen = 0
        pending = total  # what the consumer says is still to come
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=IDLE_TIMEOUT_S)
                except asyncio.TimeoutError:
                    if pending > 0 and (node is None or seen > 0):
                        # The stream stopped answering part-way: a short read
                        # would look like missing evidence, so it is an error.
                        raise ArchiveReadError(
                            f"stream {config.stream} stopped answering after {seen} of "
                            f"{total} messages; try again"
                        ) from None
                    break  # nothing (more) for this subject: a filter can end early
                seq = int(msg.metadata.sequence.stream)
                pending = int(msg.metadata.num_pending)
                seen += 1
                if progress is not None:
                    progress(seen, total)
                for item in _take(partial, msg, seq, max_partial_bytes):
                    yield item
                if seq >= last or pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        for seg_id, p in partial.items():
            yield Incomplete(seg_id, p.headers, len(p.chunks), p.count, p.seqs)
    finally:
        await nc.close()


def _take(
    partial: dict[str, _Partial], msg: Any, seq: int, max_partial_bytes: int
) -> list[ArchivedSegment | Incomplete]:
    headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
    seg_id = headers.get(wire.H_SEGMENT, f"unnamed:{seq}")
    try:
        index_text, count_text = headers.get(wire.H_CHUNK, "0/1").split("/")
        index, count = int(index_text), int(count_text)
        size = int(headers.get(wire.H_SIZE, str(len(msg.data))))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        index, count, size = 0, 1, len(msg.data)
    p = partial.get(seg_id)
    if p is None:
        p = partial[seg_id] = _Partial(count=count, size=size, headers=headers)
    if index == 0:
        p.headers = headers
    sig = headers.get(wire.H_SIGNATURE)
    if sig is not None:
        try:
            p.signature = base64.b64decode(sig, validate=True)
        except ValueError:
            p.signature = b""
    p.seqs.append(seq)
    p.chunks.setdefault(index, bytes(msg.data))  # a resent chunk: the first copy stands
    out: list[ArchivedSegment | Incomplete] = []
    if len(p.chunks) == p.count:
        del partial[seg_id]
        data = b"".join(p.chunks[i] for i in range(p.count))
        out.append(ArchivedSegment(seg_id, data, p.headers, p.signature, p.seqs))
    while partial and sum(q.held() for q in partial.values()) > max_partial_bytes:
        oldest = next(iter(partial))
        q = partial.pop(oldest)
        out.append(Incomplete(oldest, q.headers, len(q.chunks), q.count, q.seqs))
    return out


async def _subscribe(js: Any, subject: str, stream: str) -> Any:
    """An ordered consumer over ``subject``."""
    return await _retried(
        f"stream {stream}: cannot read it",
        lambda: js.subscribe(
            subject,
            stream=stream,
            ordered_consumer=True,
            pending_msgs_limit=256,
            pending_bytes_limit=64 << 20,
        ),
    )


async def _retried(what: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
    """``attempt()``, tried again a few times with growing pauses (a cluster that
    just lost a server times out while it moves its leaders); ArchiveReadError
    naming ``what`` when every try failed, or at once when the stream does not
    exist (no wait changes that)."""
    from nats.js.errors import NotFoundError

    delay = 0.5
    for tries in range(1, SUBSCRIBE_ATTEMPTS + 1):
        try:
            return await attempt()
        except Exception as err:
            if tries == SUBSCRIBE_ATTEMPTS or isinstance(err, NotFoundError):
                raise ArchiveReadError(f"{what}: {type(err).__name__}: {err}") from err
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
