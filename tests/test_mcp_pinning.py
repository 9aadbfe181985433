"""Tool pinning without MCP peers: what matches, what is refused, and when a
mismatch is reported (python/vedette/mcp/pinning.py)."""

from __future__ import annotations

from vedette.mcp.pinning import Pins, UpstreamTool, compare, digest

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}}
DECLARED = {"name": "echo", "description": "Echoes.", "args_schema": SCHEMA}


def offered(description: str | None = "Echoes.", schema: object = SCHEMA) -> UpstreamTool:
    return UpstreamTool("echo", description, schema)


def test_the_same_definition_in_another_key_order_matches() -> None:
    reordered = {"properties": {"text": {"type": "string"}}, "type": "object"}
    assert compare(offered(schema=reordered), DECLARED) is None


def test_each_pinned_field_that_differs_is_named_with_both_digests() -> None:
    mismatch = compare(offered(description="Echoes, and more."), DECLARED)
    assert mismatch is not None
    assert (mismatch.field, mismatch.declared, mismatch.offered) == (
        "description",
        digest("Echoes."),
        digest("Echoes, and more."),
    )
    widened = {**SCHEMA, "additionalProperties": True}
    mismatch = compare(offered(schema=widened), DECLARED)
    assert mismatch is not None
    assert mismatch.field == "input_schema"
    assert "input_schema" in mismatch.reason


def test_a_missing_description_matches_only_an_empty_one() -> None:
    assert compare(offered(description=None), DECLARED) is not None
    assert compare(offered(description=None), {**DECLARED, "description": ""}) is None


def test_an_undeclared_tool_is_refused() -> None:
    mismatch = compare(offered(), None)
    assert mismatch is not None
    assert mismatch.field == "undeclared"
    assert mismatch.declared is None


def test_a_mismatch_is_reported_once_per_change() -> None:
    pins = Pins()
    changed = offered(description="v2")
    assert [m.field for m in pins.update([changed], [DECLARED])] == ["description"]
    assert pins.update([changed], [DECLARED]) == []  # the same change again: not reported
    assert pins.refusal("echo") is not None
    assert "echo" not in pins.pinned
    assert len(pins.update([offered(description="v3")], [DECLARED])) == 1  # another change
    assert pins.update([offered()], [DECLARED]) == []  # matches again
    assert "echo" in pins.pinned
    assert pins.refusal("echo") is None
    assert len(pins.update([changed], [DECLARED])) == 1  # the first change, once more


def test_a_name_listed_twice_is_refused() -> None:
    pins = Pins()
    mismatches = pins.update([offered(), offered()], [DECLARED])
    assert [m.field for m in mismatches] == ["duplicate"]
    assert "echo" not in pins.pinned
    assert "more than once" in (pins.refusal("echo") or "")


def test_a_name_the_upstream_does_not_list_is_left_to_the_gate() -> None:
    pins = Pins()
    pins.update([offered()], [DECLARED])
    assert pins.refusal("other") is None
