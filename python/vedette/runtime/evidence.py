"""Evidence records: one JSON document per decision, and one per tool outcome.

Field names follow OPA's decision logs (``decision_id``, ``timestamp``,
``input``, ``result``, ``bundles``-like release data) so existing decision-log
tooling can read them. Argument values named in ``mask_args`` are replaced by
``"***"`` at any depth before the record is written.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterable
from typing import Any

MASK = "***"
SCHEMA = "vedette.evidence/v1"


def timestamp(unix_ns: int) -> str:
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


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
