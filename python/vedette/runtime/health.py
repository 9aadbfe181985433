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
