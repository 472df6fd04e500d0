"""Stream names and subjects of a NATS bus (pure)."""

from __future__ import annotations

import pytest

from telepty.bus.nats_names import (
    event_subject,
    events_filter,
    machine_of_subject,
    machine_of_token,
    machine_of_work_stream,
    machine_token,
    work_stream,
    work_subject,
)


@pytest.mark.parametrize("machine", ["laptop", "Laptop", "build-3", "mac.local", "a_b", "ü-box", "x y*>"])
def test_a_machine_id_is_one_safe_token_and_comes_back_lower_cased(machine: str) -> None:
    token = machine_token(machine)
    assert token and all(c.isascii() and (c.isalnum() or c in "_-") for c in token)
    assert token == token.lower()
    assert machine_of_token(token) == machine.lower()
    assert machine_of_work_stream(work_stream(machine)) == machine.lower()


def test_distinct_machines_never_share_a_token() -> None:
    names = ["a.b", "a_b", "a_2eb", "A.B", "ab"]
    tokens = {machine_token(n) for n in names}
    assert len(tokens) == 4  # "a.b" and "A.B" are the same machine (@host is case-insensitive)


def test_subjects_and_filters() -> None:
    assert event_subject("Mac.local", "delivery.failed") == "telepty.events.mac_2elocal.delivery.failed"
    assert event_subject("m", "odd..kind.") == "telepty.events.m.odd._.kind._"
    assert events_filter() == "telepty.events.>"
    assert events_filter(kind="session.idle") == "telepty.events.*.session.idle"
    assert events_filter(machine_id="B") == "telepty.events.b.>"
    assert events_filter(machine_id="B", kind="relay.status") == "telepty.events.b.relay.status"
    assert machine_of_subject("telepty.events.mac_2elocal.delivery.failed") == "mac.local"
    assert (work_stream("B"), work_subject("B")) == ("telepty-work-b", "telepty.work.b")
    assert machine_of_work_stream("telepty-events") is None
