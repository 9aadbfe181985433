"""Full-jitter backoff: the one ceiling rule in the core, the draw below it."""

from __future__ import annotations

import random

import pytest

from vedette.backoff import RetrySchedule, backoff_ceiling, full_jitter


@pytest.mark.parametrize(
    ("failures", "ceiling"), [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (40, 30.0), (2**31, 30.0)]
)
def test_the_ceiling_doubles_from_the_base_up_to_the_cap(failures, ceiling):
    assert backoff_ceiling(0.5, 30.0, failures) == pytest.approx(ceiling)


def test_full_jitter_stays_below_the_cores_ceiling():
    rng = random.Random(3)
    for failures in range(12):
        ceiling = backoff_ceiling(0.5, 30.0, failures)
        draws = [full_jitter(0.5, 30.0, failures, rng) for _ in range(200)]
        assert all(0 <= d < ceiling or d == ceiling == 0 for d in draws)
        # Spread over the whole range, not bunched at either end.
        assert min(draws) < ceiling * 0.2
        assert max(draws) > ceiling * 0.8


def test_a_bad_base_or_cap_is_refused():
    with pytest.raises(ValueError, match="base_s"):
        backoff_ceiling(0.0, 30.0, 1)
    with pytest.raises(ValueError, match="cap_s"):
        backoff_ceiling(0.5, float("nan"), 1)


def test_the_retry_schedule_spends_its_budget_then_waits_out_the_window():
    schedule = RetrySchedule(0.001, 0.01, 3, 60.0)
    for _ in range(3):
        assert schedule.wait_s() == 0.0
        schedule.attempt()
    assert schedule.attempts == 3
    # A fourth dial in the same window waits for the first to leave it.
    assert 59.0 < schedule.wait_s() <= 60.0


def test_the_retry_schedule_backs_off_after_failures_and_starts_over_on_success():
    schedule = RetrySchedule(10.0, 100.0, 1000, 60.0)
    schedule.attempt()
    delay = schedule.failed()
    assert 0.0 <= delay < 10.0
    assert schedule.failures == 1
    assert schedule.wait_s() <= delay
    schedule.succeeded()
    assert schedule.failures == 0
    assert schedule.wait_s() == 0.0


def test_a_retry_schedule_refuses_a_zero_window():
    with pytest.raises(ValueError, match="window_s"):
        RetrySchedule(0.5, 30.0, 10, 0.0)
