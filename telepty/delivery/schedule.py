"""When to try a busy or unreachable target again, and the clock those waits run on.

Jitter spreads retries out so that a burst of prompts parked behind the same busy
agent (or many daemons behind the same flaky peer) do not all come back in one tick.

The engine reads time and waits out its schedule, its holds and its recovery looks
through a ``Clock`` it is given, so that a unit test can run a 30-second schedule in
no time (tests/virtual_clock.py) while the daemon uses the system's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Protocol

from telepty.clock import monotonic


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds, for intervals only."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock."""
        ...


class SystemClock:
    """``time.monotonic`` and ``asyncio.sleep``: the daemon's clock."""

    def monotonic(self) -> float:
        return monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class RetrySchedule:
    def __init__(
        self, delays: Sequence[float], jitter: float = 0.0, rng: random.Random | None = None
    ) -> None:
        if any(d < 0 for d in delays):
            raise ValueError("retry delays must not be negative")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")
        self.delays: tuple[float, ...] = tuple(float(d) for d in delays)
        self.jitter = jitter
        self._rng = rng or random.Random()

    def __len__(self) -> int:
        return len(self.delays)

    @property
    def longest(self) -> float:
        """The largest delay jitter can produce; bounds a resumed wait against clock jumps."""
        return max(self.delays, default=0.0) * (1 + self.jitter)

    def delay_for(self, attempt_index: int) -> float | None:
        """Seconds to wait after the ``attempt_index``-th failed attempt (0-based).

        ``None`` means the schedule is exhausted: with N delays a delivery gets N + 1
        attempts in all.
        """
        if attempt_index < 0 or attempt_index >= len(self.delays):
            return None
        base = self.delays[attempt_index]
        if self.jitter:
            base *= 1 + self._rng.uniform(-self.jitter, self.jitter)
        return max(0.0, base)
