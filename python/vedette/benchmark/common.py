"""What every measurement shares: results, the scratch folder, the time budget."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Better = Literal["higher", "lower"]
Progress = Callable[[str], None]


class BenchError(Exception):
    """A measurement that could not run; the command exits 2 with this message."""


@dataclass(frozen=True)
class Metric:
    """One measured number. ``key`` is stable (result files are compared by it)."""

    key: str
    label: str
    value: float
    unit: str
    better: Better
    detail: str = ""


@dataclass(frozen=True)
class Settings:
    """How long each measurement runs.

    ``seconds`` is the time each timed loop runs (a measurement with two loops,
    1 and 16 writers say, gives each half); ``starts`` is how many times the
    example server is started to time start-to-ready; ``connections`` is the
    number of keep-alive connections of the HTTP load generator.
    """

    seconds: float
    starts: int
    connections: int


class Scratch:
    """The one folder a run may write to: a new temporary directory, removed by
    :meth:`cleanup` (call it in a ``finally``). :meth:`path` refuses any path
    that would lead outside it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vedette-bench-")).resolve()

    def path(self, *parts: str) -> Path:
        return self.check(self.root.joinpath(*parts))

    def check(self, path: Path) -> Path:
        """``path`` resolved, if it is inside the scratch folder; else :class:`BenchError`."""
        candidate = path.resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise BenchError(f"refusing to write outside the scratch folder {self.root}: {path}")
        return candidate

    def folder(self, *parts: str) -> Path:
        made = self.path(*parts)
        made.mkdir(parents=True, exist_ok=True)
        return made

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; ``values`` need not be sorted."""
    if not values:
        raise BenchError("no samples were taken")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def timed_loop(seconds: float, step: Callable[[], object], minimum: int = 1) -> tuple[int, float]:
    """Run ``step`` until ``seconds`` have passed (at least ``minimum`` times);
    returns (how many times, elapsed seconds)."""
    count = 0
    began = time.perf_counter()
    deadline = began + seconds
    while count < minimum or time.perf_counter() < deadline:
        step()
        count += 1
    return count, time.perf_counter() - began


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class StopWorker(Exception):
    """Raised by a step to end its thread's loop early without failing the run."""


def timed_threads(
    threads: int, seconds: float, step: Callable[[], object]
) -> tuple[list[float], float]:
    """Runs ``step`` in ``threads`` threads started together, each at least once and
    until ``seconds`` have passed; returns every call's duration and the elapsed
    time. A step raising :class:`StopWorker` ends its thread; any other error
    fails the run (the first one is raised as :class:`BenchError`)."""
    durations: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start_line = threading.Barrier(threads + 1)
    deadline = [0.0]

    def work() -> None:
        mine: list[float] = []
        try:
            start_line.wait()
            while not mine or time.perf_counter() < deadline[0]:
                started = time.perf_counter()
                step()
                mine.append(time.perf_counter() - started)
        except StopWorker:
            pass
        except BaseException as err:
            with lock:
                failures.append(str(err) or type(err).__name__)
        with lock:
            durations.extend(mine)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    try:
        for worker in workers:
            worker.start()
        deadline[0] = time.perf_counter() + seconds
        began = time.perf_counter()
        start_line.wait()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - began
    finally:
        start_line.abort()
    if failures:
        raise BenchError(failures[0])
    return durations, elapsed
