"""Refusals are counted, not multiplied (docs/threat-model.md, "Refusals").

A request refused before any policy ran — no valid credentials (401), a
malformed or invalid intent (400), over the caller's rate quota (429) — costs
the sender nothing, so a flood of them must not cost the node its evidence
store. For each kind of refusal from one source (a caller, or the source
address of an unauthenticated request), the first one of an interval is
recorded in full, as any decision; the rest are only counted. At the end of
the interval one ``refusal_summary`` record gives every count, with the first
and last time and decision id, so the evidence of an attack survives without
the attack filling the store. The table of sources is bounded; sources beyond
it, and full records beyond ``max_full_per_interval``, are counted together.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

# Outcomes refused before a policy ran: aggregated.
AGGREGATED = frozenset({"unauthenticated", "invalid", "over_quota"})
# Who a refusal is counted against when the table is full.
OVERFLOW = "(others)"


@dataclass
class _Count:
    full: int = 0
    counted: int = 0
    first_ms: int = 0
    last_ms: int = 0
    first_id: str = ""
    last_id: str = ""


class RefusalLedger:
    def __init__(
        self,
        *,
        interval_s: float = 10.0,
        max_sources: int = 1024,
        max_full_per_interval: int = 64,
    ) -> None:
        self.interval_s = interval_s
        self._max_sources = max_sources
        self._max_full = max_full_per_interval
        self._counts: dict[tuple[str, str], _Count] = {}
        self._full_this_interval = 0
        self._started_ms = _now_ms()
        self._lock = threading.Lock()
        self.recorded_total = 0
        self.counted_total = 0

    def _entry(self, outcome: str, source: str, decision_id: str) -> tuple[tuple[str, str], _Count]:
        """The counter of (outcome, source), made if new; past ``max_sources``
        sources, new ones share one overflow counter. Call holding the lock."""
        now = _now_ms()
        key = (outcome, source)
        count = self._counts.get(key)
        if count is None:
            if len(self._counts) >= self._max_sources:
                key = (outcome, OVERFLOW)
                count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = _Count(first_ms=now, first_id=decision_id)
        count.last_ms, count.last_id = now, decision_id
        return key, count

    def admit(self, outcome: str, source: str, decision_id: str) -> bool:
        """True when this refusal is to be recorded in full; otherwise it is counted."""
        if outcome not in AGGREGATED:
            return True
        with self._lock:
            key, count = self._entry(outcome, source, decision_id)
            if count.full == 0 and key[1] != OVERFLOW and self._full_this_interval < self._max_full:
                count.full = 1
                self._full_this_interval += 1
                self.recorded_total += 1
                return True
            count.counted += 1
            self.counted_total += 1
            return False

    def count(self, outcome: str, source: str, decision_id: str) -> None:
        """Counts a refusal that is never recorded in full (the per-address limit
        on unauthenticated requests); it appears in the interval's summary."""
        with self._lock:
            _key, count = self._entry(outcome, source, decision_id)
            count.counted += 1
            self.counted_total += 1

    def due(self) -> bool:
        return _now_ms() - self._started_ms >= self.interval_s * 1000

    def drain(self) -> dict[str, Any] | None:
        """The summary of the interval that ends now (None if nothing was only
        counted), and a fresh interval."""
        now = _now_ms()
        with self._lock:
            counts, started = self._counts, self._started_ms
            self._counts, self._started_ms, self._full_this_interval = {}, now, 0
        counted = [(key, c) for key, c in counts.items() if c.counted]
        if not counted:
            return None
        counted.sort(key=lambda item: (-item[1].counted, item[0]))
        return {
            "since_unix_ms": started,
            "until_unix_ms": now,
            "refusals": [
                {
                    "outcome": outcome,
                    "source": source,
                    "recorded": c.full,
                    "counted": c.counted,
                    "first_unix_ms": c.first_ms,
                    "last_unix_ms": c.last_ms,
                    "first_decision_id": c.first_id,
                    "last_decision_id": c.last_id,
                }
                for (outcome, source), c in counted
            ],
        }

    def status(self) -> dict[str, int]:
        return {"recorded_total": self.recorded_total, "counted_total": self.counted_total}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
