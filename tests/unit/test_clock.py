"""The record clock: ``utc_now`` is ``to_iso`` of the same instant, only cheaper."""

from __future__ import annotations

import time

from telepty.clock import from_iso, to_iso, utc_now


def test_utc_now_is_to_iso_of_now() -> None:
    for _ in range(2000):  # crosses milliseconds, and usually a second boundary's cache refresh
        before = to_iso(time.time())
        now = utc_now()
        after = to_iso(time.time())
        assert before <= now <= after
        assert len(now) == len("2026-03-15T09:30:00.123Z") and now.endswith("Z")


def test_utc_now_round_trips() -> None:
    now = utc_now()
    assert to_iso(from_iso(now)) == now
