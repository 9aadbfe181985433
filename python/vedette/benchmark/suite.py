"""The whole run: every measurement in turn, inside one scratch folder."""

from __future__ import annotations

import time
from collections.abc import Callable

from vedette.benchmark import decisions, hashing, http_load, releases, store
from vedette.benchmark.common import BenchError, Metric, Progress, Scratch, Settings
from vedette.benchmark.process import HOST, SETTLE_S, ExampleServer, rss_kib, startup_metrics
from vedette.benchmark.report import format_value

STEPS = 6


def run(settings: Settings, progress: Progress) -> list[Metric]:
    """Every metric, in the order of the table. Raises ``BenchError`` when a
    measurement cannot run; the scratch folder and any child server are gone
    when this returns or raises (``KeyboardInterrupt`` included)."""
    metrics: list[Metric] = []
    half = settings.seconds / 2

    def step(number: int, title: str, measure: Callable[[], list[Metric]]) -> None:
        progress(f"[{number}/{STEPS}] {title} ...")
        began = time.perf_counter()
        try:
            found = measure()
        except BenchError:
            raise
        except Exception as err:  # whatever stopped it, said in one line
            raise BenchError(f"{title}: {type(err).__name__}: {err}") from err
        metrics.extend(found)
        summary = "; ".join(f"{metric.label} {format_value(metric)}" for metric in found)
        progress(f"[{number}/{STEPS}] {summary} ({time.perf_counter() - began:.1f} s)")

    with Scratch() as scratch:
        step(
            1,
            "in-process decisions (Runtime.decide, example policy, durable evidence)",
            lambda: decisions.measure(scratch, half, 1) + decisions.measure(scratch, half, 16),
        )
        step(
            2,
            "durable appends (SegmentStore, 1 and 16 writers)",
            lambda: [store.measure(scratch, half, 1), store.measure(scratch, half, 16)],
        )
        step(3, "BLAKE3 and SHA-256 throughput", lambda: hashing.measure(half))
        step(
            4,
            "release verification (signed release in an OCI image layout)",
            lambda: [releases.measure(scratch, settings.seconds)],
        )
        servers: list[ExampleServer] = []
        try:
            step(
                5,
                "vedette serve --example: start-to-ready and idle memory",
                lambda: _startup(scratch, settings, servers),
            )
            server = servers[-1]
            step(
                6,
                f"POST /v1/tool over loopback, {settings.connections} connections "
                "(load generator and server share this device's cores)",
                lambda: http_load.measure(
                    HOST, server.port, server.token, settings.seconds, settings.connections
                ),
            )
        finally:
            for running in servers:
                running.stop()
    return metrics  # fmt: skip


def _startup(scratch: Scratch, settings: Settings, servers: list[ExampleServer]) -> list[Metric]:
    """Start the example server ``settings.starts`` times (one after another, each
    in its own state folder; fewer where starting is so slow that the starts would
    take more than two timed loops); the last one stays up, in ``servers``, for
    the load run."""
    ready: list[float] = []
    for number in range(settings.starts):
        if ready and sum(ready) * (number + 1) / number > 2 * settings.seconds:
            break
        if servers:
            servers[-1].stop()
        server = ExampleServer(scratch, f"serve-{number}")
        servers.append(server)
        ready.append(server.start())
    time.sleep(SETTLE_S)
    return startup_metrics(ready, rss_kib(servers[-1].pid))
