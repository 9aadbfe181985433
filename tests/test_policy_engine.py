"""The engine denies on every fault and only allows a well-formed allow."""

from __future__ import annotations

import math
import threading

import pytest
from policy_helpers import ALLOW_ECHO, EXAMPLES, example_input, write_bundle

from vedette.errors import BundleError
from vedette.policy import FAULTS, POLICY_ENTRY_POINT, Bundle, PolicyEngine, load_engine

RUNAWAY = """package vedette
n := count([1 | some a in numbers.range(1, 20000); some b in numbers.range(1, 20000)])
decision := {"allow": n > 0, "reason": "counted"}
"""


def engine_for(tmp_path, rego: str, **files: str) -> PolicyEngine:
    return PolicyEngine(Bundle.load(write_bundle(tmp_path, {"p.rego": rego, **files})))


def decision_of(tmp_path, rego: str, document: object = None):
    return engine_for(tmp_path, rego).evaluate({"tool": "echo"} if document is None else document)


def test_allow_and_deny_come_from_the_policy(tmp_path):
    engine = engine_for(tmp_path, ALLOW_ECHO)
    allowed = engine.evaluate({"tool": "echo"})
    assert (allowed.allow, allowed.reason, allowed.fault) == (True, "echo is harmless", None)
    assert allowed.result == {"allow": True, "reason": "echo is harmless"}
    denied = engine.evaluate({"tool": "shell.exec"})
    assert (denied.allow, denied.reason, denied.fault) == (False, "denied by default", None)


def test_extra_decision_fields_are_kept(tmp_path):
    rego = 'package vedette\ndecision := {"allow": false, "reason": "r", "obligations": ["log"]}\n'
    decision = decision_of(tmp_path, rego)
    assert decision.result["obligations"] == ["log"]
    assert decision.to_dict() == {
        "allow": False,
        "reason": "r",
        "fault": None,
        "result": {"allow": False, "reason": "r", "obligations": ["log"]},
    }


def test_policy_that_raises_denies(tmp_path):
    rego = (
        'package vedette\ndecision := {"allow": true, "reason": sprintf("%d", [input.tool / 2])}\n'
    )
    decision = decision_of(tmp_path, rego)
    assert (decision.allow, decision.fault) == (False, "error")
    assert decision.reason.startswith("policy evaluation failed")


def test_builtin_error_is_strict_and_denies(tmp_path):
    rego = 'package vedette\ndecision := {"allow": regex.match("(", input.tool), "reason": "r"}\n'
    decision = decision_of(tmp_path, rego)
    assert (decision.allow, decision.fault) == (False, "error")


def test_runaway_policy_is_stopped_at_the_time_limit(tmp_path):
    bundle = Bundle.load(write_bundle(tmp_path, {"p.rego": RUNAWAY}))
    engine = PolicyEngine(bundle, time_limit=0.05)
    decision = engine.evaluate({"tool": "echo"})
    assert (decision.allow, decision.fault) == (False, "timeout")
    assert "50 ms" in decision.reason
    assert engine.time_limit == pytest.approx(0.05)


def test_undefined_decision_denies(tmp_path):
    rego = 'package vedette\ndecision := {"allow": true, "reason": "x"} if input.admin == "yes"\n'
    decision = decision_of(tmp_path, rego)
    assert (decision.allow, decision.fault) == (False, "undefined")
    assert decision.result is None


@pytest.mark.parametrize("allow", ['"true"', "1", "[true]", "null", '{"v": true}'])
def test_non_boolean_allow_denies(tmp_path, allow):
    decision = decision_of(
        tmp_path, f'package vedette\ndecision := {{"allow": {allow}, "reason": "r"}}\n'
    )
    assert (decision.allow, decision.fault) == (False, "malformed")
    assert "'allow' must be a boolean" in decision.reason


@pytest.mark.parametrize(
    "body", ['{"allow": true}', '{"allow": true, "reason": 1}', "true", '"yes"', "[]"]
)
def test_missing_or_non_string_reason_denies(tmp_path, body):
    decision = decision_of(tmp_path, f"package vedette\ndecision := {body}\n")
    assert (decision.allow, decision.fault) == (False, "malformed")


def test_conflicting_decisions_deny(tmp_path):
    rego = """package vedette
decision := {"allow": true, "reason": "a"} if input.tool == "echo"
decision := {"allow": false, "reason": "b"} if startswith(input.tool, "ec")
"""
    decision = decision_of(tmp_path, rego)
    assert (decision.allow, decision.fault) == (False, "error")


@pytest.mark.parametrize(
    "files",
    [
        {"p.rego": "package other\ndecision := true\n"},
        {"p.rego": "package vedette\nallow := true\n"},
        {"p.rego": "package vedette.decision\nallow := true\n"},
        {"data.json": '{"vedette": {"decision": {"allow": true, "reason": "data"}}}'},
    ],
)
def test_bundle_without_entry_point_is_rejected_at_load(tmp_path, files):
    with pytest.raises(BundleError) as caught:
        PolicyEngine(Bundle.load(write_bundle(tmp_path, files)))
    assert caught.value.rule == "entry-point"
    assert POLICY_ENTRY_POINT in str(caught.value)


def test_rego_syntax_error_is_rejected_naming_the_file(tmp_path):
    with pytest.raises(BundleError) as caught:
        PolicyEngine(
            Bundle.load(write_bundle(tmp_path, {"sub/p.rego": "package vedette\ndecision := {\n"}))
        )
    assert (caught.value.rule, caught.value.file) == ("rego", "sub/p.rego")


def test_rego_v0_needs_the_manifest_flag(tmp_path):
    v0 = 'package vedette\ndecision = {"allow": true, "reason": "v0"} { input.tool == "echo" }\n'
    with pytest.raises(BundleError):
        engine_for(tmp_path / "v1", v0)
    engine = engine_for(tmp_path / "v0", v0, **{".manifest": '{"rego_version": 0}'})
    assert engine.evaluate({"tool": "echo"}).allow


@pytest.mark.parametrize(
    "document",
    [{"tool": {1, 2}}, {"tool": math.nan}, {1: "echo"}, {"tool": b"echo"}, {"n": 2**70}, object()],
    ids=["set", "nan", "int-key", "bytes", "huge-int", "object"],
)
def test_input_without_json_form_denies_instead_of_raising(tmp_path, document):
    decision = engine_for(tmp_path, ALLOW_ECHO).evaluate(document)
    assert (decision.allow, decision.fault) == (False, "error")
    assert "no JSON form" in decision.reason


def test_deeply_nested_input_denies(tmp_path):
    document: dict = {"tool": "echo"}
    for _ in range(200):
        document = {"tool": "echo", "nested": document}
    decision = engine_for(tmp_path, ALLOW_ECHO).evaluate(document)
    assert (decision.allow, decision.fault) == (False, "error")


def test_evaluate_json(tmp_path):
    engine = engine_for(tmp_path, ALLOW_ECHO)
    assert engine.evaluate_json('{"tool": "echo"}').allow
    assert engine.evaluate_json(b'{"tool": "echo"}').allow
    broken = engine.evaluate_json(b'{"tool": ')
    assert (broken.allow, broken.fault) == (False, "error")
    assert engine.evaluate_json(b"\xff").fault == "error"


def test_fault_names_are_the_documented_ones(tmp_path):
    assert FAULTS == ("undefined", "error", "timeout", "malformed", "panic")


def test_engine_describes_its_bundle(tmp_path):
    write_bundle(tmp_path, {".manifest": '{"revision": "r9"}', "p.rego": ALLOW_ECHO})
    engine = load_engine(tmp_path)
    assert engine.revision == "r9"
    assert engine.policy_hash == Bundle.load(tmp_path).policy_hash
    assert "r9" in repr(engine)


@pytest.mark.parametrize("time_limit", [0, -1, math.inf, math.nan, 10_000])
def test_time_limit_must_be_sensible(tmp_path, time_limit):
    with pytest.raises(ValueError, match="time_limit"):
        PolicyEngine(
            Bundle.load(write_bundle(tmp_path, {"p.rego": ALLOW_ECHO})), time_limit=time_limit
        )


def test_reuse_modes_agree(tmp_path):
    bundle = Bundle.load(write_bundle(tmp_path, {"p.rego": ALLOW_ECHO}))
    engines = [PolicyEngine(bundle, reuse=reuse) for reuse in ("pool", "clone", "independent")]
    for tool in ["echo", "fs.read", "", "echo"]:
        decisions = {engine.evaluate({"tool": tool}).allow for engine in engines}
        assert decisions == {tool == "echo"}
    with pytest.raises(ValueError, match="reuse"):
        PolicyEngine(bundle, reuse="shared")


EXAMPLE_CASES = [
    (example_input("echo", {"text": "hi"}), True, "echo is always allowed"),
    (
        example_input("fs.read", {"path": "/data/hello.txt"}),
        True,
        "/data/hello.txt",
    ),
    (example_input("fs.read", {"path": "/etc/passwd"}), False, '"/etc/passwd"'),
    (
        example_input("fs.read", {"path": "/data/../secret"}),
        False,
        "/data/../secret",
    ),
    (example_input("fs.read", {"path": "/database"}), False, "/database"),
    (example_input("fs.read", {"path": 7}), False, "non-string path"),
    (example_input("fs.read", {}), False, "missing or non-string path"),
    (example_input("shell.exec", {"command": "id"}), False, 'tool "shell.exec" is not declared'),
    (example_input("fs.read", {"path": "/etc/passwd"}, {"role": "admin"}), False, "/etc/passwd"),
]


@pytest.mark.parametrize(("document", "allow", "reason_part"), EXAMPLE_CASES)
def test_example_policy(document, allow, reason_part):
    decision = load_engine(EXAMPLES / "bundle").evaluate(document)
    assert decision.allow is allow
    assert reason_part in decision.reason
    assert decision.fault is None


def test_evaluation_releases_the_gil(tmp_path):
    """While one thread evaluates a slow policy, another thread keeps running Python."""
    engine = PolicyEngine(Bundle.load(write_bundle(tmp_path, {"p.rego": RUNAWAY})), time_limit=2.0)
    started, finished = threading.Event(), threading.Event()
    result = []

    def evaluate() -> None:
        started.set()
        result.append(engine.evaluate({"tool": "echo"}))
        finished.set()

    worker = threading.Thread(target=evaluate)
    worker.start()
    started.wait()
    ran_while_evaluating = 0
    while not finished.is_set():
        ran_while_evaluating += 1
        finished.wait(0.001)
    worker.join()
    assert result[0].fault == "timeout"
    assert ran_while_evaluating > 10


def test_eight_threads_decide_as_one_thread_does(tmp_path):
    # About threads agreeing, not speed: a generous wall-clock limit, so a busy
    # machine descheduling a thread mid-evaluation is not a failure.
    engine = load_engine(EXAMPLES / "bundle", time_limit=5.0)
    documents = [case[0] for case in EXAMPLE_CASES]
    expected = [(d.allow, d.reason) for d in map(engine.evaluate, documents)]
    rounds = 400
    failures: list[str] = []

    def work(offset: int) -> None:
        for i in range(rounds):
            index = (i + offset) % len(documents)
            decision = engine.evaluate(documents[index])
            if (decision.allow, decision.reason) != expected[index]:
                failures.append(f"thread {offset} round {i}: {decision!r}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.slow
def test_eight_threads_for_ten_seconds_decide_as_one_thread_does():
    import time

    # The limit is wall-clock time: on a machine busy with other work a thread
    # can be descheduled past 100 ms mid-evaluation. This test is about threads
    # agreeing, not about speed, so it allows plenty.
    engine = load_engine(EXAMPLES / "bundle", time_limit=5.0)
    documents = [case[0] for case in EXAMPLE_CASES]
    expected = [(d.allow, d.reason) for d in map(engine.evaluate, documents)]
    deadline = time.monotonic() + 10.0
    failures: list[str] = []
    counts = [0] * 8

    def work(offset: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            index = (i + offset) % len(documents)
            decision = engine.evaluate(documents[index])
            if (decision.allow, decision.reason) != expected[index]:
                failures.append(f"thread {offset} round {i}: {decision!r}")
            i += 1
        counts[offset] = i

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert all(count > 0 for count in counts)
