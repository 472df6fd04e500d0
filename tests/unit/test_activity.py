import asyncio

import pytest

from telepty.activity import OutputActivity


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_counts_bytes_both_ways() -> None:
    act = OutputActivity(FakeClock())
    act.note_output(10)
    act.note_output(5)
    act.note_input(3)
    act.note_output(0)
    assert (act.bytes_out, act.bytes_in) == (15, 3)


def test_quiet_is_measured_from_last_output() -> None:
    clock = FakeClock()
    act = OutputActivity(clock)
    clock.now += 1.5
    # Never printed: quiet since it started.
    assert act.idle_seconds() == 1.5
    act.note_output(4)
    assert act.idle_seconds() == 0.0
    assert not act.quiet_for(2.0)
    clock.now += 1.9
    assert not act.quiet_for(2.0)
    clock.now += 0.1
    assert act.quiet_for(2.0)


def test_input_does_not_count_as_activity() -> None:
    clock = FakeClock()
    act = OutputActivity(clock)
    clock.now += 3
    act.note_input(100)
    assert act.quiet_for(3.0)
    assert act.last_input_at == clock.now


def test_default_clock_is_monotonic() -> None:
    act = OutputActivity()
    act.note_output(1)
    assert 0.0 <= act.idle_seconds() < 5.0


async def test_our_own_echo_does_not_reset_the_quiet_clock() -> None:
    clock = FakeClock()
    act = OutputActivity(clock)
    clock.now += 5
    with act.ours(grace_s=0.15):
        act.note_output(10)  # the paste's echo
        clock.now += 0.1
    clock.now += 0.1
    act.note_output(2)  # the Enter's echo, inside the grace
    assert act.idle_seconds() == 0.0  # it did print…
    assert act.quiet_seconds() == pytest.approx(5.2) and act.quiet_for(2.0)  # …but not of itself
    clock.now += 0.1
    act.note_output(5)  # after the grace: the program answering
    assert act.quiet_seconds() == 0.0


async def test_wait_quiet_returns_when_the_window_after_the_last_output_is_over() -> None:
    act = OutputActivity()
    act.note_output(1)
    await asyncio.wait_for(act.wait_quiet(0.05), 2.0)
    assert act.quiet_for(0.05)


async def test_wait_quiet_after_a_moment_needs_new_output_first() -> None:
    act = OutputActivity(last_output_at=0.0)  # long quiet
    mark = act.last_own_output_at
    waiting = asyncio.ensure_future(act.wait_quiet(0.05, printed_after=mark))
    await asyncio.sleep(0.1)  # the thing under test must not return without output
    assert not waiting.done()
    act.note_output(3)
    await asyncio.wait_for(waiting, 2.0)
    assert act.last_own_output_at > mark


async def test_quiet_within_window_is_immediate_when_already_quiet_and_false_on_new_output() -> None:
    act = OutputActivity(last_output_at=0.0)
    assert await asyncio.wait_for(act.quiet_within_window(1.0), 0.5) is True
    act.note_output(1)
    looking = asyncio.ensure_future(act.quiet_within_window(5.0))
    await asyncio.sleep(0)  # let it start waiting
    act.note_output(1)
    assert await asyncio.wait_for(looking, 1.0) is False
    checks: list[int] = []

    async def check() -> None:
        checks.append(1)
        if len(checks) == 2:
            raise RuntimeError("pane gone")

    act.note_output(1)
    with pytest.raises(RuntimeError):
        await act.quiet_within_window(5.0, check=check, poll_s=0.01)


def test_describe_and_listener() -> None:
    clock = FakeClock()
    act = OutputActivity(clock)
    heard: list[int] = []
    act.listener = lambda: heard.append(1)
    act.note_output(3)
    clock.now += 0.5
    assert act.describe(200) == {"idle_ms": 500, "quiet_for_ms": 500, "quiet_ms": 200, "quiet": True}
    assert heard == [1]


def test_ending_the_echo_span_at_the_submit_key_makes_what_follows_the_programs() -> None:
    clock = FakeClock()
    act = OutputActivity(clock)
    clock.now += 5
    with act.ours() as end:
        act.note_output(10)  # the paste's echo
        clock.now += 0.3
        end(0.0)  # the submit key went out (an agent whose screen is read)
        clock.now += 0.01
        act.note_output(4)  # its input clears and it starts answering: that is its own output
    assert act.quiet_seconds() == 0.0
