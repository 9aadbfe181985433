"""Token buckets and the quota table: rates, refusals, threads, the key bound."""

import math
import threading

import pytest

from vedette.errors import VedetteError
from vedette.quota import ManualClock, QuotaError, QuotaTable, TokenBucket


def test_bucket_starts_full_and_refills_at_its_rate():
    clock = ManualClock()
    bucket = TokenBucket(rate_per_s=20, burst=5, clock=clock)
    assert bucket.available == 5
    assert [bucket.try_take() for _ in range(6)] == [True] * 5 + [False]
    assert bucket.wait_time() == pytest.approx(0.05)
    clock.advance(0.049)
    assert not bucket.try_take()
    clock.advance(0.001)
    assert bucket.try_take()
    clock.advance(3600)
    assert bucket.available == 5, "refill stops at burst"


@pytest.mark.parametrize(("rate", "burst"), [(1.0, 1), (7.5, 3), (1000.0, 50), (1e6, 1000)])
def test_rate_accuracy_over_a_long_simulated_run(rate, burst):
    """Taking as fast as possible for a simulated run grants burst + rate * seconds."""
    clock = ManualClock()
    bucket = TokenBucket(rate, burst, clock=clock)
    seconds = min(100.0, 100_000 / rate)
    steps = 4000
    granted = 0
    for _ in range(steps):
        while bucket.try_take():
            granted += 1
        clock.advance(seconds / steps)
    while bucket.try_take():
        granted += 1
    expected = burst + rate * clock.now
    assert expected - 1 <= granted <= expected, (granted, expected)


def test_wait_time_says_when_tokens_will_be_there():
    clock = ManualClock(start=10.0)
    bucket = TokenBucket(2, 4, clock=clock)
    assert bucket.wait_time(4) == 0
    assert bucket.try_take(4)
    assert bucket.wait_time(1) == pytest.approx(0.5)
    assert bucket.wait_time(4) == pytest.approx(2.0)
    assert bucket.wait_time(0) == 0
    clock.advance(bucket.wait_time(3))
    assert bucket.try_take(3)
    assert bucket.available == pytest.approx(0, abs=1e-9)


def test_large_takes_pace_bandwidth():
    clock = ManualClock()
    bucket = TokenBucket(rate_per_s=1_000_000, burst=65_536, clock=clock)  # bytes
    sent = 0
    for _ in range(10_000):
        if bucket.try_take(16_384):
            sent += 16_384
        clock.advance(0.001)
    # 10 simulated seconds at 1 MB/s plus the initial burst, to within one frame.
    assert 10_000_000 <= sent <= 10_000_000 + 65_536 + 16_384


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [
        (0, 1, "rate_per_s must be a finite number > 0, got 0"),
        (-5, 1, "rate_per_s must be a finite number > 0, got -5"),
        (math.nan, 1, "rate_per_s must be a finite number > 0, got NaN"),
        (math.inf, 1, "rate_per_s must be a finite number > 0, got inf"),
        (1, 0, "burst must be a finite number >= 1, got 0"),
        (1, 0.5, "burst must be a finite number >= 1, got 0.5"),
        (1, math.inf, "burst must be a finite number >= 1, got inf"),
    ],
)
def test_bucket_refuses_impossible_parameters(rate, burst, message):
    with pytest.raises(QuotaError) as caught:
        TokenBucket(rate, burst)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, VedetteError)
    with pytest.raises(QuotaError):
        QuotaTable(rate, burst, 10)


def test_taking_more_than_burst_raises_instead_of_failing_forever():
    bucket = TokenBucket(100, 10)
    with pytest.raises(QuotaError, match="cannot take 11 tokens from a bucket whose burst is 10"):
        bucket.try_take(11)
    with pytest.raises(QuotaError, match="cannot take 11 tokens"):
        bucket.wait_time(11)
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(QuotaError, match="token count must be a finite number >= 0"):
            bucket.try_take(bad)
    with pytest.raises(TypeError):
        bucket.try_take("1")  # type: ignore[arg-type]
    assert bucket.available == 10, "refused calls take nothing"


def test_manual_clock_refuses_going_backwards():
    clock = ManualClock(5)
    with pytest.raises(ValueError, match="finite number >= 0"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="got NaN"):
        ManualClock(math.nan)
    clock.advance(1.5)
    assert clock.now == pytest.approx(6.5)


def test_many_threads_never_over_grant():
    bucket = TokenBucket(rate_per_s=0.001, burst=2000)
    granted = [0] * 8
    start = threading.Barrier(8)

    def take(slot: int) -> None:
        start.wait()
        for _ in range(5000):
            if bucket.try_take():
                granted[slot] += 1

    threads = [threading.Thread(target=take, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 2000 <= sum(granted) <= 2001


def test_quota_table_keeps_keys_apart():
    clock = ManualClock()
    table = QuotaTable(rate_per_s=1, burst=2, max_keys=100, clock=clock)
    assert table.try_take("caller-a", 2)
    assert not table.try_take("caller-a")
    assert table.try_take("caller-b", 2)
    assert table.wait_time("caller-a") == pytest.approx(1.0)
    assert table.available("caller-c") == 2
    clock.advance(1)
    assert table.try_take("caller-a")
    assert len(table) == 3
    with pytest.raises(QuotaError, match="cannot take 3 tokens"):
        table.try_take("caller-a", 3)


@pytest.mark.parametrize("max_keys", [1, 5, 16, 17, 1000])
def test_quota_table_key_bound_holds(max_keys):
    table = QuotaTable(1, 1, max_keys)
    for i in range(3 * max_keys + 100):
        table.try_take(f"key-{i}")
        assert len(table) <= max_keys
    assert table.max_keys == max_keys
    assert table.evictions >= 2 * max_keys + 100
    with pytest.raises(QuotaError, match="max_keys must be >= 1"):
        QuotaTable(1, 1, 0)


def test_recently_used_keys_survive_eviction():
    clock = ManualClock()
    table = QuotaTable(1, 3, max_keys=16, clock=clock)
    table.try_take("busy", 3)
    for i in range(200):
        table.try_take(f"passer-by-{i}")
        table.try_take("busy", 0)  # touching the key keeps it recent
    assert not table.try_take("busy"), "its empty bucket was kept, not replaced by a full one"


def test_quota_table_threads_never_over_grant():
    table = QuotaTable(rate_per_s=0.001, burst=100, max_keys=64)
    granted: dict[str, int] = {f"k{i}": 0 for i in range(8)}
    lock = threading.Lock()

    def take() -> None:
        for _ in range(400):
            for key in granted:
                if table.try_take(key):
                    with lock:
                        granted[key] += 1

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(100 <= count <= 101 for count in granted.values()), granted
