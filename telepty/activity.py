"""When a terminal last printed: the raw material of the quiet guard and of wake-ups.

The quiet guard (SPEC §3) means "nothing is pasted while the target prints". Reading
that from what the terminal *did* — the PTY's bytes, the wrapper's mirror, tmux's
``%output`` notifications — instead of watching the screen for ``quiet_ms`` is what
lets a prompt for an idle terminal go at once, and lets a prompt that waits for a busy
agent go the moment its output stops, not at the next slot of the retry schedule.

Output a delivery causes itself (the echo of its paste, the line its Enter submits) is
not the terminal "printing": otherwise every prompt would wait a whole quiet window
behind the one before it. A transport marks the span of its own writes
(``ours``); output up to ``ECHO_GRACE_S`` after that span is attributed to it and does
not reset the quiet clock. Anything later — an agent starting to answer — does. For
an agent whose screen telepty reads, the span ends the moment the submit key goes out
(no grace): the redraw that follows is the agent taking the prompt, and the next prompt
waits for it to settle, as it would for any output.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from telepty.clock import monotonic

# How long after a delivery's last write its echo may still arrive (the tty's echo and a
# TUI's redraw of the submitted line come within milliseconds; tmux relays them to us a
# little later). Output after this counts as the terminal's own.
ECHO_GRACE_S = 0.15

EndEcho = Callable[..., None]  # ends an ``ours`` span early, with the grace given


class OutputActivity:
    """Last-output time and byte counters for one terminal; wakes those waiting on output."""

    __slots__ = (
        "_clock",
        "_ours_depth",
        "_ours_until",
        "_waiters",
        "bytes_in",
        "bytes_out",
        "last_input_at",
        "last_output_at",
        "last_own_output_at",
        "listener",
        "started_at",
    )

    def __init__(
        self, clock: Callable[[], float] = monotonic, *, last_output_at: float | None = None
    ) -> None:
        # Injected so tests can drive time without sleeping.
        self._clock = clock
        self.started_at: float = clock()
        # A terminal that never printed counts as quiet since we started watching it,
        # not forever busy; a watcher that knows better passes ``last_output_at``.
        self.last_output_at: float = self.started_at if last_output_at is None else last_output_at
        # The last output the terminal produced by itself (not the echo of our writes).
        self.last_own_output_at: float = self.last_output_at
        self.last_input_at: float | None = None
        self.bytes_out = 0
        self.bytes_in = 0
        self._ours_depth = 0
        self._ours_until = -math.inf
        self._waiters: list[asyncio.Future[None]] = []
        # Told of every output (the registry's idle clock); must be cheap and not raise.
        self.listener: Callable[[], None] | None = None

    def note_output(self, n: int) -> None:
        if n <= 0:
            return
        now = self._clock()
        self.bytes_out += n
        self.last_output_at = now
        if self._ours_depth == 0 and now > self._ours_until:
            self.last_own_output_at = now
        if self.listener is not None:
            self.listener()
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def note_input(self, n: int) -> None:
        if n <= 0:
            return
        self.bytes_in += n
        self.last_input_at = self._clock()

    @contextlib.contextmanager
    def ours(self, grace_s: float = ECHO_GRACE_S) -> Iterator[EndEcho]:
        """Output while inside (and ``grace_s`` after) is the echo of our own writes.

        Yields ``end(grace_s)``, to end the span early: after a submit key, what an agent
        prints is its answer starting, not our echo (see ``telepty.delivery.confirm``).
        """
        self._ours_depth += 1
        ended = False

        def end(grace: float = grace_s) -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            self._ours_depth -= 1
            self._ours_until = max(self._ours_until, self._clock() + grace)

        try:
            yield end
        finally:
            end()

    def now(self) -> float:
        """This activity's own clock (what ``wait_quiet``'s ``printed_after`` is read on)."""
        return self._clock()

    def idle_seconds(self) -> float:
        """Since the terminal last printed anything (what ``list``/``explain`` show)."""
        return max(0.0, self._clock() - self.last_output_at)

    def quiet_seconds(self) -> float:
        """Since the terminal last printed by itself (what the quiet guard asks)."""
        return max(0.0, self._clock() - self.last_own_output_at)

    def quiet_for(self, seconds: float) -> bool:
        return self.quiet_seconds() >= seconds

    async def next_output(self) -> None:
        """Return at the next ``note_output``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    async def wait_quiet(self, quiet_s: float, *, printed_after: float | None = None) -> None:
        """Return once the terminal has been silent (of itself) for ``quiet_s``.

        With ``printed_after``, it must also have printed something after that moment
        first: a screen that said "busy" or "dialog" when we looked must change before a
        second look can say anything new. No timeout: callers bound the wait.
        """
        while True:
            if printed_after is not None and self.last_own_output_at <= printed_after:
                await self.next_output()
                continue
            remaining = self.last_own_output_at + quiet_s - self._clock()
            if remaining <= 0:
                return
            # The quiet window itself (not synchronisation): wake when it would be over;
            # output meanwhile moves the end, and the loop looks again.
            await asyncio.sleep(remaining)

    async def quiet_within_window(
        self, quiet_s: float, *, check: Callable[[], Awaitable[None]] | None = None,
        poll_s: float = 0.25,
    ) -> bool:
        """The quiet guard's question: silent (of itself) for ``quiet_s``?

        True at once when it already is. Otherwise waits for what is left of the window
        since its last output, and answers False the moment it prints again: the caller
        then waits for the output to stop (``wait_quiet``) instead of holding the
        delivery here. ``check`` runs every ``poll_s`` while waiting (is the terminal
        still there?) and may raise.
        """
        mark = self.last_own_output_at
        while True:
            if self.last_own_output_at != mark:
                return False
            remaining = mark + quiet_s - self._clock()
            if remaining <= 0:
                return True
            # What is left of the quiet window itself, not synchronisation; output ends it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining if check is None else min(remaining, poll_s)):
                    await self.next_output()
            if check is not None:
                await check()

    async def guard(
        self, quiet_ms: int, *, check: Callable[[], Awaitable[None]] | None = None,
        poll_s: float = 0.25,
    ) -> tuple[bool, dict[str, Any]]:
        """``quiet_within_window`` plus what a delivery record keeps of it."""
        seen = self.describe(quiet_ms)
        t0 = self._clock()
        quiet = await self.quiet_within_window(quiet_ms / 1000.0, check=check, poll_s=poll_s)
        seen["waited_ms"] = round((self._clock() - t0) * 1000)
        seen["quiet"] = quiet
        return quiet, seen

    def describe(self, quiet_ms: int | None = None) -> dict[str, Any]:
        """For records and ``telepty explain``: how long since it printed, and whether
        that counts as quiet for the guard."""
        out: dict[str, Any] = {
            "idle_ms": round(self.idle_seconds() * 1000),
            "quiet_for_ms": round(self.quiet_seconds() * 1000),
        }
        if quiet_ms is not None:
            out["quiet_ms"] = quiet_ms
            out["quiet"] = self.quiet_for(quiet_ms / 1000.0)
        return out

    def __repr__(self) -> str:
        return (f"OutputActivity(idle={self.idle_seconds():.3f}s, quiet={self.quiet_seconds():.3f}s, "
                f"out={self.bytes_out}, in={self.bytes_in})")


@contextlib.contextmanager
def ours(activity: OutputActivity | None) -> Iterator[EndEcho]:
    """``activity.ours()`` when there is an activity to mark (a transport may have none)."""
    if activity is None:
        yield _no_end
        return
    with activity.ours() as end:
        yield end


def _no_end(grace: float = ECHO_GRACE_S) -> None:
    return None
