"""The control-plane poller: one thread per agent watching an OCI tag.

Every ``poll_interval_s`` (jittered by ±``JITTER`` so a fleet does not poll in
step) the tag is resolved; a new digest is fetched, verified and activated by
the agent's :class:`~vedette.releases.lifecycle.AgentTrack`. When the source
cannot be reached the active release keeps serving, the track reports since
when, and the next try waits a full-jitter exponential backoff
(``uniform(0, min(cap, base · 2^failures))``), never longer than the interval
would, so a restored control plane is noticed promptly. Each turn of the loop
first runs the track's periodic check (:meth:`AgentTrack.tick`: expiry while
serving, the time floor). Enforces INV-12:
bounded retry — the attempt counter is monotonic and never reset, the wait
between attempts is capped, and at most one attempt per agent is in flight.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from typing import Protocol

from vedette.backoff import full_jitter
from vedette.config import AgentConfig
from vedette.errors import OciError
from vedette.releases.oci import Reference, Repository

log = logging.getLogger("vedette.releases.poller")

JITTER = 0.2
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0


class PolledTrack(Protocol):
    """What the poller needs of an agent's track
    (:class:`~vedette.releases.lifecycle.AgentTrack`, which starts the poller)."""

    name: str
    config: AgentConfig
    reference: Reference

    def update_from(self, source: Repository, reference: str) -> str: ...
    def contact_failed(self, error: str, attempt: int) -> None: ...
    def tick(self) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff with a cap."""

    base_s: float = BACKOFF_BASE_S
    cap_s: float = BACKOFF_CAP_S

    def delay(self, failures: int, rng: random.Random) -> float:
        return full_jitter(self.base_s, self.cap_s, failures, rng)


class Poller:
    """Watches one agent's release tag; ``poll_once`` is one attempt."""

    def __init__(
        self,
        track: PolledTrack,
        source: Repository,
        *,
        interval_s: float | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.track = track
        self.source = source
        self.interval_s = interval_s if interval_s is not None else track.config.poll_interval_s
        self.backoff = backoff or Backoff(cap_s=min(BACKOFF_CAP_S, self.interval_s))
        self.rng = rng or random.Random()
        self.attempts = 0  # monotonic: every attempt, never reset (INV-12)
        self.failures = 0  # consecutive failures, for the backoff exponent
        self.last_outcome: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def next_delay(self) -> float:
        if self.failures:
            return self.backoff.delay(self.failures, self.rng)
        spread = self.interval_s * JITTER
        return self.rng.uniform(self.interval_s - spread, self.interval_s + spread)

    def poll_once(self) -> str:
        """One attempt: ``current``, ``activated``, ``rejected``, ``known-bad`` or
        ``unreachable``. Never raises for anything the source does."""
        self.attempts += 1
        tag = self.track.reference.reference
        try:
            outcome = self.track.update_from(self.source, tag)
        except (OciError, OSError) as err:
            self.failures += 1
            self.track.contact_failed(f"{type(err).__name__}: {err}", self.attempts)
            outcome = "unreachable"
        except Exception as err:  # anything unexpected: the active release stays
            log.exception("polling %s failed", self.track.name)
            self.failures += 1
            self.track.contact_failed(f"{type(err).__name__}: {err}", self.attempts)
            outcome = "unreachable"
        else:
            self.failures = 0
        self.last_outcome = outcome
        return outcome

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"vedette-poller-{self.track.name}", daemon=True
        )
        self._thread.start()

    def run_once(self) -> str:
        """One turn of the loop: the track's periodic check (expiry, the time
        floor), then one attempt."""
        try:
            self.track.tick()
        except Exception:  # the check failed: the attempt still runs
            log.exception("the periodic check of %s failed", self.track.name)
        return self.poll_once()

    def wake(self) -> None:
        """Poll now rather than at the next interval (the trust changed)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self.next_delay())
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        close = getattr(getattr(self.source, "client", None), "close", None)
        if close is not None:
            close()
