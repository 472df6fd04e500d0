"""The one clock: monotonic seconds for intervals, UTC ISO-8601 with ``Z`` for records."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def monotonic() -> float:
    return time.monotonic()


_this_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """``to_iso(time.time())``, with the date and time of day formatted once a second:
    the bus stamps thousands of events a second, and formatting a datetime cost more
    than the rest of an event's validation. One tuple, so a thread reading it never
    sees a torn pair. Integer nanoseconds, rounded to the microsecond as ``datetime``
    rounds, then cut to the millisecond as ``to_iso`` cuts."""
    global _this_second
    ms = (time.time_ns() + 500) // 1_000_000
    cached = _this_second
    if cached[0] != ms // 1000:
        second = ms // 1000
        cached = (second, datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S."))
        _this_second = cached
    return f"{cached[1]}{ms % 1000:03d}Z"


def to_iso(epoch: float) -> str:
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def from_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
