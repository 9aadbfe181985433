"""``vedette archive export``: decision records from the archive, filtered, as a stream.

Segments are read one at a time (python/vedette/archive/reader.py) and only
segments whose bytes hash to their id are opened; their records are decoded as
``vedette store export`` decodes them (``record_fields``, python/vedette/store.py)
and only ``decision`` records matching every filter are written. Memory is one segment
and the reader's bounded chunk buffer, whatever the stream's size.

``jsonl`` writes each decision record as it is stored (one JSON object a line).
``opa`` writes OPA's decision-log event shape (docs/operations.md, "Fleet archive"):

=======================  =====================================================
``decision_id``          the record's ``decision_id``
``timestamp``            the record's ``timestamp`` (RFC 3339)
``path``                 ``vedette/decision``, the policy's entry point
``input``                ``caller``, ``agent``, ``tool``, ``request_id`` and the
                         masked ``args`` and ``claims`` the record holds
``result``               the policy's decision document, else ``{"allow": …,
                         "reason": …}`` from the record's outcome
``bundles``              ``{<agent>: {"revision": <policy_revision>}}`` when a
                         release decided
``labels``               ``{"id": <node>, "node": <node>, "outcome": …}``
=======================  =====================================================
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from vedette.archive import wire
from vedette.archive.reader import ArchivedSegment, Incomplete
from vedette.store import record_fields

DECISION_PATH = "vedette/decision"


@dataclass(frozen=True)
class Filters:
    node: str | None = None
    agent: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None


@dataclass
class ExportCounts:
    segments: int = 0
    records: int = 0
    written: int = 0
    skipped_segments: int = 0


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (nanoseconds allowed; a time without zone is UTC)."""
    value = text.strip().replace("z", "Z")
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    head, dot, rest = value.partition(".")
    if dot:  # Python reads at most microseconds: cut the fraction to 6 digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def matches(record: dict[str, Any], f: Filters) -> bool:
    if record.get("kind") != "decision":
        return False
    if f.node is not None and record.get("node") != f.node:
        return False
    if f.agent is not None and record.get("agent") != f.agent:
        return False
    if f.outcome is not None and record.get("outcome") != f.outcome:
        return False
    if f.since is not None or f.until is not None:
        try:
            when = parse_time(str(record.get("timestamp")))
        except ValueError:
            return False
        if f.since is not None and when < f.since:
            return False
        if f.until is not None and when >= f.until:
            return False
    return True


def opa_event(record: dict[str, Any]) -> dict[str, Any]:
    """One decision record in OPA's decision-log event shape."""
    given = record.get("input") or {}
    result = record.get("result")
    if result is None:
        result = {"allow": record.get("outcome") == "allow", "reason": record.get("reason")}
    event: dict[str, Any] = {
        "decision_id": record.get("decision_id"),
        "timestamp": record.get("timestamp"),
        "path": DECISION_PATH,
        "input": {
            "caller": record.get("caller"),
            "agent": record.get("agent"),
            "tool": record.get("tool"),
            "request_id": record.get("request_id"),
            "args": given.get("args"),
            "claims": given.get("claims"),
        },
        "result": result,
        "labels": {
            "id": record.get("node"),
            "node": record.get("node"),
            "outcome": record.get("outcome"),
        },
    }
    release = record.get("release") or {}
    if release.get("policy_revision") is not None:
        name = release.get("agent") or record.get("agent") or "vedette"
        event["bundles"] = {name: {"revision": release["policy_revision"]}}
    return event


async def export_records(
    source: AsyncIterator[ArchivedSegment | Incomplete],
    filters: Filters,
    fmt: str,
    write: Any,
    counts: ExportCounts,
) -> None:
    """Writes (``write(line)``) every matching decision record of ``source``."""
    done: set[str] = set()  # a segment stored twice is exported once
    async for item in source:
        if isinstance(item, Incomplete):
            counts.skipped_segments += 1  # some of its pieces are not in the stream
            continue
        if item.segment_id in done:
            continue
        try:
            segment = wire.read_segment(item.data, records=True)
        except wire.SegmentFormatError:
            counts.skipped_segments += 1
            continue
        if segment.id != item.segment_id:
            counts.skipped_segments += 1
            continue
        if filters.node is not None and segment.origin != filters.node:
            continue
        done.add(item.segment_id)
        counts.segments += 1
        for _pos, raw in segment.record_list:
            counts.records += 1
            text = record_fields(raw).get("text")
            if text is None:
                continue
            try:
                record = json.loads(str(text))
            except ValueError:
                continue
            if not isinstance(record, dict) or not matches(record, filters):
                continue
            out = opa_event(record) if fmt == "opa" else record
            write(json.dumps(out, ensure_ascii=False, separators=(",", ":")))
            counts.written += 1
