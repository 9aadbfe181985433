"""The peer service: sealed segments replicated to and from other nodes.

``PeerService(store, ca=..., cert=..., key=..., crl=[...])`` starts the Rust
peer transport on its own threads (a small tokio runtime), sharing ``store``
(a :class:`vedette.store.SegmentStore`). ``listen("0.0.0.0:8798")`` accepts
peers, ``dial("192.0.2.7:8798")`` keeps a link to one (re-dialling within
the retry policy), ``status()`` reports every peer, ``events()`` the bounded
event log, ``stop()`` says BYE and stops.

Every peer must complete a TLS 1.3 handshake with a certificate that chains to
``ca``, is not revoked by ``crl`` (unknown revocation status and expired CRLs
are refused), and whose identity (SAN URI ``spiffe://<trust_domain>/node/<id>``
or DNS name) matches ``allow`` when given. New CA, CRL and certificate files
are picked up at the next handshake, without a restart.

A Rust panic inside a call is raised as :class:`vedette.errors.PeerError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vedette._core import PeerService as _PeerService
from vedette.errors import PeerError, is_rust_panic
from vedette.store import SegmentStore

T = TypeVar("T")


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except BaseException as err:
        if is_rust_panic(err):
            raise PeerError(f"peer transport failed: {err}") from None
        raise


@dataclass(frozen=True)
class PeerEvent:
    """One entry of the service's bounded event log; ``seq`` only grows."""

    seq: int
    unix_ms: int
    kind: str
    peer: str | None
    detail: str


class PeerService:
    """The peer transport of one node; see the module docstring."""

    def __init__(
        self,
        store: SegmentStore,
        *,
        ca: str | os.PathLike[str],
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        crl: Sequence[str | os.PathLike[str]],
        trust_domain: str | None = None,
        allow: Sequence[str] = (),
        **limits: Any,
    ) -> None:
        paths = [os.fspath(p) for p in crl]
        if not paths:
            raise PeerError("at least one CRL file is required: without one every peer is refused")
        self._store = store
        self._core = _call(
            lambda: _PeerService(
                store._core,
                ca=os.fspath(ca),
                cert=os.fspath(cert),
                key=os.fspath(key),
                crl=paths,
                trust_domain=trust_domain,
                allow=list(allow),
                **limits,
            )
        )

    def __enter__(self) -> PeerService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def listen(self, addr: str) -> str:
        """Listens on ``host:port`` (a literal IP); returns the address bound."""
        return _call(lambda: self._core.listen(addr))

    def dial(self, addr: str) -> None:
        """Keeps a link to ``host:port``, re-dialled within the retry policy."""
        _call(lambda: self._core.dial(addr))

    def probe(self, addr: str, count: int = 1) -> int:
        """Completes ``count`` full mutual-TLS handshakes with ``addr`` in a row,
        closing each at once (no protocol byte sent); returns how many completed.
        Raises :class:`PeerError` naming the reason of the first refusal."""
        return _call(lambda: self._core.probe(addr, count))

    def reload(self) -> None:
        """Re-reads the CA, CRL, certificate and key files now."""
        _call(self._core.reload)

    def stop(self, grace_s: float = 2.0) -> None:
        """Says BYE to every peer and stops; later calls do nothing."""
        _call(lambda: self._core.stop(grace_s))

    def listening(self) -> list[str]:
        return _call(self._core.listening)

    def status(self) -> dict[str, Any]:
        """Peers (identity, connected, bytes, quota state, last sync, frontier lag),
        dial targets, and counters including handshakes rejected by reason."""
        return _call(self._core.status)

    def events(self, since: int = 0) -> list[PeerEvent]:
        """Events with ``seq`` above ``since``, oldest first."""
        return [PeerEvent(**e) for e in _call(lambda: self._core.events(since))]
