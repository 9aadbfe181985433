"""pytest-benchmark suites for the policy engine, each beside its anchors.

pytest bench/test_bench_policy.py --benchmark-only --benchmark-group-by=group
"""

import json

import pytest
import regopy
import regorus
from policy_cases import example_case, large_bundle, rbac_case

from vedette.policy import Bundle, PolicyEngine

CASES = {"example": example_case(), "rbac": rbac_case()}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("implementation", ["vedette", "regorus-binding", "regopy"])
def test_decision(benchmark, case, implementation):
    spec = CASES[case]
    benchmark.group = f"decision: {spec.name}"
    if implementation == "vedette":
        engine = PolicyEngine(Bundle.load(spec.bundle))

        def call():
            return engine.evaluate(spec.input).allow

    elif implementation == "regorus-binding":
        anchor = regorus.Engine()
        for name, source in spec.modules.items():
            anchor.add_policy(name, source)
        if spec.data:
            anchor.add_data(spec.data)

        def call():
            anchor.set_input(spec.input)
            result = anchor.eval_rule(spec.anchor_rule)
            return result["allow"] if isinstance(result, dict) else result

    else:
        interpreter = regopy.Interpreter()
        for name, source in spec.modules.items():
            interpreter.add_module(name, source)
        if spec.data:
            interpreter.add_data(spec.data)
        query = f"x := {spec.anchor_rule}"

        def call():
            interpreter.set_input(spec.input)
            output = interpreter.query(query)
            value = json.loads(output.binding("x").json())
            return value["allow"] if isinstance(value, dict) else value

    assert benchmark(call) is spec.expected_allow


@pytest.mark.parametrize("reuse", ["pool", "clone", "independent"])
def test_decision_reuse(benchmark, reuse):
    spec = CASES["example"]
    engine = PolicyEngine(Bundle.load(spec.bundle), reuse=reuse)
    benchmark.group = "decision: engine reuse, one thread"
    assert benchmark(lambda: engine.evaluate(spec.input).allow) is True


def test_load_1mib_bundle(benchmark):
    archive, _ = large_bundle()
    benchmark.group = "load"
    engine = benchmark(lambda: PolicyEngine(Bundle.from_bytes(archive)))
    decision = engine.evaluate({"user": "user1", "action": "none", "resource": "none"})
    assert decision.allow is False
