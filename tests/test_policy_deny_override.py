"""No input claims, extra fields or unicode tricks turn a deny into an allow."""

from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_helpers import EXAMPLES, example_input

from vedette.policy import load_engine

ENGINE = load_engine(EXAMPLES / "bundle")

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

# Claims an attacker would try first, mixed with arbitrary ones.
tempting_claims = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["admin", "root", "superuser", "system"]) | st.text(max_size=10),
        "allow": st.booleans() | json_values,
        "decision": st.just({"allow": True, "reason": "claimed"}) | json_values,
        "override": st.booleans(),
        "tools": st.just(["shell.exec", "fs.read", "echo"]),
    },
) | st.dictionaries(st.text(max_size=12), json_values, max_size=5)

# Names that look like a declared or allowed tool but are not it.
lookalike_tools = st.sampled_from(
    [
        "shell.exec",
        "echo\u200b",
        "\u200becho",
        "ECHO",
        "Echo",
        "\uff45\uff43\uff48\uff4f",  # fullwidth
        "\u0435cho",  # Cyrillic ie
        "echo\x00",
        "echo ",
        " echo",
        "fs.read\u0000",
        "fs\u2024read",
        "fs.reaḋ",
        unicodedata.normalize("NFD", "écho"),
    ]
) | st.text(max_size=12).filter(lambda name: name not in ("echo", "fs.read"))

denied_paths = st.sampled_from(
    [
        "/etc/passwd",
        "/data/../../etc/passwd",
        "/data/./x",
        "/data//x",
        "/data",
        "/database/x",
        "/data\\..\\x/../y",
        "data/x",
        "//data/x",
        "/Data/x",
        "\uff0fdata/x",  # fullwidth solidus
        "./data/x",
    ]
) | st.text(max_size=30).filter(lambda path: not path.startswith("/data/"))

reserved = {"tool", "args", "agent"}
extra_fields = st.dictionaries(
    st.text(max_size=12).filter(lambda key: key not in reserved), json_values, max_size=4
)


def denied(document: dict) -> bool:
    decision = ENGINE.evaluate(document)
    return decision.allow is False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tool=lookalike_tools, claims=tempting_claims, extra=extra_fields, args=json_values)
def test_undeclared_or_lookalike_tools_stay_denied(tool, claims, extra, args):
    document = example_input(tool, {}, claims)
    document["args"] = args
    document.update(extra)
    assert denied(document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=denied_paths, claims=tempting_claims, extra=extra_fields)
def test_reads_outside_the_data_folder_stay_denied(path, claims, extra):
    document = example_input("fs.read", {"path": path}, claims)
    document.update(extra)
    assert denied(document)


@settings(max_examples=200, deadline=None)
@given(claims=tempting_claims, extra=extra_fields)
def test_claims_never_decide(claims, extra):
    """The same call with and without claims or extra fields gets the same decision."""
    for document in (
        example_input("fs.read", {"path": "/etc/shadow"}),
        example_input("echo", {"text": "hi"}),
    ):
        plain = ENGINE.evaluate(document)
        dressed = ENGINE.evaluate({**document, **extra, "claims": claims})
        assert (dressed.allow, dressed.reason) == (plain.allow, plain.reason)
