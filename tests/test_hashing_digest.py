"""Digest values: strict parsing, equality, hashing, and hash roles."""

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vedette.errors import VedetteError
from vedette.hashing import (
    ROLE_ALGORITHMS,
    Digest,
    DigestFormatError,
    HashRole,
    HashRoleError,
    blake3,
    require_role,
    sha256,
)

HEX = "ab" * 32


def test_text_form_round_trips():
    for algorithm in ("blake3", "sha256"):
        digest = Digest.parse(f"{algorithm}:{HEX}")
        assert digest.algorithm == algorithm
        assert str(digest) == f"{algorithm}:{HEX}"
        assert digest.hex() == HEX
        assert digest.raw == bytes.fromhex(HEX)
        assert bytes(digest) == digest.raw
        assert repr(digest) == f"Digest('{algorithm}:{HEX}')"
        assert Digest(algorithm, digest.raw) == digest


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEX, "no algorithm prefix"),
        ("", "no algorithm prefix"),
        (f"md5:{HEX}", "unknown algorithm 'md5'"),
        (f"SHA256:{HEX}", "unknown algorithm 'SHA256'"),
        (f"sha-256:{HEX}", "unknown algorithm 'sha-256'"),
        (f":{HEX}", "unknown algorithm ''"),
        ("sha256:" + HEX[:-1], "63 hex characters after the prefix: expected 64"),
        ("sha256:" + HEX + "00", "66 hex characters after the prefix: expected 64"),
        ("sha256:", "0 hex characters"),
        ("sha256:" + HEX.upper(), "'A' at position 0"),
        ("sha256:" + HEX[:10] + "g" + HEX[11:], "'g' at position 10"),
        ("sha256: " + HEX[1:], "' ' at position 0"),
        ("sha256:" + HEX + "\n", "'\\n' at position 64"),
        ("sha256:" + HEX[:63] + "\u0663", "position 63"),
        ("blake3:sha256:" + HEX, "'s' at position 0"),
    ],
)
def test_parse_errors_say_what_is_wrong(text, message):
    with pytest.raises(DigestFormatError) as caught:
        Digest.parse(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, VedetteError)


def test_parse_refuses_non_text():
    with pytest.raises(TypeError, match="takes a str, got bytes"):
        Digest.parse(b"sha256:" + HEX.encode())  # type: ignore[arg-type]


def test_constructor_checks_algorithm_and_length():
    with pytest.raises(ValueError, match="unknown hash algorithm 'md5'"):
        Digest("md5", bytes(32))
    with pytest.raises(DigestFormatError, match="a sha256 digest is 32 bytes, got 31"):
        Digest("sha256", bytes(31))
    with pytest.raises(TypeError, match="bytes-like"):
        Digest("sha256", 42)  # type: ignore[arg-type]


def test_equality_needs_same_algorithm_and_bytes():
    a = Digest.parse(f"blake3:{HEX}")
    assert a == Digest.parse(f"blake3:{HEX}")
    assert a != Digest.parse(f"sha256:{HEX}")
    assert a != Digest.parse("blake3:" + "ab" * 31 + "ac")
    assert a != str(a), "a digest never equals its text"
    assert len({a, Digest.parse(f"blake3:{HEX}"), Digest.parse(f"sha256:{HEX}")}) == 2


def test_digest_pickles_and_is_immutable():
    digest = blake3(b"x")
    assert pickle.loads(pickle.dumps(digest)) == digest
    with pytest.raises(AttributeError):
        digest.algorithm = "sha256"  # type: ignore[misc]


def test_roles_table():
    assert ROLE_ALGORITHMS == {
        "behavioral_fingerprint": ("blake3",),
        "segment_id": ("blake3",),
        "oci_digest": ("sha256",),
        "policy_hash": ("sha256",),
        "payload_digest": ("blake3", "sha256"),
    }
    assert {role.value for role in HashRole} == set(ROLE_ALGORITHMS)


@pytest.mark.parametrize("role", list(HashRole))
def test_require_role_accepts_and_refuses_by_algorithm(role):
    for digest in (blake3(b"x"), sha256(b"x")):
        if digest.algorithm in ROLE_ALGORITHMS[role.value]:
            assert require_role(digest, role) is digest
            assert require_role(str(digest), role.value) == digest
        else:
            with pytest.raises(HashRoleError) as caught:
                require_role(digest, role)
            err = caught.value
            assert (err.role, err.given) == (role.value, digest.algorithm)
            assert err.expected == " or ".join(ROLE_ALGORITHMS[role.value])
            assert str(err) == (
                f"{role.value} must be {err.expected}, got a {digest.algorithm} digest ({digest})"
            )


def test_require_role_errors_for_unknown_role_and_bad_text():
    with pytest.raises(ValueError, match=r"unknown hash role 'segment'.*segment_id"):
        require_role(blake3(b""), "segment")
    with pytest.raises(DigestFormatError):
        require_role("blake3:xyz", HashRole.SEGMENT_ID)
    with pytest.raises(TypeError):
        require_role(42, HashRole.SEGMENT_ID)  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_parse_never_accepts_what_it_would_not_write(text):
    try:
        digest = Digest.parse(text)
    except DigestFormatError:
        return
    assert str(digest) == text


@given(st.sampled_from(["blake3", "sha256"]), st.binary(min_size=32, max_size=32))
def test_text_form_round_trips_for_any_bytes(algorithm, raw):
    digest = Digest(algorithm, raw)
    assert Digest.parse(str(digest)) == digest
    assert hash(Digest.parse(str(digest))) == hash(digest)
