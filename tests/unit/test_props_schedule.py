"""Properties of the retry schedule: never negative, exhausted exactly after len(delays), jitter bounded."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from telepty.delivery.schedule import RetrySchedule

delays_st = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=20)
jitter_st = st.floats(min_value=0, max_value=1, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(delays=delays_st, jitter=jitter_st, seed=st.integers(0, 2**32 - 1))
def test_delays_are_bounded_and_the_schedule_ends_exactly_after_its_length(
    delays: list[float], jitter: float, seed: int
) -> None:
    s = RetrySchedule(delays, jitter, random.Random(seed))
    assert len(s) == len(delays)
    for i, base in enumerate(delays):
        d = s.delay_for(i)
        assert d is not None and d >= 0
        assert base * (1 - jitter) - 1e-9 * max(1.0, base) <= d <= base * (1 + jitter) + 1e-9 * max(1.0, base)
        assert d <= s.longest + 1e-9 * max(1.0, s.longest)
    assert s.delay_for(len(delays)) is None
    assert s.delay_for(len(delays) + 7) is None
    assert s.delay_for(-1) is None


@settings(max_examples=100, deadline=None)
@given(delays=delays_st)
def test_without_jitter_the_delays_are_exact(delays: list[float]) -> None:
    s = RetrySchedule(delays)
    assert [s.delay_for(i) for i in range(len(delays) + 1)] == [*delays, None]


@settings(max_examples=100, deadline=None)
@given(delays=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=8), jitter=st.floats())
def test_bad_input_is_refused_with_value_error(delays: list[float], jitter: float) -> None:
    valid = all(d >= 0 for d in delays) and 0 <= jitter <= 1
    try:
        RetrySchedule(delays, jitter)
    except ValueError:
        assert not valid
    else:
        assert valid
