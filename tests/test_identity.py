"""Caller identity: bearer tokens kept as hashes, uids, one agent per caller."""

import pytest

from vedette.config import CallerConfig, token_digest
from vedette.runtime.identity import CallerRegistry, Unauthenticated


@pytest.fixture
def registry():
    return CallerRegistry(
        [
            CallerConfig("adapter-a", "agent-a", token_sha256=token_digest("token-a")),
            CallerConfig("adapter-b", "agent-b", token_sha256=token_digest("token-b"), uid=1001),
        ]
    )


def test_token_maps_to_its_caller_and_agent(registry):
    caller = registry.from_authorization("Bearer token-a")
    assert (caller.id, caller.agent) == ("adapter-a", "agent-a")
    assert registry.from_authorization("bearer   token-b ").agent == "agent-b"
    assert registry.from_uid(1001).id == "adapter-b"
    assert len(registry) == 2


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("token-a", "malformed Authorization header"),
        ("Basic dG9rZW4tYQ==", "malformed Authorization header"),
        ("Bearer", "malformed Authorization header"),
        ("Bearer token-a extra", "malformed Authorization header"),
        ("Bearer token-A", "unknown bearer token"),
        ("Bearer " + "x" * 5000, "malformed Authorization header"),
    ],
)
def test_bad_credentials_are_refused_without_echoing_them(registry, header, message):
    with pytest.raises(Unauthenticated) as caught:
        registry.from_authorization(header)
    assert str(caught.value).startswith(message)
    assert "token-A" not in str(caught.value)


def test_unknown_uid_is_refused(registry):
    with pytest.raises(Unauthenticated, match="no caller is mapped to uid 0"):
        registry.from_uid(0)
    with pytest.raises(Unauthenticated, match="peer credentials unavailable"):
        registry.from_uid(None)


def test_duplicate_ids_tokens_and_uids_are_configuration_errors():
    same = token_digest("t")
    with pytest.raises(ValueError, match="duplicate caller id"):
        CallerRegistry([CallerConfig("a", "x"), CallerConfig("a", "y")])
    with pytest.raises(ValueError, match="token already used"):
        CallerRegistry([CallerConfig("a", "x", same), CallerConfig("b", "y", same)])
    with pytest.raises(ValueError, match="uid 5 already mapped"):
        CallerRegistry([CallerConfig("a", "x", uid=5), CallerConfig("b", "y", uid=5)])
