"""Idempotent retries: the same request_id from the same caller with the same
bytes is answered again with the first answer, and the tool runs once."""

import asyncio
import dataclasses
import threading
import time

import pytest
from runtime_fixtures import AGENT, runtime_config

from vedette.config import IntentLimits, QuotaConfig
from vedette.runtime.identity import Caller
from vedette.runtime.interceptor import Runtime

CALLER = Caller("adapter-a", AGENT)
OTHER = Caller("adapter-other", AGENT)


class Counter:
    """A tool that counts its runs (``marker`` is declared and allowed by the policy)."""

    name = "marker"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.runs = 0
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def run(self, args):
        time.sleep(self.delay_s)
        with self._lock:
            self.runs += 1
            return {"run": self.runs}


def make(tmp_path, delay_s: float = 0.0, **changes):
    runtime = Runtime(runtime_config(tmp_path, **changes))
    counter = Counter(delay_s)
    runtime.tools.register(counter)
    return runtime, counter


def test_a_retried_request_gets_the_first_answer_and_the_tool_runs_once(tmp_path):
    runtime, counter = make(tmp_path)
    intent = {"tool": "marker", "args": {}, "request_id": "r-1"}
    first = runtime.decide(intent, CALLER)
    again = runtime.decide(intent, CALLER)
    assert first.outcome == "allow"
    assert (again.decision_id, again.output) == (first.decision_id, {"run": 1})
    assert counter.runs == 1
    # Another caller's request_id is its own.
    assert runtime.decide(intent, OTHER).output == {"run": 2}
    # No request_id: every request runs.
    assert runtime.decide({"tool": "marker", "args": {}}, CALLER).output == {"run": 3}
    runtime.close()


def test_concurrent_duplicates_wait_for_the_first(tmp_path):
    runtime, counter = make(tmp_path, delay_s=0.3)
    intent = {"tool": "marker", "args": {}, "request_id": "slow-1"}

    async def both():
        return await asyncio.gather(
            runtime.decide_async(intent, CALLER), runtime.decide_async(intent, CALLER)
        )

    first, second = asyncio.run(both())
    assert first.decision_id == second.decision_id
    assert first.output == second.output == {"run": 1}
    assert counter.runs == 1
    runtime.close()


def test_the_same_request_id_for_another_intent_is_refused(tmp_path):
    runtime, counter = make(tmp_path)
    runtime.decide({"tool": "marker", "args": {}, "request_id": "r-2"}, CALLER)
    other = runtime.decide({"tool": "echo", "args": {"text": "x"}, "request_id": "r-2"}, CALLER)
    assert other.status == 400
    assert other.reason == "invalid intent: request_id 'r-2' was already used for another intent"
    assert counter.runs == 1
    runtime.close()


def test_a_denial_is_replayed_and_a_refusal_is_decided_again(tmp_path):
    runtime, _ = make(tmp_path, quota=QuotaConfig(rate_per_s=5, burst=1))
    denied = {"tool": "fs.read", "args": {"path": "/etc/shadow"}, "request_id": "d-1"}
    first = runtime.decide(denied, CALLER)
    time.sleep(0.3)
    assert first.status == 403
    assert runtime.decide(denied, CALLER).decision_id == first.decision_id
    # Over quota is not a decision: the retry, once there is quota, is decided.
    allowed = {"tool": "echo", "args": {"text": "x"}, "request_id": "q-1"}
    assert runtime.decide(allowed, CALLER).status == 429
    time.sleep(0.3)
    assert runtime.decide(allowed, CALLER).status == 200
    runtime.close()


def test_after_the_window_a_request_id_runs_again(tmp_path):
    limits = dataclasses.replace(IntentLimits(), retry_window_s=0.2)
    runtime, _ = make(tmp_path, intent=limits)
    intent = {"tool": "marker", "args": {}, "request_id": "w-1"}
    runtime.decide(intent, CALLER)
    time.sleep(0.3)
    assert runtime.decide(intent, CALLER).output == {"run": 2}
    runtime.close()


@pytest.mark.parametrize("entries", [3])
def test_the_table_is_bounded(tmp_path, entries):
    limits = dataclasses.replace(IntentLimits(), max_retry_entries=entries)
    runtime, _ = make(tmp_path, intent=limits)
    for n in range(10):
        runtime.decide({"tool": "marker", "args": {}, "request_id": f"b-{n}"}, CALLER)
    assert len(runtime.retries) == entries
    # The oldest were dropped: their request_id runs again; the newest is replayed.
    assert runtime.decide({"tool": "marker", "args": {}, "request_id": "b-0"}, CALLER).output == {
        "run": 11
    }
    assert runtime.decide({"tool": "marker", "args": {}, "request_id": "b-9"}, CALLER).output == {
        "run": 10
    }
    runtime.close()
