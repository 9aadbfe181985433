"""Prometheus metrics of one runtime, in its own registry (never the global one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
)  # fmt: skip


class RuntimeMetrics:
    def __init__(self, store_usage: Callable[[], tuple[int, int]]) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "vedette_decisions",
            "Decisions by outcome, tool and agent.",
            ["outcome", "tool", "agent"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vedette_decision_seconds",
            "Time from intent to answer, tool execution included.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.evidence_failures = Counter(
            "vedette_evidence_failures",
            "Evidence records that could not be made durable.",
            registry=self.registry,
        )
        used = Gauge(
            "vedette_store_bytes_used",
            "Bytes on disk in the evidence store.",
            registry=self.registry,
        )
        ceiling = Gauge(
            "vedette_store_ceiling_bytes",
            "The evidence store's disk ceiling.",
            registry=self.registry,
        )
        used.set_function(lambda: store_usage()[0])
        ceiling.set_function(lambda: store_usage()[1])

        # labels() costs a lock and a tuple of strings per call; children are
        # few (outcomes x known tools x configured agents), so keep them.
        self._decision_children: dict[tuple[str, str, str], Any] = {}

    def count_decision(self, outcome: str, tool: str, agent: str) -> None:
        key = (outcome, tool, agent)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decision_children[key] = self.decisions.labels(outcome, tool, agent)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
