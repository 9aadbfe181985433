"""Release lifecycle events: to the segment store, the log, the metrics and
``/v1/status`` (the last few per agent).

Each event is a ``release_event`` record, encoded by the core like every other
evidence record (``rust/gate/record.rs``), appended durably to the node's
store beside the decision evidence; a record that cannot be stored is still
logged and counted.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from vedette._core import event_record

log = logging.getLogger("vedette.releases")

EVENTS = (
    "release.fetched",
    "release.verified",
    "release.rejected",
    "release.activated",
    "release.fallback_lkg",
    "release.deny_all",
    "release.rollback_refused",
    "release.expired",
    "controlplane.unreachable",
    "controlplane.restored",
    "clock.behind_floor",
    "clock.caught_up",
    "release.revoked",
    "keys.reloaded",
    "keys.reload_failed",
)
# The events logged as warnings.
WARNINGS = frozenset({
    "release.rejected", "release.fallback_lkg", "release.deny_all", "controlplane.unreachable",
    "release.rollback_refused", "release.expired", "clock.behind_floor", "release.revoked",
    "keys.reload_failed",
})  # fmt: skip
HEALTH_STATES = ("ok", "stale", "lkg", "deny_all", "clock_behind")
RECENT_EVENTS = 20


class ReleaseEvents:
    """Lifecycle events to the store, the log, the metrics and ``/v1/status``."""

    def __init__(self, store: Any, node_id: str) -> None:
        self._store = store
        self._node_id = node_id
        self.counter = Counter(
            "vedette_release_events",
            "Release lifecycle and control-plane events by event, agent and step.",
            ["event", "agent", "step"],
            registry=None,
        )
        self.health = Gauge(
            "vedette_release_health",
            "1 for each agent's current release health state "
            "(ok, stale, lkg, deny_all, clock_behind).",
            ["agent", "state"],
            registry=None,
        )
        self.recent: dict[str, collections.deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def bind(self, registry: CollectorRegistry) -> None:
        for collector in (self.counter, self.health):
            with contextlib.suppress(ValueError):  # already registered there
                registry.register(collector)

    def emit(self, event: str, agent: str, **fields: Any) -> dict[str, Any]:
        assert event in EVENTS, event
        present = {k: v for k, v in fields.items() if v is not None}
        encoded = event_record(
            self._node_id,
            "release_event",
            json.dumps({"event": event, "agent": agent, **present}).encode(),
        )
        record: dict[str, Any] = json.loads(encoded)
        step = str(fields.get("step", ""))
        self.counter.labels(event, agent, step).inc()
        with self._lock:
            self.recent.setdefault(agent, collections.deque(maxlen=RECENT_EVENTS)).append(record)
        # What needs an operator is a warning; an agent's first start, before
        # anything was ever activated, is not.
        level = logging.WARNING if event in WARNINGS and not fields.get("initial") else logging.INFO
        detail = " ".join(f"{k}={v}" for k, v in present.items())
        log.log(level, "%s agent=%s %s", event, agent, detail)
        try:
            self._store.append(encoded)
        except Exception:  # an event that cannot be stored is still logged and counted
            log.exception("release event %s could not be recorded", event)
        return record

    def set_health(self, agent: str, state: str) -> None:
        for candidate in HEALTH_STATES:
            self.health.labels(agent, candidate).set(1 if candidate == state else 0)
