"""pytest-benchmark suites for the segment store.

    pip install -e .[bench] && python -m pytest bench/test_bench_store.py --benchmark-only

The side-by-side comparison with SQLite is ``bench/compare_store.py``.
"""

import threading

import pytest

from vedette.store import SegmentStore

RECORD = b"r" * 256


@pytest.fixture
def store(tmp_path):
    with SegmentStore.open(tmp_path / "s", ceiling_bytes=4 << 30, node_id="bench") as opened:
        yield opened


@pytest.fixture
def interval_store(tmp_path):
    with SegmentStore.open(
        tmp_path / "s", ceiling_bytes=4 << 30, node_id="bench", durability="interval"
    ) as opened:
        yield opened


def test_durable_append_one_writer(benchmark, store):
    benchmark(store.append, RECORD)


def test_durable_append_sixteen_writers(benchmark, store):
    """One round: 16 threads append 50 records each (800 durable appends)."""

    def round_of_appends():
        def writer():
            for _ in range(50):
                store.append(RECORD)

        threads = [threading.Thread(target=writer) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    benchmark.pedantic(round_of_appends, rounds=5, iterations=1)


def test_append_many_interval_10k(benchmark, interval_store):
    batch = [RECORD] * 10_000
    benchmark(interval_store.append_many, batch)


def test_open_and_recover(benchmark, tmp_path):
    path = tmp_path / "s"
    with SegmentStore.open(
        path, ceiling_bytes=1 << 30, node_id="bench", durability="interval"
    ) as s:
        for _ in range(40):
            s.append_many([RECORD] * 10_000)

    def reopen():
        SegmentStore.open(path).close()

    benchmark(reopen)
