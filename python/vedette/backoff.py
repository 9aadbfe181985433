"""Full-jitter exponential backoff: wait a draw from ``[0, min(cap, base ·
2^failures))``. The ceiling is the core's one rule (``rust/peers/retry.rs``,
INV-12); the draw is made here so that callers may bring their own random
source (a test's seeded one). :class:`RetrySchedule` keeps a whole dial
schedule (backoff and a budget of dials per window) in the core, for a part
that dials a remote."""

from __future__ import annotations

import random

from vedette._core import RetrySchedule, backoff_ceiling

__all__ = ["RetrySchedule", "backoff_ceiling", "full_jitter"]


def full_jitter(
    base_s: float, cap_s: float, failures: int, rng: random.Random | None = None
) -> float:
    """Seconds to wait after ``failures`` failures in a row."""
    ceiling = backoff_ceiling(base_s, cap_s, max(0, min(failures, 1 << 31)))
    return (rng or random).uniform(0, ceiling)
