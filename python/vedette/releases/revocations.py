"""What a node trusts, read live: each agent's release keys and the node's
revocation list (docs/operations.md, "Keys and revocations").

Trusted keys are the files named in ``[[agents]] keys``, or every ``*.pub``
file in a folder named there (so a key is added by dropping its file in); the
revocation list is a local JSON file named in ``[releases] revocations``::

    {"keys": ["sha256:<key id>", ...], "releases": ["sha256:<release digest>", ...]}

A revoked key is no longer trusted, whatever the key files say; a revoked
release digest is refused at verification (step ``revoked``). Both are read
again, without a restart, when a file changes (checked every second) or the
node gets SIGHUP; then every agent's served release is verified again under
the new trust, and one that no longer verifies is dropped at once for the
last-known-good, or deny-all. A file that cannot be read keeps the trust as it
was (never less strict: a revocation list that vanishes revokes as before) and
is reported as an event.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vedette.durable import read_bounded
from vedette.errors import KeyFileError, OciError, SignatureError
from vedette.releases.oci import check_digest
from vedette.releases.signing import PublicKey, TrustedKeys, load_public_key

log = logging.getLogger("vedette.releases")

# How often the watched files are checked for a change.
WATCH_INTERVAL_S = 1.0
# A revocation list larger than this is refused unread (a list of a thousand
# digests is under 100 KiB).
MAX_REVOCATIONS_BYTES = 1 << 20


class RevocationsError(ValueError):
    """The revocation list cannot be read or is not the documented shape."""


@dataclass(frozen=True)
class Revocations:
    """Key ids and release digests refused from now on."""

    keys: frozenset[str] = field(default_factory=frozenset)
    releases: frozenset[str] = field(default_factory=frozenset)

    def as_dict(self) -> dict[str, list[str]]:
        return {"keys": sorted(self.keys), "releases": sorted(self.releases)}


def load_revocations(path: Path | None) -> Revocations:
    """The list at ``path`` (none: nothing revoked); :class:`RevocationsError` when
    it cannot be read or holds anything but key ids and release digests."""
    if path is None:
        return Revocations()
    try:
        data = read_bounded(path, MAX_REVOCATIONS_BYTES)
    except OSError as err:
        raise RevocationsError(f"{path}: {err.strerror or err}") from None
    try:
        document = json.loads(data)
    except ValueError as err:
        raise RevocationsError(f"{path}: not JSON ({err})") from None
    if not isinstance(document, dict) or set(document) - {"keys", "releases"}:
        raise RevocationsError(f'{path}: expected {{"keys": [...], "releases": [...]}}')
    found: dict[str, frozenset[str]] = {}
    for name in ("keys", "releases"):
        values = document.get(name, [])
        if not isinstance(values, list):
            raise RevocationsError(f"{path}: {name} must be a list of sha256: digests")
        try:
            found[name] = frozenset(check_digest(value) for value in values)
        except (OciError, TypeError):
            raise RevocationsError(f"{path}: {name} must be a list of sha256: digests") from None
    return Revocations(keys=found["keys"], releases=found["releases"])


class NothingTrusted:
    """The verifier of an agent whose every trusted key is revoked: no signature
    verifies, so no release of it activates."""

    def __init__(self, revoked: Iterable[str]) -> None:
        self.revoked = sorted(revoked)

    def verify(self, payload: bytes, signature_b64: str) -> Any:
        raise SignatureError(f"every trusted key of this agent is revoked ({self.revoked})")

    @property
    def keys(self) -> tuple[PublicKey, ...]:
        return ()


def key_files(paths: Iterable[Path]) -> list[Path]:
    """Each path that is a file, and the ``*.pub`` files of each that is a folder."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.pub")) if path.is_dir() else [path])
    return files


def trust_of(paths: Iterable[Path], revocations: Revocations) -> TrustedKeys | NothingTrusted:
    """The keys in ``paths`` (:func:`key_files`) less the revoked ones;
    :class:`KeyFileError` when a file cannot be read or there is no key at all."""
    keys = [load_public_key(path) for path in key_files(paths)]
    if not keys:
        raise KeyFileError("no trusted keys given: at least one public key is required")
    kept = [key for key in keys if key.key_id not in revocations.keys]
    if not kept:
        return NothingTrusted(key.key_id for key in keys)
    return TrustedKeys(kept)


def key_ids(trusted: TrustedKeys | NothingTrusted | Any) -> set[str]:
    return {key.key_id for key in getattr(trusted, "keys", ())}


def _stamp(path: Path) -> tuple[Any, ...] | None:
    """What changes when the file changes, or a folder's key files do."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    own = (status.st_mtime_ns, status.st_size, status.st_ino)
    if not path.is_dir():
        return own
    return (own, *((key.name, _stamp(key)) for key in sorted(path.glob("*.pub"))))


class TrustWatch:
    """Calls ``reload`` when a watched file changes (checked every
    :data:`WATCH_INTERVAL_S`) or when :meth:`request` is called (SIGHUP)."""

    def __init__(self, paths: Iterable[Path], reload: Callable[[str], None]) -> None:
        self._paths = sorted(set(paths))
        self._reload = reload
        self._stamps = {path: _stamp(path) for path in self._paths}
        self._requested = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vedette-trust-watch", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Reload now (safe from a signal handler: it only sets an event)."""
        self._requested.set()

    def check(self) -> None:
        """One round: reload if asked to or if a file changed."""
        stamps = {path: _stamp(path) for path in self._paths}
        changed = [str(path) for path in self._paths if stamps[path] != self._stamps[path]]
        requested = self._requested.is_set()
        self._requested.clear()
        if not changed and not requested:
            return
        self._stamps = stamps
        try:
            cause = f"changed: {', '.join(changed)}" if changed else "signal"
            self._reload(cause)
        except Exception:  # keep watching; the trust in force stays as it was
            log.exception("reloading trusted keys and revocations failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._requested.wait(WATCH_INTERVAL_S)
            if self._stop.is_set():
                return
            self.check()

    def stop(self) -> None:
        self._stop.set()
        self._requested.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


__all__ = [
    "KeyFileError",
    "NothingTrusted",
    "Revocations",
    "RevocationsError",
    "TrustWatch",
    "key_ids",
    "load_revocations",
    "trust_of",
]
