"""A heartbeat's idle_ms moves the last-output time only when output really happened."""

from __future__ import annotations

import time

from telepty.pty.wrap_protocol import Heartbeat
from telepty.sessions.wrapper_link import HEARTBEAT_SLACK_S, WrapperLink


def _link() -> WrapperLink:
    return WrapperLink("w1", ws=None, scrollback_bytes=1024)  # type: ignore[arg-type]


def test_the_same_quiet_period_keeps_one_timestamp() -> None:
    link = _link()
    link.feed_heartbeat(Heartbeat(idle_ms=5000))
    first = link.last_output_wall
    for _ in range(20):  # latency makes each heartbeat's reading differ by a little
        link.feed_heartbeat(Heartbeat(idle_ms=5000 + (time.time() - first - 5.0) * 1000 - 3))
    assert link.last_output_wall == first


def test_new_output_reported_by_a_heartbeat_moves_it() -> None:
    link = _link()
    link.feed_heartbeat(Heartbeat(idle_ms=60_000))
    old = link.last_output_wall
    link.feed_heartbeat(Heartbeat(idle_ms=10))
    assert link.last_output_wall - old > 59
    assert abs(link.last_output_wall - (time.time() - 0.01)) < HEARTBEAT_SLACK_S
