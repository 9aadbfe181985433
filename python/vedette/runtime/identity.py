"""Who is calling: established by the runtime, never taken from a request body.

A caller is an id bound to exactly one agent. Adapters prove who they are with a
bearer token (the runtime keeps only its SHA-256) or, on the Unix-socket
listener, by the uid the kernel reports for the connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vedette.config import CallerConfig, token_digest
from vedette.errors import VedetteError

# Longest Authorization header value considered; longer ones are refused unread.
MAX_TOKEN_CHARS = 4096


class Unauthenticated(VedetteError):
    """No valid credentials; the message says what was wrong without echoing them."""


@dataclass(frozen=True)
class Caller:
    id: str
    agent: str


class CallerRegistry:
    """Maps credentials to callers. Lookups are by token hash, so timing reveals
    nothing about valid tokens, and the tokens themselves are never held."""

    def __init__(self, callers: Iterable[CallerConfig]) -> None:
        self._by_token: dict[bytes, Caller] = {}
        self._by_uid: dict[int, Caller] = {}
        seen: set[str] = set()
        for entry in callers:
            if entry.id in seen:
                raise ValueError(f"callers: duplicate caller id {entry.id!r}")
            seen.add(entry.id)
            caller = Caller(entry.id, entry.agent)
            if entry.token_sha256 is not None:
                if entry.token_sha256.raw in self._by_token:
                    raise ValueError(f"callers.{entry.id}: token already used by another caller")
                self._by_token[entry.token_sha256.raw] = caller
            if entry.uid is not None:
                if entry.uid in self._by_uid:
                    raise ValueError(f"callers.{entry.id}: uid {entry.uid} already mapped")
                self._by_uid[entry.uid] = caller

    def __len__(self) -> int:
        return len({*self._by_token.values(), *self._by_uid.values()})

    def from_authorization(self, header: str | None) -> Caller:
        """The caller for an ``Authorization: Bearer <token>`` header value."""
        if not header:
            raise Unauthenticated("missing bearer token")
        if len(header) > MAX_TOKEN_CHARS:
            raise Unauthenticated("malformed Authorization header")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise Unauthenticated("malformed Authorization header: expected 'Bearer <token>'")
        caller = self._by_token.get(token_digest(token).raw)
        if caller is None:
            raise Unauthenticated("unknown bearer token")
        return caller

    def from_uid(self, uid: int | None) -> Caller:
        """The caller for the peer uid of a Unix-socket connection."""
        if uid is None:
            raise Unauthenticated("peer credentials unavailable")
        caller = self._by_uid.get(uid)
        if caller is None:
            raise Unauthenticated(f"no caller is mapped to uid {uid}")
        return caller
