"""RFC 8785 canonical JSON: the RFC's own examples, number formatting, refusals."""

import json
import math
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vedette.hashing import CanonicalJsonError, canonical_json


def test_rfc8785_primitive_data_types_example():
    value = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(value) == expected.encode()


def test_rfc8785_sorting_example_uses_utf16_order():
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control\u007f",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = list(json.loads(canonical_json(value)))
    # U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB33 in
    # UTF-16 although it comes after it in code points and UTF-8.
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert "Control\u007f" in canonical_json(value).decode(), "DEL is not escaped"


RFC8785_NUMBERS = [
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7FEFFFFFFFFFFFFF, "1.7976931348623157e+308"),
    (0xFFEFFFFFFFFFFFFF, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xC340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44B52D02C7E14AF5, "9.999999999999997e+22"),
    (0x44B52D02C7E14AF6, "1e+23"),
    (0x44B52D02C7E14AF7, "1.0000000000000001e+23"),
    (0x444B1AE4D6E2EF4E, "999999999999999700000"),
    (0x444B1AE4D6E2EF4F, "999999999999999900000"),
    (0x444B1AE4D6E2EF50, "1e+21"),
    (0x3EB0C6F7A0B5ED8C, "9.999999999999997e-7"),
    (0x3EB0C6F7A0B5ED8D, "0.000001"),
    (0x41B3DE4355555553, "333333333.3333332"),
    (0x41B3DE4355555554, "333333333.33333325"),
    (0x41B3DE4355555555, "333333333.3333333"),
    (0x41B3DE4355555556, "333333333.3333334"),
    (0x41B3DE4355555557, "333333333.33333343"),
    (0xBECBF647612F3696, "-0.0000033333333333333333"),
    (0x43143FF3C1CB0959, "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC8785_NUMBERS)
def test_rfc8785_number_serialization(bits, expected):
    (number,) = struct.unpack(">d", bits.to_bytes(8, "big"))
    assert canonical_json(number) == expected.encode()


def test_integers_are_numbers_not_python_reprs():
    assert canonical_json([0, -1, 10**15, 2**53, -(2**53), 1.0, -0.0]) == (
        b"[0,-1,1000000000000000,9007199254740992,-9007199254740992,1,0]"
    )
    # Beyond ±2^53 an integer is kept only if its digits are already the
    # canonical form of a double, so that it reads back as itself.
    assert canonical_json([2**53 + 2, 18446744073709552000, -(10**20)]) == (
        b"[9007199254740994,18446744073709552000,-100000000000000000000]"
    )
    assert canonical_json([True, False, None]) == b"[true,false,null]"


def test_strings_escape_like_json_stringify():
    value = '\b\t\n\f\r"\\/\x00\x1f\x7f é €😀'
    assert canonical_json(value) == ('"\\b\\t\\n\\f\\r\\"\\\\/\\u0000\\u001f\x7f é €😀"').encode()


def test_nested_values_and_tuples():
    assert canonical_json({"z": {"b": (1, 2), "a": []}, "a": {}}) == (
        b'{"a":{},"z":{"a":[],"b":[1,2]}}'
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "not finite"),
        (math.inf, "not finite"),
        ([-math.inf], "not finite"),
        (2**53 + 1, "integer 9007199254740993 is not exactly an IEEE-754 double"),
        (-(2**53) - 1, "integer -9007199254740993 is not exactly"),
        (2**64, "integer 18446744073709551616 is not exactly"),
        (10**21, "integer 1000000000000000000000 is not exactly"),
        (10**400, "is not exactly an IEEE-754 double"),
        ({1: "x"}, "member names must be str, got int"),
        ({"a": {1, 2}}, "set has no JSON form"),
        (b"bytes", "bytes has no JSON form"),
        ("\ud800", "lone surrogate"),
        ({"\udfff": 1}, "lone surrogate"),
    ],
)
def test_refuses_values_without_a_canonical_form(value, message):
    with pytest.raises(CanonicalJsonError, match=re.escape(message)):
        canonical_json(value)


def test_refuses_excessive_nesting_and_cycles():
    deep: list = []
    node = deep
    for _ in range(200):
        node.append([])
        node = node[0]
    with pytest.raises(CanonicalJsonError, match="deeper than"):
        canonical_json(deep)
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(CanonicalJsonError, match="deeper than"):
        canonical_json(cycle)


BMP_TEXT = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=12)
SIMPLE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | BMP_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(BMP_TEXT, inner, max_size=4),
    max_leaves=20,
)
ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=("Cs",)), max_size=8), inner)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(SIMPLE_JSON)
def test_matches_sorted_compact_json_where_the_two_agree(value):
    """Without floats or astral-plane keys, JCS is Python's sorted compact JSON."""
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == expected.encode()


@settings(max_examples=300, deadline=None)
@given(ANY_JSON)
def test_canonical_form_is_a_fixed_point_and_round_trips(value):
    once = canonical_json(value)
    # Read back as RFC 8785 reads numbers (doubles), and as Python reads them.
    as_doubles = json.loads(once, parse_int=float)
    assert as_doubles == value
    assert canonical_json(as_doubles) == once
    assert canonical_json(json.loads(once)) == once
