"""`vedette bench` end to end in a subprocess, as on a device: every metric, the
machine's facts, nothing left behind; `vedette bench compare`. No assertion here
is about speed."""

from __future__ import annotations

import datetime
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vedette import __version__, event_loop
from vedette.benchmark.common import BenchError, Scratch

VEDETTE = [sys.executable, "-m", "vedette"]

METRICS = {
    "decisions.t1.per_s",
    "decisions.t1.p99_us",
    "decisions.t16.per_s",
    "decisions.t16.p99_us",
    "store.w1.appends_s",
    "store.w16.appends_s",
    "hash.blake3.mib_s",
    "hash.sha256.mib_s",
    "release.verify_ms",
    "serve.ready_ms",
    "serve.idle_rss_mib",
    "http.rps",
    "http.p99_ms",
}


@dataclass
class Places:
    """Where a run may not write (its cwd, HOME, XDG_STATE_HOME) and its TMPDIR."""

    watched: Path
    tmp: Path
    out: Path

    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("VEDETTE_")}
        env.update(
            {
                "HOME": str(self.watched),
                "XDG_STATE_HOME": str(self.watched),
                "XDG_CACHE_HOME": str(self.watched),
                "TMPDIR": str(self.tmp),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        return env


def make_places(root: Path) -> Places:
    watched, out = root / "watched", root / "out"
    watched.mkdir()
    out.mkdir()
    # A short TMPDIR: the example server's operator socket lives under it.
    tmp = Path(tempfile.mkdtemp(prefix="vb-"))
    return Places(watched, tmp, out)


def run(places: Places, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VEDETTE, *args],
        cwd=places.watched,
        env=places.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def bench_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Places, subprocess.CompletedProcess[str]]]:
    places = make_places(tmp_path_factory.mktemp("bench"))
    result = run(
        places, "bench", "--quick", "--seconds", "0.2", "--json", str(places.out / "a.json")
    )
    yield places, result
    places.tmp.rmdir()


def test_bench_runs_and_prints_a_table(
    bench_run: tuple[Places, subprocess.CompletedProcess[str]],
) -> None:
    _, result = bench_run
    assert result.returncode == 0, result.stderr
    for label in ("in-process decisions, 1 thread", "durable appends, 16 writers", "BLAKE3",
                  "SHA-256", "release verification", "start-to-ready", "idle RSS",
                  "POST /v1/tool over loopback"):  # fmt: skip
        assert label in result.stdout
    assert "[6/6]" in result.stderr  # progress goes to stderr
    assert "beside the server" in result.stdout  # the load generator shares the CPU


def test_every_metric_is_present_and_positive(
    bench_run: tuple[Places, subprocess.CompletedProcess[str]],
) -> None:
    places, result = bench_run
    assert result.returncode == 0, result.stderr
    document = json.loads((places.out / "a.json").read_text())
    assert document["schema"] == "vedette.bench/v1"
    assert set(document["metrics"]) == METRICS
    for key, metric in document["metrics"].items():
        assert math.isfinite(metric["value"]), key
        assert metric["value"] > 0, key
        assert metric["better"] in ("higher", "lower"), key
        assert metric["unit"], key


def test_the_json_has_the_machine_facts(
    bench_run: tuple[Places, subprocess.CompletedProcess[str]],
) -> None:
    places, _ = bench_run
    facts = json.loads((places.out / "a.json").read_text())["machine"]
    assert facts["cpu_model"]
    assert facts["cores"] >= 1
    assert facts["cores_usable"] >= 1
    assert facts["memory_mib"] > 0
    assert facts["python"].split()[-1] == ".".join(map(str, sys.version_info[:3]))
    assert facts["vedette"] == __version__
    assert facts["event_loop"] == event_loop.loop_name()
    assert datetime.datetime.fromisoformat(facts["date"]).tzinfo is not None


def test_nothing_is_written_outside_the_temporary_directory(
    bench_run: tuple[Places, subprocess.CompletedProcess[str]],
) -> None:
    places, result = bench_run
    assert result.returncode == 0, result.stderr
    assert list(places.watched.iterdir()) == []  # cwd, HOME, XDG_STATE_HOME
    assert list(places.tmp.iterdir()) == []  # the scratch folder is gone
    assert [path.name for path in places.out.iterdir()] == ["a.json"]


def test_compare_prints_ratios(
    bench_run: tuple[Places, subprocess.CompletedProcess[str]],
) -> None:
    places, _ = bench_run
    a = places.out / "a.json"
    document = json.loads(a.read_text())
    document["metrics"]["http.rps"]["value"] *= 2
    document["metrics"]["serve.ready_ms"]["value"] *= 2
    b = places.out.parent / "b.json"
    b.write_text(json.dumps(document))
    result = run(places, "bench", "compare", str(a), str(b))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rps = next(line for line in lines if line.startswith("POST /v1/tool over loopback"))
    assert "2.00×" in rps
    assert "B better" in rps
    ready = next(line for line in lines if "start-to-ready" in line)
    assert "2.00×" in ready
    assert "B worse" in ready
    blake = next(line for line in lines if line.startswith("BLAKE3"))
    assert "1.00×" in blake
    assert sum("×" in line for line in lines) == len(METRICS)
    assert list(places.watched.iterdir()) == []


def test_compare_refuses_a_missing_or_invalid_file(tmp_path: Path) -> None:
    places = make_places(tmp_path)
    try:
        good = tmp_path / "good.json"
        good.write_text(
            json.dumps({"schema": "vedette.bench/v1",
                        "metrics": {"x": {"value": 1.0, "better": "higher"}}})
        )  # fmt: skip
        invalid = tmp_path / "invalid.json"
        invalid.write_text("{not json")
        other = tmp_path / "other.json"
        other.write_text(json.dumps({"metrics": {}}))
        for first, second in ((good, tmp_path / "missing.json"), (invalid, good), (good, other)):
            result = run(places, "bench", "compare", str(first), str(second))
            assert result.returncode == 2, (first, second, result.stdout)
            assert result.stderr.startswith("vedette bench: "), result.stderr
        same = run(places, "bench", "compare", str(good), str(good))
        assert same.returncode == 0, same.stderr
        assert "1.00×" in same.stdout
    finally:
        places.tmp.rmdir()


def test_bench_refuses_a_json_path_in_a_missing_folder(tmp_path: Path) -> None:
    places = make_places(tmp_path)
    try:
        result = run(places, "bench", "--quick", "--json", str(tmp_path / "nope" / "out.json"))
        assert result.returncode == 2
        assert "no folder" in result.stderr
        assert list(places.tmp.iterdir()) == []
    finally:
        places.tmp.rmdir()


def processes_with(variable: str, value: str) -> list[int]:
    """Pids of this user's processes whose environment has ``variable=value``."""
    wanted = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if wanted in environ.split(b"\0"):
                found.append(int(entry.name))
    return found


def test_an_interrupt_removes_the_scratch_folder_and_stops_the_server(tmp_path: Path) -> None:
    places = make_places(tmp_path)
    # Timed steps of 2 s: the example server's starts and the load run after
    # "[5/6]" last several seconds, so the interrupt lands inside them even when
    # this process reads the progress line late on a loaded machine.
    process = subprocess.Popen(
        [*VEDETTE, "bench", "--seconds", "2"],
        cwd=places.watched,
        env=places.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("[5/6]"):  # the example server is starting
                break
        process.send_signal(signal.SIGINT)
        process.wait(60)
        assert process.returncode == 130
        assert list(places.tmp.iterdir()) == []
        assert list(places.watched.iterdir()) == []
        assert processes_with("TMPDIR", str(places.tmp)) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        places.tmp.rmdir()


def test_the_scratch_folder_refuses_paths_leading_out(tmp_path: Path) -> None:
    with Scratch() as scratch:
        assert scratch.path("a", "b").parent.parent == scratch.root
        with pytest.raises(BenchError):
            scratch.path("..", "elsewhere")
        with pytest.raises(BenchError):
            scratch.check(tmp_path)
        root = scratch.root
    assert not root.exists()


def answer_status(raw: bytes) -> tuple[int, bytes]:
    """The status ``read_answer`` gives for ``raw``, and what it left unread."""
    import asyncio

    from vedette.benchmark.http_load import read_answer

    async def read() -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        status = await read_answer(reader)
        return status, await reader.read()

    return asyncio.run(read())


def test_the_load_generator_reads_whole_answers() -> None:
    sized = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    assert answer_status(sized + b"next") == (200, b"next")
    chunked = b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert answer_status(chunked + b"next") == (429, b"next")
    with pytest.raises(BenchError):
        answer_status(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")


def test_compare_names_metrics_only_one_file_has() -> None:
    from vedette.benchmark.compare import compare

    def result(**values: float) -> dict[str, object]:
        metrics = {key: {"label": key, "value": value, "unit": "u", "better": "lower"}
                   for key, value in values.items()}  # fmt: skip
        return {"schema": "vedette.bench/v1", "metrics": metrics}

    text = compare(result(x=2.0, y=1.0), result(x=1.0, z=3.0), "a.json", "b.json")
    rows = {line.split()[0]: line for line in text.splitlines() if line and line[0] in "xyz"}
    assert "0.50×" in rows["x"]
    assert "B better" in rows["x"]
    assert "not in B" in rows["y"]
    assert "not in A" in rows["z"]


def test_a_measurement_that_cannot_run_exits_2_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from vedette.benchmark import decisions
    from vedette.cli.bench import bench_group

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decisions, "measure", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(bench_group, ["--quick", "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 2
    assert "vedette bench: in-process decisions" in result.output
    assert "No space left on device" in result.output
    assert list(tmp_path.iterdir()) == []
