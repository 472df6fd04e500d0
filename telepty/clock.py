"""The one clock: monotonic seconds for intervals, UTC ISO-8601 with ``Z`` for records."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime


def monotonic() -> float:
    return time.monotonic()


_this_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """``to_iso(time.time())``, with the date and time of day formatted once a second:
    the bus stamps thousands of events a second, and formatting a datetime cost more
    than the rest of an event's validation. One tuple, so a thread reading it never
    sees a torn pair."""
    global _this_second
    frac, whole = math.modf(time.time())
    second, micros = int(whole), round(frac * 1_000_000)  # rounded as datetime rounds
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached = _this_second
    if cached[0] != second:
        cached = (second, datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S."))
        _this_second = cached
    return f"{cached[1]}{micros // 1000:03d}Z"


def to_iso(epoch: float) -> str:
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def from_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
