"""One outcome vocabulary: the core's, which every evidence record uses; the
runtime's answers add only ``tool_error``."""

from __future__ import annotations

import typing

import pytest

from vedette._core import DECISION_OUTCOMES, Gate, QuotaTable
from vedette.runtime.decision import STATUS, Outcome


def test_the_runtime_answers_with_the_cores_outcomes_and_tool_error():
    assert set(typing.get_args(Outcome)) == {*DECISION_OUTCOMES, "tool_error"}
    assert set(STATUS) == set(typing.get_args(Outcome))


def test_a_record_with_an_outcome_outside_the_vocabulary_is_refused():
    gate = Gate(
        node_id="node-a",
        mask_args=[],
        max_depth=32,
        max_args_bytes=1 << 15,
        max_claims_bytes=1 << 12,
        quotas=QuotaTable(1000.0, 1000.0, 16),
        tools=[],
    )
    for outcome in DECISION_OUTCOMES:
        record = gate.decision_record(decision_id="d", outcome=outcome, reason="r")
        assert f'"outcome":"{outcome}"'.encode() in record
    with pytest.raises(ValueError, match="not a decision outcome"):
        gate.decision_record(decision_id="d", outcome="maybe", reason="r")  # type: ignore[arg-type]
