"""Intents are parsed strictly: every malformed body is refused with a reason."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vedette._core import parse_intent as core_parse_intent
from vedette.config import IntentLimits
from vedette.runtime.intent import Intent, InvalidIntent, encode_intent

LIMITS = IntentLimits(max_depth=8, max_args_bytes=200, max_claims_bytes=50)


def parse_intent(body: bytes, limits: IntentLimits) -> Intent:
    """The core's one intent parser (the gate's first step), read into an Intent."""
    tool, args, claims, request_id = core_parse_intent(
        body, limits.max_depth, limits.max_args_bytes, limits.max_claims_bytes
    )
    return Intent(tool, args, claims, request_id)


def intent_from_value(value: object, limits: IntentLimits) -> Intent:
    """An in-process intent as the runtime reads it: encoded, then parsed."""
    return parse_intent(encode_intent(value), limits)


def test_a_well_formed_intent():
    body = b'{"tool": "fs.read", "args": {"path": "/data/a.csv"}, "claims": {"role": "admin"}}'
    assert parse_intent(body, LIMITS) == Intent(
        "fs.read", {"path": "/data/a.csv"}, {"role": "admin"}, None
    )
    assert parse_intent(b'{"tool":"echo","request_id":"r-1"}', LIMITS) == Intent(
        "echo", {}, {}, "r-1"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "must be a JSON object, got array"),
        (b'"echo"', "must be a JSON object, got string"),
        (b"null", "must be a JSON object, got null"),
        (b"{}", "tool must be a name"),
        (b'{"tool": ""}', "tool must be a name"),
        (b'{"tool": 7}', "tool must be a name"),
        (b'{"tool": "a b"}', "tool must be a name"),
        (b'{"tool": "../x"}', "tool must be a name"),
        (b'{"tool": "' + b"a" * 129 + b'"}', "tool must be a name"),
        (b'{"tool": "echo", "tool": "fs.read"}', "duplicate member name 'tool'"),
        (b'{"tool": "echo", "args": {"a": 1, "a": 2}}', "duplicate member name 'a'"),
        (b'{"tool": "echo", "admin": true}', "unknown field 'admin'"),
        (b'{"tool": "echo", "args": []}', "args must be a JSON object, got array"),
        (b'{"tool": "echo", "claims": "root"}', "claims must be a JSON object, got string"),
        (b'{"tool": "echo", "args": {"x": NaN}}', "NaN is not a JSON number"),
        (b'{"tool": "echo", "args": {"x": Infinity}}', "Infinity is not a JSON number"),
        (b'{"tool": "echo", "args": {"x": "\\ud800"}}', "lone surrogate"),
        (b'{"tool": "echo", "args": {"\\udfff": 1}}', "lone surrogate"),
        (b'{"tool": "echo", "args": {"x": "' + b"y" * 300 + b'"}}', "over the 200-byte limit"),
        (b'{"tool": "echo", "claims": {"x": "' + b"y" * 60 + b'"}}', "over the 50-byte limit"),
        (b'{"tool": "echo", "args": ' + b'{"a":' * 9 + b"1" + b"}" * 9 + b"}", "deeper than 8"),
        (b'{"tool": "echo", "args": {"a": ' + b"[" * 100000 + b"]" * 100000 + b"}}", "deep"),
        (b'{"tool": "echo", "request_id": 5}', "request_id must be a string"),
        (b'{"tool": "echo", "request_id": ""}', "request_id must be a string"),
        (b'{"tool": "echo", "args": {"n": 18446744073709551616}}', "outside the 64-bit range"),
        (b'{"tool": "echo", "args": {"n": -9223372036854775809}}', "outside the 64-bit range"),
        (b'{"tool": "echo", "args": {"b": [{"a": 1, "a": 2}]}}', "duplicate member name 'a'"),
        (b'{"tool": "echo"} {}', "not JSON"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(body, reason):
    with pytest.raises(InvalidIntent) as caught:
        parse_intent(body, LIMITS)
    assert reason in str(caught.value)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_another_error(body):
    try:
        intent = parse_intent(body, LIMITS)
    except InvalidIntent:
        return
    assert isinstance(intent.tool, str)
    assert isinstance(intent.args, dict)


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)


@given(
    st.dictionaries(
        TEXT,
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | TEXT,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
            max_leaves=10,
        ),
        max_size=5,
    )
)
def test_any_json_args_within_limits_round_trip(args):
    body = json.dumps({"tool": "echo", "args": args}).encode()
    assert parse_intent(body, IntentLimits()).args == args


@given(st.integers(min_value=2**64) | st.integers(max_value=-(2**63) - 1))
def test_integers_beyond_64_bits_are_refused_not_rounded(n):
    # Read as a float they would reach the policy and the tool as another number.
    with pytest.raises(InvalidIntent, match="outside the 64-bit range"):
        parse_intent(json.dumps({"tool": "echo", "args": {"n": n}}).encode(), LIMITS)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"tool": "echo", "args": {"x": float("nan")}}, "no JSON form"),
        ({"tool": "echo", "args": {"x": float("inf")}}, "no JSON form"),
        ({"tool": "echo", "args": {1: "x"}}, "no JSON form"),
        ({"tool": "echo", "args": {"x": "\ud800"}}, "no JSON form"),
        ({"tool": "echo", "args": {"x": {1, 2}}}, "no JSON form"),
        ({"tool": "echo", "args": {"x": 2**64}}, "no JSON form"),
        ({"tool": "echo", "admin": True}, "unknown field 'admin'"),
        (["echo"], "must be a JSON object, got array"),
    ],
)
def test_in_process_intents_are_held_to_the_same_rules(value, reason):
    with pytest.raises(InvalidIntent) as caught:
        intent_from_value(value, LIMITS)
    assert reason in str(caught.value)


def test_an_intent_object_round_trips_through_the_parser():
    intent = Intent("echo", {"text": "hé", "n": [1, 2.5, None, True]}, {"role": "x"}, "r-9")
    assert intent_from_value(intent, LIMITS) == intent
