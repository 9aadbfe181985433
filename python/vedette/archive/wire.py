"""How a sealed segment travels as NATS JetStream messages (docs/contracts.md,
"Archive messages"), and a reader of the segment bytes that needs no store.

A segment goes to subject ``<prefix>.<node token>`` as one message, or, when it
is larger than what the servers take in one message, as ``n`` chunks sent in
order. Every message carries:

==============================  ===================================================
``Nats-Msg-Id``                 the segment id (one message), ``<id>/<i>`` (chunk i)
``Vedette-Segment``             the segment id: ``blake3:`` + BLAKE3 of all its bytes
``Vedette-Chunk``               ``<i>/<n>``, 0-based (``0/1`` for a whole segment)
``Vedette-Size``                the whole segment's length in bytes
``Vedette-Origin``              the node that wrote it
``Vedette-Seq``                 its place in that node's chain
``Vedette-Prev``                the id of segment seq-1 (absent for seq 0)
``Vedette-Records``             how many records it holds
``Vedette-Origin-Signature``    base64 of the detached origin-signature blob, when
                                the store has one (chunk 0 only)
==============================  ===================================================

The headers are a table of contents: whoever reads the stream back
(``vedette archive verify``) trusts only the bytes, which must hash to the id,
whose own header must agree with these, and the origin signature.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"VDTSEG1\n"
FRAME_MASK = 0x56445400
FOOTER_MARK = 0xFFFFFFFF
FOOTER_BYTES = 24
MAX_FRAME = 64 << 20

H_MSG_ID = "Nats-Msg-Id"
H_SEGMENT = "Vedette-Segment"
H_CHUNK = "Vedette-Chunk"
H_SIZE = "Vedette-Size"
H_ORIGIN = "Vedette-Origin"
H_SEQ = "Vedette-Seq"
H_PREV = "Vedette-Prev"
H_RECORDS = "Vedette-Records"
H_SIGNATURE = "Vedette-Origin-Signature"

# Room left in a message for its headers (a signature naming a certificate is
# a few KiB in base64) when a segment is cut into chunks.
HEADER_ROOM = 16 << 10


class SegmentFormatError(ValueError):
    """The bytes are not a well-formed sealed segment."""


@dataclass(frozen=True)
class SegmentHeader:
    origin: str
    seq: int
    first_record: int
    created_unix_ms: int
    prev: str | None
    records: int
    body_end: int
    frames_start: int


def node_token(node: str) -> str:
    """A node id as one subject token: itself when it is made of letters, digits,
    ``_`` and ``-``; otherwise ``x`` + the hex of its bytes (ids may hold dots)."""
    if node and all(c.isascii() and (c.isalnum() or c in "_-") for c in node):
        return node
    return "x" + node.encode().hex()


def subject(prefix: str, node: str) -> str:
    return f"{prefix}.{node_token(node)}"


def chunk_size(max_payload: int) -> int:
    """The largest piece of a segment one message carries under ``max_payload``."""
    return max(4096, max_payload - HEADER_ROOM)


def id_hex(segment_id: str) -> str:
    return segment_id.removeprefix("blake3:")


def parse_segment(data: bytes | memoryview) -> SegmentHeader:
    """The header and footer of a sealed segment, with its frame layout walked
    (lengths only: every byte is covered by the id, checked separately)."""
    view = memoryview(data)
    if len(view) < 72 + FOOTER_BYTES or bytes(view[:8]) != MAGIC:
        raise SegmentFormatError("not a segment (bad magic or too short)")
    version, seq, first, created, has_prev = struct.unpack_from("<HQQQB", view, 8)
    if version != 1:
        raise SegmentFormatError(f"unknown segment format version {version}")
    prev_raw = bytes(view[35:67])
    n = view[67]
    if n == 0 or 68 + n + 4 > len(view):
        raise SegmentFormatError("bad origin length")
    try:
        origin = bytes(view[68 : 68 + n]).decode("ascii")
    except UnicodeDecodeError:
        raise SegmentFormatError("origin is not ASCII") from None
    if has_prev not in (0, 1) or (has_prev == 0) != (seq == 0):
        raise SegmentFormatError("has_prev does not match seq")
    mark, count, body_end, _crc = struct.unpack_from("<IQQI", view, len(view) - FOOTER_BYTES)
    if mark != FOOTER_MARK or body_end != len(view) - FOOTER_BYTES:
        raise SegmentFormatError("no footer (not a sealed segment)")
    frames_start = 68 + n + 4
    walked = sum(1 for _ in _frames(view, frames_start, body_end))
    if walked != count:
        raise SegmentFormatError(f"footer counts {count} records, the body holds {walked}")
    return SegmentHeader(
        origin=origin,
        seq=seq,
        first_record=first,
        created_unix_ms=created,
        prev=f"blake3:{prev_raw.hex()}" if has_prev else None,
        records=count,
        body_end=body_end,
        frames_start=frames_start,
    )


def _frames(view: memoryview, start: int, end: int) -> Iterator[memoryview]:
    at = start
    while at < end:
        if at + 8 > end:
            raise SegmentFormatError(f"torn frame at byte {at}")
        (masked,) = struct.unpack_from("<I", view, at)
        length = masked ^ FRAME_MASK
        if length > MAX_FRAME or at + 8 + length > end:
            raise SegmentFormatError(f"bad frame length at byte {at}")
        yield view[at + 8 : at + 8 + length]
        at += 8 + length


def records(data: bytes, header: SegmentHeader | None = None) -> Iterator[tuple[int, bytes]]:
    """``(position, record)`` for every record of a sealed segment."""
    header = header or parse_segment(data)
    view = memoryview(data)
    for i, payload in enumerate(_frames(view, header.frames_start, header.body_end)):
        yield header.first_record + i, bytes(payload)
