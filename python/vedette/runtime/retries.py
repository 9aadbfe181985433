"""Idempotent retries: a request decided once is answered the same way again.

An adapter that lost an answer (a dropped connection, a timeout) sends the
same intent again with the same ``request_id``. Within ``retry_window_s`` of
the first, a request from the same caller with the same ``request_id`` and
the same body bytes gets the first request's answer — its decision id, its
output — and the tool does not run a second time; one still running is
waited for. The same ``request_id`` with other bytes is refused (400): it is
not a retry, and running it could hide a different call under an id the
adapter already used. Only answers a policy decided are kept (an allow and
its outcome, or a deny); refusals before a policy ran are decided afresh.
The table is bounded (``max_entries``, oldest dropped first), so a caller
cannot grow it without bound (docs/contracts.md, "Retries").
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from vedette.runtime.decision import Decision


class RetryAbandoned(Exception):
    """The first request of a retried ``request_id`` ended without an answer."""


@dataclass
class _Entry:
    fingerprint: bytes
    expires_at: float
    answer: concurrent.futures.Future[Decision]


@dataclass(frozen=True)
class Claim:
    """What to do with a request: ``decide`` it (and settle ``answer``), ``replay``
    the earlier ``answer``, or refuse it as a ``conflict``."""

    kind: Literal["decide", "replay", "conflict"]
    answer: concurrent.futures.Future[Decision] | None = None


class RetryTable:
    def __init__(self, *, window_s: float = 600.0, max_entries: int = 10_000) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, caller: str, request_id: str, fingerprint: bytes) -> Claim:
        now = time.monotonic()
        key = (caller, request_id)
        with self._lock:
            self._expire(now)
            entry = self._entries.get(key)
            if entry is not None:
                if entry.fingerprint != fingerprint:
                    return Claim("conflict")
                return Claim("replay", entry.answer)
            answer: concurrent.futures.Future[Decision] = concurrent.futures.Future()
            self._entries[key] = _Entry(fingerprint, now + self._window_s, answer)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            return Claim("decide", answer)

    def settle(
        self, caller: str, request_id: str, decision: Decision | None, *, keep: bool
    ) -> None:
        """The first request's answer, given to the retries waiting for it; kept for
        later retries only when ``keep`` (a policy made it), else forgotten. With no
        answer (the request was cancelled), waiting retries decide afresh."""
        with self._lock:
            entry = self._entries.get((caller, request_id))
            if decision is None or not keep:
                self._entries.pop((caller, request_id), None)
        if entry is None or entry.answer.done():
            return
        if decision is None:
            entry.answer.set_exception(RetryAbandoned(request_id))
        else:
            entry.answer.set_result(decision)

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires_at > now:
                return
            del self._entries[key]
