"""The one clock: monotonic seconds for intervals, UTC ISO-8601 with ``Z`` for records."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def monotonic() -> float:
    return time.monotonic()


def utc_now() -> str:
    return to_iso(time.time())


def to_iso(epoch: float) -> str:
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def from_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
