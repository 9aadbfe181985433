"""Rollback protection and the node's trusted time (docs/operations.md, "Time
and rollback"; docs/threat-model.md, "A-04: rollback and time").

:class:`ReleaseMark` is what a track remembers of the newest release it
activated: digest, version and the signed ``created`` time. A candidate
older than the mark is refused at verification (step ``rollback``).

:class:`TimeFloor` is the newest trustworthy time the node has seen: the
signed creation times of the releases it activated (less the skew allowance)
and its own clock readings. A wall clock reading behind the floor is taken as
the floor, so a board without a real-time clock that boots at the epoch does
not believe releases that have expired are still valid. The floor is
persisted durably every ``persist_interval_s`` and at every activation.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vedette.durable import write_durably
from vedette.errors import VerificationError
from vedette.releases.artifacts import ReleaseDocument, parse_time

log = logging.getLogger("vedette.releases")

FLOOR_FILE = "time-floor.json"
DEFAULT_SKEW_S = 300.0
DEFAULT_PERSIST_INTERVAL_S = 300.0

_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)$")


def iso(moment: float) -> str:
    return (
        datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


def to_datetime(moment: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)


@dataclass(frozen=True)
class ReleaseMark:
    """The newest release a track activated: what rollback is measured against."""

    digest: str
    version: str
    created: str | None

    @classmethod
    def of(cls, digest: str, document: ReleaseDocument) -> ReleaseMark:
        return cls(digest, document.version, document.created)

    def describe(self) -> str:
        return f"{self.version} (created {self.created or 'unknown'})"

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "version": self.version, "created": self.created}

    @classmethod
    def from_json(cls, value: Any) -> ReleaseMark | None:
        """The persisted mark; ``ValueError`` if present but malformed."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError(f"newest: not an object ({value!r})")
        digest, version, created = value.get("digest"), value.get("version"), value.get("created")
        if not isinstance(digest, str) or not isinstance(version, str):
            raise ValueError(f"newest: malformed ({value!r})")
        if created is not None:
            if not isinstance(created, str):
                raise ValueError(f"newest: malformed created ({created!r})")
            parse_time(created, "created")
        return cls(digest, version, created)


def is_older(candidate: ReleaseMark, newest: ReleaseMark) -> bool:
    """Whether ``candidate`` was released before ``newest``.

    Signed creation times decide; a document without one is older than any
    with one. Between two documents without one, numeric dotted versions
    decide; versions that cannot be ordered count as older (fail closed).
    """
    if candidate.digest == newest.digest:
        return False
    if candidate.created is not None and newest.created is not None:
        return parse_time(candidate.created, "created") < parse_time(newest.created, "created")
    if newest.created is not None:
        return True
    if candidate.created is not None:
        return False
    if candidate.version == newest.version:
        return False
    a, b = _VERSION.match(candidate.version), _VERSION.match(newest.version)
    if a is None or b is None:
        return True
    left = [int(part) for part in a.group(1).split(".")]
    right = [int(part) for part in b.group(1).split(".")]
    width = max(len(left), len(right))
    return left + [0] * (width - len(left)) < right + [0] * (width - len(right))


def check_rollback(candidate: ReleaseMark, newest: ReleaseMark | None) -> None:
    """Raise ``VerificationError(step="rollback")`` if ``candidate`` is older."""
    if newest is None:
        return
    try:
        older = is_older(candidate, newest)
    except VerificationError:
        older = True  # an unreadable time cannot be ordered: refused
    if older:
        raise VerificationError(
            f"rollback: release {candidate.describe()} is older than the newest "
            f"activated {newest.describe()}",
            "rollback",
            f"not older than {newest.describe()}",
            candidate.describe(),
        )


@dataclass(frozen=True)
class Reading:
    """One reading of the trusted clock."""

    now: float  # the time to use: the wall clock, or the floor when it is behind
    wall: float
    floor: float

    @property
    def behind(self) -> bool:
        return self.wall < self.floor


class TimeFloor:
    """The node's time floor, persisted durably at ``path`` (see the module doc)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        skew_s: float = DEFAULT_SKEW_S,
        persist_interval_s: float = DEFAULT_PERSIST_INTERVAL_S,
    ) -> None:
        self.path = path
        self.clock = clock
        self.skew_s = skew_s
        self.persist_interval_s = persist_interval_s
        self._lock = threading.Lock()
        self.floor = 0.0
        self.persisted = 0.0
        self.error: str | None = None
        try:
            document = json.loads(path.read_bytes())
            value = document["floor"] if isinstance(document, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                self.floor = self.persisted = float(value)
            else:
                raise ValueError(f"no floor in {document!r}")
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError) as err:
            # Fail closed: with the floor unknown the node still has its clock,
            # and says so (docs/operations.md, "Time and rollback").
            self.error = f"{path}: unreadable time floor ({err})"
            log.warning("%s", self.error)

    def read(self) -> Reading:
        """The wall clock, raised to the floor; the floor follows the clock up."""
        wall = self.clock()
        with self._lock:
            if wall > self.floor:
                self.floor = wall
            floor = self.floor
            if floor - self.persisted >= self.persist_interval_s:
                self._persist()
        return Reading(max(wall, floor), wall, floor)

    def now(self) -> float:
        """The time to use, without persisting (cheap: for every decision)."""
        return max(self.clock(), self.floor)

    def advance(self, created: str | None) -> None:
        """At activation: raise the floor to a signed creation time (less the skew
        allowance) and to the clock, and persist it."""
        with self._lock:
            candidates = [self.floor, self.clock()]
            if created is not None:
                candidates.append(parse_time(created, "created").timestamp() - self.skew_s)
            self.floor = max(candidates)
            self._persist()

    def _persist(self) -> None:
        try:
            data = json.dumps({"floor": self.floor, "floor_time": iso(self.floor)}).encode()
            write_durably(self.path, data)
            self.persisted = self.floor
        except OSError as err:
            log.warning("%s: could not persist the time floor (%s)", self.path, err)
