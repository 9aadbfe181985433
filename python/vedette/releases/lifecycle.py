"""Per-agent release lifecycle: fetched → verified → active, with a last-known-good.

Each agent with a ``release`` in the config has an :class:`AgentTrack`. A new
release is copied into a fresh image-layout folder under the agent's state
folder, verified from there (all four steps), and activated by one assignment
of the in-memory :class:`ActiveRelease` — decisions already running keep the
release object they fetched, so they finish on the engine they started with.
The previous active release becomes the last-known-good (LKG); ``state.json``
(written atomically) names both, and their folders are all that is kept.

At start: re-verify the persisted active release (signatures included); if it
fails, fall back to the LKG; if that fails too, the agent is deny-all.

Time and rollback (docs/operations.md, "Time and rollback"): the track
remembers the newest release it activated (``newest`` in ``state.json``) and
refuses an older one under its tag (step ``rollback``) unless the agent pins a
digest; every time it reads is the node's :class:`~vedette.releases.trust.TimeFloor`
(the wall clock, never behind the floor); and :meth:`AgentTrack.tick`, run by
the poller's loop, replaces an active release whose ``expires_at`` has passed
with the LKG if that still verifies, else deny-all.

Trust (docs/operations.md, "Keys and revocations, live"): :meth:`AgentTrack.retrust`
takes new trusted keys and revoked digests and verifies the served release
again under them, dropping it for the LKG or deny-all if it no longer verifies.

Every lifecycle event (``release.fetched|verified|rejected|activated|
fallback_lkg|deny_all|rollback_refused|expired|revoked``, ``controlplane.unreachable|
restored``, ``clock.behind_floor|caught_up``, ``keys.reloaded|reload_failed``) is
appended to the segment store as a ``release_event`` record, logged, counted in
the metrics and kept (the last few) for ``/v1/status``. The node's tracks
together are :class:`vedette.releases.node.NodeReleases`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vedette._core import evidence_timestamp
from vedette.config import AgentConfig
from vedette.durable import write_durably
from vedette.errors import OciError, VerificationError
from vedette.releases.artifacts import parse_time
from vedette.releases.cosign import Verifier
from vedette.releases.events import EVENTS, HEALTH_STATES, ReleaseEvents
from vedette.releases.layout import LayoutRepository
from vedette.releases.oci import (
    Reference,
    Repository,
    check_digest,
    is_digest,
    names_digest,
    parse_reference,
)
from vedette.releases.revocations import (
    Revocations,
    trust_of,
)
from vedette.releases.trust import (
    DEFAULT_SKEW_S,
    FLOOR_FILE,
    Reading,
    ReleaseMark,
    TimeFloor,
    is_older,
    iso,
    to_datetime,
)
from vedette.releases.verify import VerifiedRelease, fetch_release, verify_release
from vedette.runtime.releases import ActiveRelease, make_active_release

log = logging.getLogger("vedette.releases")

STAGED_TAG = "release"


def trusted_keys(
    paths: Iterable[os.PathLike[str] | str], revocations: Revocations | None = None
) -> Verifier:
    """The keys in ``paths`` (PEM files, or folders of ``*.pub`` files) less
    the revoked ones."""
    return trust_of([Path(p) for p in paths], revocations or Revocations())


class AgentTrack:
    """One agent's releases: what is active, what is last-known-good, and why."""

    def __init__(
        self,
        agent: AgentConfig,
        root: Path,
        trusted: Verifier,
        events: ReleaseEvents,
        *,
        eval_time_limit_s: float,
        clock: Callable[[], float] = time.time,
        floor: TimeFloor | None = None,
        skew_s: float = DEFAULT_SKEW_S,
    ) -> None:
        assert agent.release is not None
        self.config = agent
        self.name = agent.name
        self.reference: Reference = parse_reference(agent.release)
        # A digest pin is the one way back to an older release: no rollback check.
        self.pinned = self.reference.digest is not None
        self.root = root
        self.trusted = trusted
        # Release digests refused from now on (the node's revocation list).
        self.revoked: frozenset[str] = frozenset()
        self.events = events
        self.eval_time_limit_s = eval_time_limit_s
        self.clock = clock
        self.skew_s = skew_s
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The node's time floor (one per node, shared by its tracks).
        self.floor = floor or TimeFloor(root.parent / FLOOR_FILE, clock=clock, skew_s=skew_s)
        self.newest: ReleaseMark | None = None
        self.newest_error: str | None = None
        self.clock_behind = False
        self._expires: float | None = None  # expires_at of the installed release
        self._expires_at: str | None = None
        self._lock = threading.Lock()  # one change of state at a time
        self._active: ActiveRelease | None = None
        self.active_digest: str | None = None
        self.lkg_digest: str | None = None
        self.serving = "deny_all"  # "active", "lkg" or "deny_all"
        self.reason = f"no release verified yet for agent {agent.name!r}"
        self.last_contact: float | None = None
        self.unreachable_since: float | None = None
        self.last_error: str | None = None
        self.rejected_digest: str | None = None
        self.rejected_at = 0.0
        self.stale_denied = False

    # -- the Releases seam -------------------------------------------------------

    def active(self) -> ActiveRelease | None:
        release = self._active
        if release is not None and (self.past_max_staleness() or self.past_expiry()):
            return None
        return release

    def past_expiry(self) -> bool:
        """The installed release's ``expires_at`` has passed (on the floored clock):
        denied at once; :meth:`tick` then falls back to the LKG or deny-all."""
        expires = self._expires
        return expires is not None and self.floor.now() >= expires

    def unavailable_reason(self) -> str:
        if self._active is not None and self.past_expiry():
            return (
                f"no active release for agent {self.name!r}: the release expired at "
                f"{self._expires_at}"
            )
        if self._active is not None and self.past_max_staleness():
            return (
                f"no active release for agent {self.name!r}: the control plane has been "
                f"unreachable longer than max_staleness_s={self.config.max_staleness_s}"
            )
        return self.reason

    def past_max_staleness(self) -> bool:
        limit = self.config.max_staleness_s
        if limit is None:
            return False
        contact = self.last_contact
        return contact is None or self.clock() - contact > limit

    def health(self) -> str:
        if self.active() is None:
            return "deny_all"
        if self.serving == "lkg":
            return "lkg"
        if self.unreachable_since is not None:
            return "stale"
        if self.clock_behind:
            return "clock_behind"
        return "ok"

    def time_reasons(self) -> list[str]:
        """Why this node's time or rollback state needs an operator, if it does."""
        reasons = []
        if self.clock_behind:
            reasons.append(
                f"the wall clock ({iso(self.clock())}) is behind the time floor "
                f"({iso(self.floor.floor)}); the floor is used as the time"
            )
        if self.floor.error:
            reasons.append(self.floor.error)
        if self.newest_error:
            reasons.append(self.newest_error)
        return reasons

    def describe(self) -> dict[str, Any]:
        return {
            "pinned": self.pinned,
            "newest": None if self.newest is None else self.newest.to_json(),
            "expires_at": self._expires_at,
            "time": {
                "floor": iso(self.floor.floor),
                "behind_floor": self.clock_behind,
                "reasons": self.time_reasons(),
            },
            "release": str(self.reference),
            "serving": self.serving if self.active() is not None else "deny_all",
            "health": self.health(),
            "active_digest": self.active_digest,
            "lkg_digest": self.lkg_digest,
            "control_plane": {
                "reachable": self.unreachable_since is None and self.last_contact is not None,
                "last_contact": _iso(self.last_contact),
                "unreachable_since": _iso(self.unreachable_since),
                "last_error": self.last_error,
            },
            "events": list(self.events.recent.get(self.name, ())),
        }

    # -- start-up ------------------------------------------------------------------

    def start(self) -> None:
        """Re-verify the persisted active release, else the LKG, else deny-all."""
        for leftover in self.root.glob("staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        state = self._read_state()
        contact = state.get("last_contact")
        self.last_contact = contact if isinstance(contact, int | float) else None
        try:
            self.newest = ReleaseMark.from_json(state.get("newest"))
        except (ValueError, VerificationError) as err:
            # Fail closed: with the mark unreadable no release can be ordered, so
            # every update under a tag is refused (docs/operations.md).
            self.newest_error = f"{self.root}/state.json: unreadable newest release ({err})"
            log.warning("%s", self.newest_error)
        active, lkg = (_digest_or_none(state.get(k)) for k in ("active", "lkg"))
        reading = self._read_clock()
        with self._lock:
            if active and self._load_persisted(active, "active", reading):
                self.lkg_digest = lkg if lkg and self._slot(lkg).is_dir() else None
                self.serving = "active"
                self._update_health()
                return
            if active:
                self.events.emit("release.fallback_lkg", self.name, digest=lkg, failed=active)
            if lkg and self._load_persisted(lkg, "lkg", reading):
                self.serving = "lkg"
                self.lkg_digest = lkg
                self._update_health()
                return
            if active or lkg:
                self._deny_all("no persisted release verifies")
            else:
                self._deny_all("no release has been activated yet", initial=True)

    def _load_persisted(self, digest: str, role: str, reading: Reading) -> bool:
        try:
            verified = verify_release(
                LayoutRepository(self._slot(digest)),
                digest,
                self.trusted,
                agent_name=self.name,
                now=to_datetime(reading.now),
                eval_time_limit_s=self.eval_time_limit_s,
                revoked=self.revoked,
            )
            self._install(verified, f"persisted {role}")
            if self.newest is None and self.newest_error is None:
                # State written before the mark existed: the release it activated.
                self.newest = ReleaseMark.of(digest, verified.document)
            return True
        except VerificationError as err:
            self.events.emit(
                "release.rejected", self.name, digest=digest, step=err.step,
                expected=err.expected, actual=err.actual, reason=str(err),
                source=f"persisted {role}",
            )  # fmt: skip
        except Exception as err:  # a corrupt or unreadable slot: same as a failed check
            self.events.emit(
                "release.rejected", self.name, digest=digest, step="load",
                reason=f"{type(err).__name__}: {err}", source=f"persisted {role}",
            )  # fmt: skip
        return False

    def _deny_all(self, why: str, *, initial: bool = False) -> None:
        """No release serves. ``initial``: the first start of an agent that never
        activated one (recorded like any other, logged as information)."""
        self._active = None
        self._expires = self._expires_at = None
        self.active_digest = None
        self.serving = "deny_all"
        self.reason = f"no active release for agent {self.name!r}: {why}"
        self.events.emit("release.deny_all", self.name, reason=why, initial=initial or None)
        self._update_health()

    # -- time ------------------------------------------------------------------------

    def _read_clock(self) -> Reading:
        """The floored clock; a wall clock behind the floor is reported once."""
        reading = self.floor.read()
        if reading.behind and not self.clock_behind:
            self.clock_behind = True
            self.events.emit(
                "clock.behind_floor", self.name, wall=iso(reading.wall),
                floor=iso(reading.floor), reason="the wall clock is behind the time floor; "
                "the floor is used as the time",
            )  # fmt: skip
            self._update_health()
        elif not reading.behind and self.clock_behind:
            self.clock_behind = False
            self.events.emit("clock.caught_up", self.name, wall=iso(reading.wall))
            self._update_health()
        return reading

    def tick(self) -> None:
        """The lifecycle's periodic check (run by the poller's loop): read the
        clock (the floor follows it to disk) and enforce ``expires_at`` on the
        release being served — the LKG if it still verifies, else deny-all."""
        reading = self._read_clock()
        with self._lock:
            expires = self._expires
            if self._active is None or expires is None or reading.now < expires:
                return
            expired, expired_at = self.active_digest, self._expires_at
            self.events.emit(
                "release.expired", self.name, digest=expired, expires_at=expired_at,
                time=iso(reading.now), serving=self.serving,
            )  # fmt: skip
            self._fall_back(expired, f"the release {expired} expired at {expired_at}", reading)

    def _fall_back(self, failed: str | None, reason: str, reading: Reading) -> None:
        """The release being served (``failed``) may no longer serve, for
        ``reason``: the LKG if it is another release and still verifies, else
        deny-all. The caller holds the lock."""
        lkg = self.lkg_digest
        usable = self.serving == "active" and lkg is not None and lkg != failed
        if usable and lkg is not None and self._load_persisted(lkg, "lkg", reading):
            self.serving = "lkg"
            self.events.emit(
                "release.fallback_lkg", self.name, digest=lkg, failed=failed, reason=reason
            )
            self._update_health()
            return
        self._deny_all(f"{reason}, and no last-known-good is valid")

    # -- trust -------------------------------------------------------------------

    def retrust(self, trusted: Verifier, revoked: frozenset[str], cause: str) -> None:
        """New trust (keys reloaded, the revocation list changed): the release
        being served is verified again under it, and one that no longer
        verifies is dropped at once for the LKG if that verifies, else deny-all."""
        reading = self._read_clock()
        with self._lock:
            self.trusted, self.revoked = trusted, revoked
            # A release refused under the old trust may verify under the new.
            self.rejected_digest = None
            served = self.active_digest
            if self._active is None or served is None:
                return
            role = "active" if self.serving == "active" else "lkg"
            if self._load_persisted(served, role, reading):
                return
            self.events.emit("release.revoked", self.name, digest=served, reason=cause)
            self._fall_back(served, f"the release {served} is no longer trusted ({cause})", reading)

    # -- updates -------------------------------------------------------------------

    def update_from(self, source: Repository, reference: str) -> str:
        """Fetch, verify and activate what ``reference`` names in ``source``.

        Returns ``"current"`` (already active), ``"known-bad"`` (rejected before),
        ``"activated"`` or ``"rejected"``. Raises :class:`OciError` when the source
        cannot be read (the caller counts that as the control plane unreachable).
        """
        digest = check_digest(reference) if names_digest(reference) else source.resolve(reference)
        if digest is None:
            raise OciError(f"{source.describe()}: no tag {reference!r}")
        self.contact_ok()
        if digest == self.active_digest:
            return "current"
        # A rejected digest is not fetched at every poll, but is looked at again
        # now and then: a publisher may tag first and sign after.
        retry_after = max(60.0, 10 * self.config.poll_interval_s)
        if digest == self.rejected_digest and self.clock() - self.rejected_at < retry_after:
            return "known-bad"
        with self._lock:
            return self._update(source, digest)

    def _update(self, source: Repository, digest: str) -> str:
        staging = self.root / f"staging-{secrets.token_hex(6)}"
        try:
            try:
                # An OciError here is the source's failure: retried with backoff.
                fetch_release(source, digest, LayoutRepository(staging, create=True),
                              tag=STAGED_TAG)  # fmt: skip
                self.events.emit("release.fetched", self.name, digest=digest,
                                 source=source.describe())  # fmt: skip
                try:
                    verified = self._verify_new(staging, digest)
                except OciError as err:  # what was fetched is unusable (over a limit, ...)
                    raise VerificationError(
                        str(err), "fetch", "a readable release", str(err)
                    ) from None
            except VerificationError as err:
                self.rejected_digest = digest
                self.rejected_at = self.clock()
                self.events.emit(
                    "release.rollback_refused" if err.step == "rollback" else "release.rejected",
                    self.name, digest=digest, step=err.step,
                    expected=err.expected, actual=err.actual, reason=str(err),
                    source=source.describe(),
                )  # fmt: skip
                return "rejected"
            self.events.emit(
                "release.verified", self.name, digest=digest, version=verified.document.version,
                signature=verified.signature_layout, key_id=verified.signed_by,
            )  # fmt: skip
            try:
                self._activate(verified, staging)
            except OSError as err:  # could not persist: the current release stays
                self.events.emit(
                    "release.rejected", self.name, digest=digest, step="activate",
                    reason=f"could not persist the release: {err}",
                )  # fmt: skip
                return "rejected"
            return "activated"
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _verify_new(self, staging: Path, digest: str) -> VerifiedRelease:
        """All four steps, expiry on the floored clock, ``created`` within the skew
        allowance, and (unless pinned) not older than the newest release."""
        reading = self._read_clock()
        if self.newest_error is not None and not self.pinned:
            raise VerificationError(
                f"rollback: {self.newest_error}", "rollback", "a readable newest release",
                self.newest_error,
            )  # fmt: skip
        return verify_release(
            LayoutRepository(staging), digest, self.trusted,
            agent_name=self.name, eval_time_limit_s=self.eval_time_limit_s,
            now=to_datetime(reading.now),
            # Behind the floor the node cannot judge a creation time ahead of it.
            max_created=None if reading.behind else to_datetime(reading.now + self.skew_s),
            newest=None if self.pinned else self.newest,
            revoked=self.revoked,
        )  # fmt: skip

    def _activate(self, verified: VerifiedRelease, staging: Path) -> None:
        slot = self._slot(verified.digest)
        if slot.exists():
            # The same digest again (e.g. re-fetched after its copy here went bad):
            # the copy just verified replaces it.
            shutil.rmtree(slot)
        os.replace(staging, slot)
        previous = self.active_digest if self.serving == "active" else self.lkg_digest
        lkg = previous if previous and previous != verified.digest else self.lkg_digest
        mark = ReleaseMark.of(verified.digest, verified.document)
        newest = self.newest
        if newest is None or not is_older(mark, newest):
            newest = mark  # a pinned older release leaves the newest mark where it is
        self._write_state(
            {"active": verified.digest, "lkg": lkg, "newest": newest.to_json()}
        )  # fmt: skip
        self.newest = newest
        self.floor.advance(verified.document.created)
        self._install(verified, "registry")
        self.lkg_digest = lkg
        self.serving = "active"
        self._prune({verified.digest, lkg})
        self.events.emit(
            "release.activated", self.name, digest=verified.digest,
            version=verified.document.version, lkg=lkg, key_id=verified.signed_by,
        )  # fmt: skip
        self._update_health()

    def _install(self, verified: VerifiedRelease, origin: str) -> None:
        release = make_active_release(
            self.name,
            verified.document.version,
            f"{self.reference}@{verified.digest} ({origin})",
            verified.agent,
            verified.engine,
            signed_by=verified.signed_by,
        )
        expires_at = verified.document.expires_at
        self._expires = None if expires_at is None else parse_time(expires_at).timestamp()
        self._expires_at = expires_at
        # One assignment: callers that already hold the old object keep it.
        self._active = release
        self.active_digest = verified.digest
        self.reason = ""

    # -- control-plane contact -------------------------------------------------------

    def contact_ok(self) -> None:
        self.last_contact = self.clock()
        if self.unreachable_since is not None:
            since = self.unreachable_since
            self.unreachable_since = None
            self.last_error = None
            self.stale_denied = False
            self.events.emit("controlplane.restored", self.name, since=_iso(since))
        with contextlib.suppress(OSError):
            self._write_state({})
        self._update_health()

    def contact_failed(self, error: str, attempt: int) -> None:
        self.last_error = error
        if self.unreachable_since is None:
            self.unreachable_since = self.clock()
            self.events.emit("controlplane.unreachable", self.name, reason=error, attempt=attempt)
        if self.past_max_staleness() and not self.stale_denied and self._active is not None:
            self.stale_denied = True
            self.events.emit(
                "release.deny_all", self.name,
                reason=f"control plane unreachable past max_staleness_s="
                f"{self.config.max_staleness_s}",
            )  # fmt: skip
        self._update_health()

    # -- persistence -----------------------------------------------------------------

    def _slot(self, digest: str) -> Path:
        return self.root / digest.replace(":", "-")

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.root / "state.json").read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("%s/state.json unreadable (%s); starting without it", self.root, err)
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self, changes: dict[str, Any]) -> None:
        # Read, change, replace whole (durable.write_durably): a crash leaves the
        # old state or the new one, and keys not changed here (``newest``) stay.
        state = {**self._read_state(), **changes, "last_contact": self.last_contact}
        write_durably(self.root / "state.json", json.dumps(state, indent=2).encode())

    def _prune(self, keep: set[str | None]) -> None:
        names = {digest.replace(":", "-") for digest in keep if digest}
        for child in self.root.iterdir():
            if child.is_dir() and child.name.startswith("sha256-") and child.name not in names:
                shutil.rmtree(child, ignore_errors=True)

    def _update_health(self) -> None:
        self.events.set_health(self.name, self.health())


def _digest_or_none(value: Any) -> str | None:
    if isinstance(value, str) and is_digest(value):
        return value
    return None


def _iso(moment: float | None) -> str | None:
    return None if moment is None else evidence_timestamp(int(moment * 1_000_000_000))


__all__ = [
    "EVENTS",
    "HEALTH_STATES",
    "AgentTrack",
    "ReleaseEvents",
    "trusted_keys",
]
