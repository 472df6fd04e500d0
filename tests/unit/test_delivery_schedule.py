"""RetrySchedule: N delays mean N + 1 attempts; jitter stays within its fraction."""

from __future__ import annotations

import random

import pytest

from telepty.delivery.schedule import RetrySchedule


def test_without_jitter_the_delays_are_exact() -> None:
    s = RetrySchedule((30, 180, 600))
    assert [s.delay_for(i) for i in range(4)] == [30.0, 180.0, 600.0, None]
    assert len(s) == 3


def test_negative_index_and_empty_schedule_are_exhausted() -> None:
    assert RetrySchedule((1,)).delay_for(-1) is None
    assert RetrySchedule(()).delay_for(0) is None


def test_jitter_stays_within_the_fraction_and_varies() -> None:
    s = RetrySchedule((100,), jitter=0.1, rng=random.Random(7))
    delays = [s.delay_for(0) for _ in range(200)]
    assert all(d is not None and 90 <= d <= 110 for d in delays)
    assert len(set(delays)) > 100


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    a = RetrySchedule((30, 180), jitter=0.2, rng=random.Random(1))
    b = RetrySchedule((30, 180), jitter=0.2, rng=random.Random(1))
    assert [a.delay_for(i) for i in range(2)] == [b.delay_for(i) for i in range(2)]


def test_never_negative() -> None:
    s = RetrySchedule((0.0,), jitter=1.0, rng=random.Random(3))
    assert all((s.delay_for(0) or 0) >= 0 for _ in range(50))


@pytest.mark.parametrize(("delays", "jitter"), [((-1,), 0.0), ((1,), -0.1), ((1,), 1.5)])
def test_rejects_nonsense(delays: tuple[float, ...], jitter: float) -> None:
    with pytest.raises(ValueError):
        RetrySchedule(delays, jitter)
