"""A clock for the delivery engine whose time moves only when a test moves it.

The engine waits out retry slots, holds and recovery looks on the clock it is given
(``telepty.delivery.schedule.Clock``). With this one, those waits take no real time:
``run_until`` lets the engine work, and whenever it is left waiting on the clock alone,
jumps to the earliest deadline it waits for. A test that reads an in-between state
(``retrying``, ``held``) finds it standing still until it lets time move.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Real time the engine gets to reach its next wait on the clock (a database round trip)
# before time jumps anyway.
SETTLE_S = 0.05


class VirtualClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._new_sleeper: asyncio.Event | None = None
        self.jumps = 0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), fut))
        if self._new_sleeper is not None:
            self._new_sleeper.set()
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()  # cancelled: no longer waited for (dropped at the next look)

    def advance(self, seconds: float) -> None:
        """Move time forward; every wait that is over returns."""
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def jump(self) -> bool:
        """To the earliest deadline anyone waits for; False when nobody waits."""
        deadline = self.next_deadline()
        if deadline is None:
            return False
        self.jumps += 1
        self.advance(max(0.0, deadline - self.now))
        return True

    async def run_until(self, done: Callable[[], Awaitable[T | None]], timeout: float = 5.0) -> T:
        """Let time run (jumping from wait to wait) until ``done()`` returns something;
        ``timeout`` is real seconds."""
        self._new_sleeper = asyncio.Event()
        deadline = time.monotonic() + timeout
        try:
            while True:
                result = await done()
                if result is not None:
                    return result
                if time.monotonic() > deadline:
                    raise AssertionError(f"not done within {timeout}s (virtual time {self.now:.1f})")
                if self.next_deadline() is not None and self._new_sleeper.is_set():
                    self._new_sleeper.clear()
                    self.jump()
                    await asyncio.sleep(0)
                    continue
                # Give the engine a moment to get to its next wait (or to finish).
                self._new_sleeper.clear()
                try:
                    async with asyncio.timeout(SETTLE_S):
                        await self._new_sleeper.wait()
                except TimeoutError:
                    self.jump()
        finally:
            self._new_sleeper = None
