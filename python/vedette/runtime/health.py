"""Node health: one verdict from every part that can stop calls from being served.

Each part (releases, the evidence store, the listener, the archive uplink, …)
is a *health source*: a function returning a :class:`Health` — ``ok``,
``degraded`` (calls are served, but something needs an operator: say what) or
``failing`` (calls are being denied or will be at once: say why). The node's
verdict is the worst of them, with every reason; ``/v1/health`` answers 200
for ``ok`` and ``degraded`` and 503 for ``failing`` (docs/operations.md,
"Health").

Reasons are shown to anyone who can reach the adapter listener: they name
states and numbers, never host paths or secrets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

State = Literal["ok", "degraded", "failing"]

_RANK: dict[str, int] = {"ok": 0, "degraded": 1, "failing": 2}


@dataclass(frozen=True)
class Health:
    state: State
    reasons: tuple[str, ...] = field(default=())

    @staticmethod
    def ok() -> Health:
        return Health("ok")


HealthSource = Callable[[], Health]


def worst(states: list[State]) -> State:
    """The most severe of ``states`` (``ok`` for none)."""
    return max(states, key=_RANK.__getitem__, default="ok")


def combine(parts: dict[str, Health]) -> tuple[State, list[str]]:
    """The node's verdict and its reasons (each prefixed with the part it is about)."""
    reasons = [f"{name}: {reason}" for name, part in parts.items() for reason in part.reasons]
    return worst([part.state for part in parts.values()]), reasons


def probe(source: HealthSource) -> Health:
    """Runs one source; a source that fails to answer is itself a failure."""
    try:
        return source()
    except Exception as err:  # health must answer even when a part cannot
        return Health("failing", (f"health check failed ({type(err).__name__})",))


# What each release state other than ``ok`` means, in a reason.
_RELEASE_STATES = {
    "deny_all": "denies every call (no usable release)",
    "stale": "serves a release the control plane has not confirmed lately",
    "lkg": "serves its last-known-good release",
    "clock_behind": "reads a clock behind the newest time it has trusted (time floor)",
    "unsigned": "runs unsigned local files (unsigned = true)",
}


def releases_health(agents: dict[str, str]) -> Health:
    """The releases part from each agent's release state: signed releases tell
    ``ok``, ``stale``, ``lkg``, ``clock_behind`` or ``deny_all``; local ones ``ok``
    or ``deny_all``. Failing when no agent can be served."""
    if not agents:
        return Health("failing", ("no agent is configured; every call is denied",))
    reasons = tuple(
        f"agent {agent} {_RELEASE_STATES.get(state, state)}"
        for agent, state in agents.items()
        if state != "ok"
    )
    if all(state == "deny_all" for state in agents.values()):
        return Health("failing", reasons)
    return Health("degraded", reasons) if reasons else Health.ok()


def store_health(verdict: str, reason: str) -> Health:
    """The evidence store part: ok below the high-water mark; degraded above it or
    with unacknowledged quarantine; failing while appends are refused, and in any
    state not known here (docs/operations.md)."""
    if verdict == "ok":
        return Health.ok()
    if verdict == "degraded":
        return Health("degraded", (reason,))
    return Health("failing", (reason,))
