"""pytest-benchmark suites for hashing and token buckets, each beside its anchor.

pytest bench/test_bench_foundation.py --benchmark-only --benchmark-group-by=param:size
"""

import hashlib
import os

import blake3 as blake3_package
import pytest
from compare_foundation import LockedTokenBucket

from vedette import hashing, quota

SIZES = {"64B": 64, "4KiB": 4 << 10, "1MiB": 1 << 20, "64MiB": 64 << 20}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize(
    "implementation",
    ["vedette.blake3", "blake3-package", "vedette.sha256", "hashlib.sha256"],
)
def test_one_shot(benchmark, size, implementation):
    data = os.urandom(SIZES[size])
    benchmark.group = f"one-shot {size}"
    call = {
        "vedette.blake3": lambda: hashing.blake3(data),
        "blake3-package": lambda: blake3_package.blake3(data).digest(),
        "vedette.sha256": lambda: hashing.sha256(data),
        "hashlib.sha256": lambda: hashlib.sha256(data).digest(),
    }[implementation]
    benchmark(call)


@pytest.fixture(scope="module")
def large_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "256MiB"
    with path.open("wb") as out:
        for _ in range(256):
            out.write(os.urandom(1 << 20))
    return path


@pytest.mark.parametrize("implementation", ["vedette.hash_file", "blake3-package.update_mmap"])
def test_file_256mib_all_threads(benchmark, large_file, implementation):
    benchmark.group = "hash_file 256 MiB"
    if implementation == "vedette.hash_file":
        benchmark(hashing.hash_file, large_file)
    else:
        auto = blake3_package.blake3.AUTO
        benchmark(lambda: blake3_package.blake3(max_threads=auto).update_mmap(large_file).digest())


@pytest.mark.parametrize("implementation", ["vedette.TokenBucket", "pure-python"])
def test_try_take(benchmark, implementation):
    benchmark.group = "try_take"
    if implementation == "vedette.TokenBucket":
        bucket = quota.TokenBucket(1e12, 1e9)
    else:
        bucket = LockedTokenBucket(1e12, 1e9)
    benchmark(bucket.try_take)


def test_quota_table_try_take(benchmark):
    benchmark.group = "try_take"
    table = quota.QuotaTable(1e12, 1e9, 10_000)
    benchmark(table.try_take, "caller-1")
