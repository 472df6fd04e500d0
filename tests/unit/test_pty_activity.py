from telepty.pty.activity import OutputActivity


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
