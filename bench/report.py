"""Shared pieces of the comparison scripts: timing, machine facts, RESULTS.md sections.

Every comparison times the anchor and vedette in the same run, interleaved
round by round so that drift in machine load hits both alike, and reports the
ratio anchor_time / vedette_time (above 1.0 means vedette is faster).
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass
class Comparison:
    name: str
    anchor: str
    anchor_s: float
    vedette_s: float
    goal: float | None = None
    round_ratios: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        return self.anchor_s / self.vedette_s

    @property
    def spread(self) -> str:
        """Lowest and highest per-round ratio: the noise band of this run."""
        if not self.round_ratios:
            return ""
        return f"{min(self.round_ratios):.2f}–{max(self.round_ratios):.2f}"

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return "report"
        return "met" if self.ratio >= self.goal else "NOT met"


def per_call_seconds(fn: Callable[[], object], min_time: float = 0.05) -> float:
    """Seconds per call of ``fn``, timed over a batch lasting at least ``min_time``."""
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / batch
        batch *= 2 if elapsed == 0 else max(2, int(min_time / elapsed * 1.2))


def compare(
    name: str,
    anchor_name: str,
    anchor: Callable[[], object],
    vedette: Callable[[], object],
    *,
    goal: float | None = None,
    rounds: int = 7,
    min_time: float = 0.05,
) -> Comparison:
    """Median per-call time of each over ``rounds`` interleaved rounds."""
    anchor_times, vedette_times = [], []
    for _ in range(rounds):
        anchor_times.append(per_call_seconds(anchor, min_time))
        vedette_times.append(per_call_seconds(vedette, min_time))
    return Comparison(
        name,
        anchor_name,
        statistics.median(anchor_times),
        statistics.median(vedette_times),
        goal,
        tuple(a / v for a, v in zip(anchor_times, vedette_times, strict=True)),
    )


def format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def comparison_table(rows: list[Comparison]) -> str:
    lines = [
        "| benchmark | anchor | anchor time | vedette time | ratio (anchor/vedette) "
        "| per-round range | goal | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        goal = f"≥ {row.goal:g}×" if row.goal is not None else "—"
        lines.append(
            f"| {row.name} | {row.anchor} | {format_seconds(row.anchor_s)} | "
            f"{format_seconds(row.vedette_s)} | {row.ratio:.2f}× | {row.spread} | {goal} "
            f"| {row.verdict} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{now}; {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"{rustc or 'rustc unknown'}; load average at start {load}"
    )


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- key:start -->`` and ``<!-- key:end -->``."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def hide_uvloop(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """``env`` with uvloop unimportable, as in a plain ``pip install vedette``:
    vedette and uvicorn's ``--loop auto`` both fall back to asyncio's own loop."""
    shadow = workdir / "no-uvloop" / "uvloop"
    shadow.mkdir(parents=True, exist_ok=True)
    (shadow / "__init__.py").write_text('raise ImportError("uvloop hidden for this run")\n')
    path = [str(shadow.parent), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}
