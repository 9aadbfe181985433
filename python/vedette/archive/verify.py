"""``vedette archive verify``: the archive stream read back and checked per origin.

For every segment in the stream: its bytes hash to its id (BLAKE3); they parse
as a sealed segment whose own header (origin, seq, prev, record count) agrees
with the message headers; its origin signature, when it carries one, names the
same origin, seq and id and verifies (python/vedette/origin.py): a certificate
must chain to the fleet CA and name the origin; a bare key must be the one the
origin's first segment in the stream was signed with.
Per origin node: sequences run from 0 without a gap, each segment's ``prev``
is the id of the one before it, no sequence has two different segments (a
fork), and no segment was sent in pieces of which some are missing.

Findings (exit 1): ``altered`` (bytes do not hash to the id), ``malformed``,
``forged`` (headers or signature disagree with the bytes), ``fork``, ``gap``,
``broken-chain``, ``incomplete``. Notes (exit 0): ``duplicate`` (the same
segment stored twice: harmless, the bytes are identical), ``unsigned``
(segments without an origin signature).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from vedette.archive import wire
from vedette.archive.reader import ArchivedSegment, Incomplete, read_stream
from vedette.config import ArchiveConfig
from vedette.errors import OriginSignatureError
from vedette.hashing import blake3
from vedette.origin import OriginVerifier

# Segments hashed and parsed on worker threads while the next are read.
CHECKS_AHEAD = 4
# A segment's header and id, or why its bytes are not a sealed segment.
_Parsed = tuple[wire.SealedSegment | None, str]

FINDINGS = ("altered", "malformed", "forged", "fork", "gap", "broken-chain", "incomplete")


@dataclass
class Finding:
    kind: str
    origin: str | None
    segment: str | None
    detail: str

    def line(self) -> str:
        where = f" {self.origin}" if self.origin else ""
        seg = f" {self.segment}" if self.segment else ""
        return f"{self.kind}:{where}{seg}: {self.detail}"


@dataclass
class NodeChain:
    segments: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    prev: dict[str, str | None] = field(default_factory=dict)
    records: int = 0
    bytes: int = 0
    signed: int = 0
    unsigned: int = 0


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    nodes: dict[str, NodeChain] = field(default_factory=dict)
    segments: int = 0
    messages: int = 0
    bytes: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings

    def summary(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "segments": self.segments,
            "messages": self.messages,
            "bytes": self.bytes,
            "nodes": {
                node: {
                    "segments": sum(len(ids) for ids in chain.segments.values()),
                    "first_seq": min(chain.segments, default=None),
                    "last_seq": max(chain.segments, default=None),
                    "records": chain.records,
                    "signed": chain.signed,
                    "unsigned": chain.unsigned,
                }
                for node, chain in sorted(self.nodes.items())
            },
            "findings": [f.__dict__ for f in self.findings],
            "notes": [f.__dict__ for f in self.notes],
        }


async def verify_stream(
    config: ArchiveConfig,
    *,
    node: str | None = None,
    progress: Callable[[int, int], object] | None = None,
    fleet_ca: bytes | None = None,
) -> VerifyReport:
    verifier = OriginVerifier(ca_pem=None if fleet_ca is None else fleet_ca.decode("ascii"))
    return await verify_segments(read_stream(config, node=node, progress=progress), verifier)


async def verify_segments(
    source: AsyncIterator[ArchivedSegment | Incomplete],
    verifier: OriginVerifier | None = None,
) -> VerifyReport:
    """Checks what ``source`` yields. Certificates chain to ``verifier``'s fleet
    CA; a bare key is pinned for its origin at the origin's first segment.

    Each segment is hashed and parsed on a worker thread (the core releases
    the interpreter lock) while the next ones are read, at most
    ``CHECKS_AHEAD`` at once; the findings are made in stream order."""
    verifier = verifier or OriginVerifier()
    report = VerifyReport()
    seen: set[str] = set()
    parsing: deque[tuple[ArchivedSegment, asyncio.Task[_Parsed]]] = deque()

    async def settle(limit: int) -> None:
        while len(parsing) > limit:
            item, task = parsing.popleft()
            _check(report, item, await task, seen, verifier)

    async for item in source:
        if isinstance(item, Incomplete):
            await settle(0)  # findings stay in stream order
            report.findings.append(
                Finding(
                    "incomplete",
                    item.headers.get(wire.H_ORIGIN),
                    item.segment_id,
                    f"{item.have} of {item.of} pieces in the stream (messages {item.stream_seqs})",
                )
            )
            continue
        report.messages += len(item.stream_seqs)
        report.bytes += len(item.data)
        parsing.append((item, asyncio.create_task(asyncio.to_thread(_parse, item.data))))
        await settle(CHECKS_AHEAD)
    await settle(0)
    for origin, chain in report.nodes.items():
        _check_chain(report, origin, chain)
    return report


def _parse(data: bytes) -> _Parsed:
    try:
        return wire.read_segment(data), ""  # hashes and parses in one pass
    except wire.SegmentFormatError as err:
        return None, str(err)


def _check(
    report: VerifyReport,
    item: ArchivedSegment,
    parsed: _Parsed,
    seen: set[str],
    verifier: OriginVerifier,
) -> None:
    claimed = item.segment_id
    origin_hdr = item.headers.get(wire.H_ORIGIN)
    header, problem = parsed
    actual = header.id if header is not None else str(blake3(item.data))
    if actual != claimed:
        report.findings.append(
            Finding(
                "altered",
                origin_hdr,
                claimed,
                f"the bytes hash to {actual} (messages {item.stream_seqs})",
            )
        )
        return
    if claimed in seen:
        report.notes.append(
            Finding("duplicate", origin_hdr, claimed, f"stored again (messages {item.stream_seqs})")
        )
        return
    seen.add(claimed)
    if header is None:
        report.findings.append(Finding("malformed", origin_hdr, claimed, problem))
        return
    report.segments += 1
    claims = {
        "origin": (origin_hdr, header.origin),
        "seq": (item.headers.get(wire.H_SEQ), str(header.seq)),
        "prev": (item.headers.get(wire.H_PREV), header.prev),
        "records": (item.headers.get(wire.H_RECORDS), str(header.records)),
    }
    wrong = [
        f"{k} {said!r} but the segment says {real!r}"
        for k, (said, real) in claims.items()
        if said != real
    ]
    if wrong:
        report.findings.append(Finding("forged", header.origin, claimed, "; ".join(wrong)))
    chain = report.nodes.setdefault(header.origin, NodeChain())
    chain.segments[header.seq].add(claimed)
    chain.prev[claimed] = header.prev
    chain.records += header.records
    chain.bytes += len(item.data)
    if item.signature is None:
        chain.unsigned += 1
        return
    try:
        verifier.check(item.signature, header.origin, header.seq, claimed)
    except OriginSignatureError as err:
        report.findings.append(
            Finding("forged", header.origin, claimed, f"origin signature refused: {err}")
        )
    else:
        chain.signed += 1


def _check_chain(report: VerifyReport, origin: str, chain: NodeChain) -> None:
    seqs = sorted(chain.segments)
    for seq in seqs:
        ids = chain.segments[seq]
        if len(ids) > 1:
            report.findings.append(
                Finding("fork", origin, None, f"seq {seq} has {len(ids)} segments: {sorted(ids)}")
            )
    expected = 0
    for seq in seqs:
        if seq > expected:
            missing = f"seq {expected}" if seq - expected == 1 else f"seqs {expected}..{seq - 1}"
            report.findings.append(Finding("gap", origin, None, f"{missing} not in the stream"))
        expected = seq + 1
        before = chain.segments.get(seq - 1)
        if not before:
            continue
        for seg_id in chain.segments[seq]:
            prev = chain.prev.get(seg_id)
            if prev not in before:
                report.findings.append(
                    Finding(
                        "broken-chain",
                        origin,
                        seg_id,
                        f"seq {seq} names prev {prev}; "
                        f"the stream holds {sorted(before)} at seq {seq - 1}",
                    )
                )
    if chain.unsigned:
        report.notes.append(
            Finding(
                "unsigned", origin, None, f"{chain.unsigned} segments carry no origin signature"
            )
        )
