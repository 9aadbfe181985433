"""The decision pipeline with the real store and policy engine: every fault denies,
every outcome is recorded, and nothing in an intent turns a deny into an allow."""

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_fixtures import AGENT, ANY_OBJECT, POLICY, runtime_config, write_release

from vedette.config import AgentConfig, CallerConfig, StoreConfig, token_digest
from vedette.runtime.identity import Caller
from vedette.runtime.interceptor import Runtime
from vedette.store import SegmentStore

CALLER = Caller("adapter-a", AGENT)


class Boom:
    name = "boom"

    def run(self, args):
        raise RuntimeError("tool exploded")


class Slow:
    name = "slow"

    def run(self, args):
        time.sleep(5)
        return "late"


class Weird:
    name = "weird"

    def run(self, args):
        return "should never run: the policy's allow is not a boolean"


class Marker:
    """Leaves a file behind when it runs, so a test can see whether it ran."""

    name = "marker"

    def __init__(self, path):
        self.path = path

    def run(self, args):
        self.path.write_text("ran")
        return "ran"


def make_runtime(tmp_path, **changes) -> Runtime:
    runtime = Runtime(runtime_config(tmp_path, **changes))
    runtime.tools.register(Boom())
    runtime.tools.register(Slow())
    runtime.tools.register(Weird())
    return runtime


@pytest.fixture
def runtime(tmp_path):
    runtime = make_runtime(tmp_path)
    yield runtime
    runtime.close()


def records(runtime: Runtime) -> list[dict]:
    runtime.flush_evidence()  # tool outcomes are queued, not waited for
    return [json.loads(record) for _, record in runtime.store.iter_records()]


def decisions_of(runtime: Runtime) -> list[dict]:
    return [r for r in records(runtime) if r["kind"] == "decision"]


def test_allowed_call_runs_the_tool_and_records_both_steps(runtime):
    decision = runtime.decide({"tool": "echo", "args": {"text": "hi"}}, CALLER)
    assert (decision.outcome, decision.status, decision.output) == ("allow", 200, {"text": "hi"})
    assert decision.body()["decision"] == "allow"
    found = [r for r in records(runtime) if r.get("decision_id") == decision.decision_id]
    assert [r["kind"] for r in found] == ["decision", "tool_outcome"]
    assert found[0]["outcome"] == "allow"
    assert found[0]["release"]["policy_hash"].startswith("sha256:")
    assert found[0]["release"]["behavioral_fingerprint"].startswith("blake3:")
    assert found[1]["status"] == "ok"
    assert found[1]["output_digest"].startswith("sha256:")


def test_large_inputs_are_evaluated_off_the_loop_with_the_same_answers(runtime):
    from vedette.runtime.interceptor import INLINE_EVALUATION_BYTES

    # Worker threads start on first use: none until a large input comes.
    assert runtime.decide({"tool": "echo", "args": {"text": "small"}}, CALLER).allowed
    assert len(runtime._evaluators._threads) == 0
    text = "x" * (INLINE_EVALUATION_BYTES + 1)
    allowed = runtime.decide({"tool": "echo", "args": {"text": text}}, CALLER)
    assert (allowed.outcome, allowed.output) == ("allow", {"text": text})
    assert len(runtime._evaluators._threads) == 1
    path = "/etc/" + "a" * INLINE_EVALUATION_BYTES
    denied = runtime.decide({"tool": "fs.read", "args": {"path": path}}, CALLER)
    assert denied.status == 403
    assert "outside" in denied.reason
    # Arguments and claims count together.
    half = "y" * (INLINE_EVALUATION_BYTES // 2)
    intent = {"tool": "echo", "args": {"text": half}, "claims": {"note": half}}
    assert runtime.decide(intent, CALLER).outcome == "allow"


def test_policy_denial_is_403_and_the_tool_does_not_run(runtime):
    decision = runtime.decide({"tool": "fs.read", "args": {"path": "/etc/passwd"}}, CALLER)
    assert decision.status == 403
    assert decision.body() == {
        "decision": "deny",
        "reason": "/etc/passwd is outside /data",
        "decision_id": decision.decision_id,
    }
    assert [r["outcome"] for r in decisions_of(runtime)] == ["deny"]
    assert not [r for r in records(runtime) if r["kind"] == "tool_outcome"]


def test_fs_read_inside_the_mount_is_allowed(runtime):
    decision = runtime.decide({"tool": "fs.read", "args": {"path": "/data/a.csv"}}, CALLER)
    assert decision.outcome == "allow"
    assert decision.output["content"] == "x,y\n1,2\n"


def test_undeclared_tool_is_denied_before_policy(runtime):
    decision = runtime.decide({"tool": "shell.exec", "args": {"cmd": "id"}}, CALLER)
    assert decision.status == 403
    assert decision.reason == "tool 'shell.exec' is not declared by agent 'recon'"


def test_declared_tool_missing_on_this_node_is_denied(runtime):
    decision = runtime.decide({"tool": "declared.missing"}, CALLER)
    assert decision.status == 403
    assert "declared but not available" in decision.reason


def test_args_that_break_the_schema_are_invalid(runtime):
    decision = runtime.decide({"tool": "echo", "args": {"txt": "hi"}}, CALLER)
    assert decision.status == 400
    assert decision.reason.startswith("invalid intent: args do not fit the schema of 'echo'")
    assert '"text" is a required property' in decision.reason


def test_malformed_intent_is_invalid_and_recorded(runtime):
    decision = runtime.decide({"tool": "echo", "admin": True}, CALLER)
    assert decision.status == 400
    assert decisions_of(runtime)[0]["outcome"] == "invalid"


def decide_under(tmp_path, policy: str, eval_timeout_ms: int = 100):
    """One echo call for an agent whose policy is ``policy``."""
    agent = write_release(tmp_path / "r", "subject", [("echo", ANY_OBJECT)], policy)
    runtime = with_agent(tmp_path, agent, eval_timeout_ms)
    try:
        return runtime.decide({"tool": "echo", "args": {}}, Caller("c", "subject"))
    finally:
        runtime.close()


def test_evaluator_error_denies(tmp_path):
    decision = decide_under(
        tmp_path,
        "package vedette\nimport rego.v1\n"
        'decision := {"allow": true, "reason": x} if { x := to_number("not a number") }\n',
    )
    assert decision.status == 403
    assert decision.reason.startswith("policy error")


def test_evaluator_timeout_denies(tmp_path):
    decision = decide_under(
        tmp_path,
        "package vedette\nimport rego.v1\n"
        'decision := {"allow": true, "reason": "done"} if {\n'
        "    count([x | some x in numbers.range(1, 100000000); x % 7 == 3]) > 0\n}\n",
        eval_timeout_ms=50,
    )
    assert decision.status == 403
    assert decision.reason.startswith("policy timeout")


def test_undefined_decision_denies(tmp_path):
    decision = decide_under(
        tmp_path,
        'package vedette\nimport rego.v1\ndecision := {"allow": true, "reason": "x"} if false\n',
    )
    assert decision.status == 403
    assert decision.reason.startswith("policy undefined")


def test_non_boolean_allow_denies(runtime):
    decision = runtime.decide({"tool": "weird"}, CALLER)
    assert decision.status == 403
    assert decision.reason.startswith("policy malformed")


def test_no_active_release_denies_all(runtime):
    decision = runtime.decide({"tool": "echo", "args": {"text": "x"}}, Caller("c", "nobody"))
    assert decision.status == 403
    assert decision.reason == "no active release for agent 'nobody'"


def test_corrupt_bundle_at_load_denies_all(tmp_path):
    bundle = tmp_path / "corrupt.tar.gz"
    bundle.write_bytes(b"\x1f\x8b this is not a gzip stream")
    agent = write_release(tmp_path / "r", "corrupt", [("echo", ANY_OBJECT)], POLICY)
    runtime = with_agent(tmp_path, AgentConfig("corrupt", agent.manifest, bundle, unsigned=True))
    decision = runtime.decide({"tool": "echo", "args": {}}, Caller("c", "corrupt"))
    assert decision.status == 403
    assert "its release failed to load" in decision.reason
    assert runtime.health()["agents"]["corrupt"] == "deny_all"
    runtime.close()


def test_store_full_denies_and_the_tool_does_not_run(tmp_path):
    runtime = make_runtime(tmp_path, store=StoreConfig(ceiling_bytes=64 * 1024))
    marker = tmp_path / "ran"
    runtime.tools.register(Marker(marker))
    for _ in range(10_000):
        decision = runtime.decide({"tool": "marker", "args": {}}, CALLER)
        if decision.outcome != "allow":
            break
        marker.unlink()
    assert decision.status == 403, "still allowing after 10000 calls"
    assert not marker.exists(), "the tool did not run"
    assert decision.reason.startswith("evidence could not be recorded (StoreFullError")
    runtime.close()


def test_store_io_error_denies(tmp_path):
    runtime = make_runtime(tmp_path)
    runtime.store.close()  # every append now fails
    decision = runtime.decide({"tool": "echo", "args": {"text": "x"}}, CALLER)
    assert decision.status == 403
    assert decision.reason.startswith("evidence could not be recorded")
    runtime.tools.close()


def test_tool_raises_is_502_allow_with_error(runtime):
    decision = runtime.decide({"tool": "boom"}, CALLER)
    assert decision.status == 502
    assert decision.body()["decision"] == "allow"
    assert decision.error == {"type": "error", "message": "RuntimeError: tool exploded"}
    outcome = next(r for r in records(runtime) if r["kind"] == "tool_outcome")
    assert outcome["status"] == "error"


def test_a_fault_after_the_allow_is_recorded_denies_under_the_same_decision_id(runtime):
    async def broken(name, args):
        raise RuntimeError("registry vanished")

    runtime.tools.execute = broken  # fails outside any tool's own guard
    decision = runtime.decide({"tool": "echo", "args": {"text": "x"}}, CALLER)
    assert decision.status == 403
    assert decision.reason == "internal error (RuntimeError); denied"
    mine = [r for r in decisions_of(runtime) if r["decision_id"] == decision.decision_id]
    assert [r["outcome"] for r in mine] == ["allow", "deny"]


def test_tool_hangs_is_a_502_timeout(runtime):
    decision = runtime.decide({"tool": "slow"}, CALLER)
    assert decision.status == 502
    assert decision.error["type"] == "timeout"


class BrokenReleases:
    def active(self, agent):
        raise KeyError("release table vanished")

    def unavailable_reason(self, agent):
        return "unknown"

    def agents(self):
        return []

    def health_state(self, agent):
        return "deny_all"

    def describe_agent(self, agent):
        return {}

    def bind_metrics(self, registry):
        pass

    def close(self):
        pass


def test_unexpected_exception_inside_the_runtime_denies(tmp_path):
    runtime = Runtime(runtime_config(tmp_path), releases=BrokenReleases())
    decision = runtime.decide({"tool": "echo", "args": {"text": "x"}}, CALLER)
    assert decision.status == 403
    assert decision.reason == "internal error (KeyError); denied"
    assert decisions_of(runtime)[0]["outcome"] == "deny"
    runtime.close()


def test_over_quota_is_429_with_retry_after(tmp_path):
    from vedette.config import QuotaConfig

    runtime = make_runtime(tmp_path, quota=QuotaConfig(rate_per_s=0.5, burst=2))
    outcomes = [
        runtime.decide({"tool": "echo", "args": {"text": "x"}}, CALLER).outcome for _ in range(3)
    ]
    assert outcomes == ["allow", "allow", "over_quota"]
    decision = runtime.decide({"tool": "echo", "args": {"text": "x"}}, CALLER)
    assert decision.status == 429
    assert decision.retry_after_s is not None
    assert 0 < decision.retry_after_s <= 2
    runtime.close()


def test_evidence_masks_secret_arguments(runtime):
    runtime.decide({"tool": "shell.exec", "args": {"password": "hunter2", "x": 1}}, CALLER)
    record = decisions_of(runtime)[0]
    assert record["input"]["args"] == {"password": "***", "x": 1}
    assert "hunter2" not in json.dumps(records(runtime))


def test_one_decision_record_per_request_with_its_outcome(runtime):
    """Every request has its own record, except a repeated refusal of one kind
    from one caller: that one is counted in the refusal summary instead."""
    intents = [
        ({"tool": "echo", "args": {"text": "a"}}, "allow"),
        ({"tool": "fs.read", "args": {"path": "/etc/shadow"}}, "deny"),
        ({"tool": "shell.exec"}, "deny"),
        ({"tool": "echo", "args": {}}, "invalid"),
        ({"tool": "boom"}, "tool_error"),
        ({"tool": 3}, "invalid"),
    ]
    ids = {}
    for intent, expected in intents:
        decision = runtime.decide(intent, CALLER)
        assert decision.outcome == expected, intent
        ids[decision.decision_id] = expected
    repeated = list(ids)[-1]
    by_id = {}
    for record in decisions_of(runtime):
        assert record["decision_id"] not in by_id, "one decision record per request"
        by_id[record["decision_id"]] = record["outcome"]
    expected_records = {i: ("allow" if o == "tool_error" else o) for i, o in ids.items()}
    del expected_records[repeated]
    assert by_id == expected_records
    runtime.housekeep(final=True)
    (summary,) = [r for r in records(runtime) if r["kind"] == "refusal_summary"]
    assert summary["refusals"] == [
        {
            "outcome": "invalid",
            "source": f"caller {CALLER.id}",
            "recorded": 1,
            "counted": 1,
            "first_unix_ms": summary["refusals"][0]["first_unix_ms"],
            "last_unix_ms": summary["refusals"][0]["last_unix_ms"],
            "first_decision_id": list(ids)[3],
            "last_decision_id": repeated,
        }
    ]


def with_agent(tmp_path, agent: AgentConfig, eval_timeout_ms: int = 100) -> Runtime:
    from vedette.config import PolicyConfig

    config = runtime_config(
        tmp_path,
        agents=(agent,),
        policy=PolicyConfig(eval_timeout_ms=eval_timeout_ms),
        callers=(CallerConfig("c", agent.name, token_sha256=token_digest("t")),),
    )
    return Runtime(config)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    claims=st.dictionaries(st.text(max_size=12), JSONISH, max_size=4)
    | st.just({"role": "admin", "allow": True, "agent": "scribe", "decision": "allow"}),
    path=st.sampled_from(["/etc/passwd", "/data/../etc/passwd", "/DATA/a.csv", "/data", "data/a"]),
)
def test_claims_never_turn_a_deny_into_an_allow(runtime, claims, path):
    intent = {"tool": "fs.read", "args": {"path": path}, "claims": claims}
    decision = runtime.decide(intent, CALLER)
    assert decision.body()["decision"] == "deny"
    assert decision.output is None


def test_store_of_a_closed_runtime_reopens_clean(tmp_path):
    runtime = make_runtime(tmp_path)
    runtime.decide({"tool": "echo", "args": {"text": "kept"}}, CALLER)
    directory = runtime.config.store_dir
    runtime.close()
    with SegmentStore.open(directory, node_id="test-node") as store:
        kinds = [json.loads(record)["kind"] for _, record in store.iter_records()]
    # First the node's signing key (origin signatures), then the call.
    assert kinds == ["node_key", "decision", "tool_outcome"]
