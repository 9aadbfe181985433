"""Hash throughput: BLAKE3 and SHA-256 (``vedette.hashing``) over a 1 MiB buffer in memory."""

from __future__ import annotations

import os
from collections.abc import Callable

from vedette.benchmark.common import Metric, timed_loop
from vedette.hashing import Digest, blake3, sha256

BUFFER_BYTES = 1 << 20


def measure(seconds: float) -> list[Metric]:
    data = os.urandom(BUFFER_BYTES)
    metrics = []
    functions: tuple[tuple[str, Callable[[bytes], Digest]], ...] = (
        ("blake3", blake3),
        ("sha256", sha256),
    )
    for name, function in functions:
        function(data)  # warm
        count, elapsed = timed_loop(seconds, lambda: function(data))  # noqa: B023
        mib_s = count * BUFFER_BYTES / elapsed / (1 << 20)
        label = "BLAKE3" if name == "blake3" else "SHA-256"
        metrics.append(
            Metric(f"hash.{name}.mib_s", f"{label} throughput", mib_s, "MiB/s", "higher",
                   f"1 MiB buffer, {count} times")
        )  # fmt: skip
    return metrics
