"""Prometheus metrics of one runtime, in its own registry (never the global one).

Decisions and their latency are counted by the Rust core on every call
(``vedette._core.DecisionMetrics``: a few atomic adds, where the client
library's counter and histogram cost microseconds of locks and label lookups)
and read into the registry when it is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from vedette._core import LATENCY_BUCKETS, DecisionMetrics
from vedette.store import StoreHealth


class RuntimeMetrics:
    def __init__(self, store_health: Callable[[], StoreHealth]) -> None:
        self.registry = CollectorRegistry()
        self.decisions = DecisionMetrics()
        self.registry.register(_DecisionCollector(self.decisions))
        self.evidence_failures = Counter(
            "vedette_evidence_failures",
            "Evidence records that could not be made durable.",
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store_health))

    def count_decision(self, outcome: str, tool: str, agent: str, seconds: float) -> None:
        """One decision, with the time from intent to answer (tool run included)."""
        self.decisions.record(outcome, tool, agent, seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DecisionCollector(Collector):
    def __init__(self, decisions: DecisionMetrics) -> None:
        self._decisions = decisions

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(
            "vedette_decisions",
            "Decisions by outcome, tool and agent.",
            labels=["outcome", "tool", "agent"],
        )
        for outcome, tool, agent, count in self._decisions.counts():
            counter.add_metric([outcome, tool, agent], count)
        yield counter
        cumulative, _, total = self._decisions.latency()
        bounds = [str(float(bound)) for bound in LATENCY_BUCKETS] + ["+Inf"]
        yield HistogramMetricFamily(
            "vedette_decision_seconds",
            "Time from intent to answer, tool execution included.",
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=total,
        )


class _StoreCollector(Collector):
    """The evidence store's pressure, read once per scrape (docs/operations.md)."""

    def __init__(self, store_health: Callable[[], StoreHealth]) -> None:
        self._store_health = store_health

    def collect(self) -> Iterator[Metric]:
        health = self._store_health()
        oldest = health.oldest_unacked_age_s
        gauges: list[tuple[str, str, float]] = [
            ("vedette_store_bytes_used", "Bytes on disk in the evidence store.", health.bytes_used),
            (
                "vedette_store_ceiling_bytes",
                "The evidence store's disk ceiling.",
                health.ceiling_bytes,
            ),
            (
                "vedette_store_unacked_sealed_bytes",
                "Sealed evidence no peer or archive has acknowledged yet.",
                health.unacked_sealed_bytes,
            ),
            (
                "vedette_store_oldest_unacked_age_seconds",
                "Age of the oldest sealed segment not acknowledged off-node (0: none).",
                0.0 if oldest is None else oldest,
            ),
            (
                "vedette_store_quarantine_unacked",
                "Quarantine reports no operator has acknowledged.",
                health.quarantine_unacked,
            ),
            (
                "vedette_store_failing",
                "1 while the store refuses appends (calls are denied).",
                1 if health.verdict == "failing" else 0,
            ),
        ]
        for name, documentation, value in gauges:
            family = GaugeMetricFamily(name, documentation)
            family.add_metric([], value)
            yield family
