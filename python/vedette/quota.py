"""Token buckets on a monotonic clock, and a keyed table of them with a key bound.

``TokenBucket(rate_per_s, burst)`` starts full, holds at most ``burst`` tokens
and refills at ``rate_per_s``. ``try_take(n)`` never blocks; ``wait_time(n)``
says how long until ``n`` tokens are there. Asking for more than ``burst``
raises :class:`QuotaError`, since such a request could never succeed.

``QuotaTable(rate_per_s, burst, max_keys)`` holds one bucket per key and never
more than ``max_keys`` of them, dropping the least recently used first.

Pass ``clock=ManualClock()`` to drive time by hand in tests.
"""

from __future__ import annotations

from vedette._core import ManualClock, QuotaTable, TokenBucket
from vedette.errors import QuotaError

__all__ = ["ManualClock", "QuotaError", "QuotaTable", "TokenBucket"]
