"""How a sealed segment travels as NATS JetStream messages (docs/contracts.md,
"Archive messages"), and the core's reader of segment bytes outside a store.

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

from dataclasses import dataclass

from typing_extensions import Buffer

from vedette._core import read_sealed_segment
from vedette.errors import StoreError

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
class SealedSegment:
    """A sealed segment's bytes as the store's own reader checked them: the id
    they hash to, what the header says, and (when asked for) the records."""

    id: str
    origin: str
    seq: int
    first_record: int
    created_unix_ms: int
    prev: str | None
    records: int
    record_list: tuple[tuple[int, bytes], ...] = ()


def read_segment(data: Buffer, *, records: bool = False) -> SealedSegment:
    """Checks ``data`` as a sealed segment (BLAKE3 id, structure, every record
    checksum, in the core: the store's format has one reader); raises
    SegmentFormatError when it is not one."""
    try:
        found = read_sealed_segment(data, records=records)
    except StoreError as err:
        raise SegmentFormatError(str(err)) from None
    return SealedSegment(
        id=found["id"],
        origin=found["origin"],
        seq=found["seq"],
        first_record=found["first_record"],
        created_unix_ms=found["created_unix_ms"],
        prev=found["prev"],
        records=found["record_count"],
        record_list=tuple(found.get("records", ())),
    )


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
