"""Prometheus metrics of one runtime, in its own registry (never the global one).

Decisions and their latency are counted by the Rust core on every call
(``vedette._core.DecisionMetrics``: a few atomic adds, where the client
library's counter and histogram cost microseconds of locks and label lookups)
and read into the registry when it is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from vedette._core import LATENCY_BUCKETS, DecisionMetrics


class RuntimeMetrics:
    def __init__(self, store_usage: Callable[[], tuple[int, int]]) -> None:
        self.registry = CollectorRegistry()
        self.decisions = DecisionMetrics()
        self.registry.register(_DecisionCollector(self.decisions))
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
