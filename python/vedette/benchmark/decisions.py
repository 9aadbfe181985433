"""In-process decisions: ``Runtime.decide`` on the embedded example.

The example agent and policy, the ``echo`` tool, durable evidence (every allowed
call returns once its record is on stable storage), with the caller's rate
quota lifted so the allow path is what is measured.
"""

from __future__ import annotations

import dataclasses
import secrets

from vedette.benchmark.common import BenchError, Metric, Scratch, percentile, timed_threads
from vedette.config import ListenConfig, QuotaConfig

BODY = {"tool": "echo", "args": {"text": "hello"}}
# Far above what a run can write; the store's ceiling must not turn allows into denials.
CEILING_BYTES = 4 << 30


def measure(scratch: Scratch, seconds: float, threads: int) -> list[Metric]:
    from vedette.example import EXAMPLE_AGENT, EXAMPLE_CALLER, example_config
    from vedette.runtime.identity import Caller
    from vedette.serve import build_runtime, wait_for_releases

    # Decided in process: nothing listens, so the listener keeps its defaults.
    listen = ListenConfig()
    base = example_config(
        listen.host, listen.port, secrets.token_urlsafe(16), scratch.folder(f"decisions-{threads}")
    )
    # The store in the scratch folder whatever VEDETTE_* variables say; no peers, no archive.
    config = dataclasses.replace(
        base,
        quota=QuotaConfig(rate_per_s=1e9, burst=1e9),
        store=dataclasses.replace(
            base.store, dir=None, ceiling_bytes=CEILING_BYTES, durability="durable"
        ),
        peers=None,
        archive=None,
    )
    scratch.check(config.store_dir)
    runtime = build_runtime(config)
    wait_for_releases(runtime)
    caller = Caller(EXAMPLE_CALLER, EXAMPLE_AGENT)

    def decide() -> None:
        decision = runtime.decide(BODY, caller)
        if not decision.allowed:
            raise BenchError(f"the example denied echo: {decision.reason}")

    try:
        runtime.decide(BODY, caller)  # warm: the loop thread, the policy, the store
        latencies, elapsed = timed_threads(threads, seconds, decide)
    except BenchError as err:
        raise BenchError(f"in-process decisions: {err}") from None
    finally:
        runtime.close()
    per_s = len(latencies) / elapsed
    p99_us = percentile(latencies, 0.99) * 1e6
    plural = "thread" if threads == 1 else "threads"
    detail = f"{len(latencies)} decisions, {threads} {plural}"
    return [
        Metric(f"decisions.t{threads}.per_s", f"in-process decisions, {threads} {plural}",
               per_s, "decisions/s", "higher", detail),
        Metric(f"decisions.t{threads}.p99_us", f"in-process decision p99, {threads} {plural}",
               p99_us, "µs", "lower", detail),
    ]  # fmt: skip
