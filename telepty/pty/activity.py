"""Output/input activity of a PTY, the raw material of the quiet guard.

The quiet guard for PTY sessions is "no bytes read for quiet_ms" (SPEC §3), so what
matters is when the app last *printed*, not when we last wrote to it: our own paste
echoes back as output anyway. Byte counters both ways let a heartbeat show that a
session's output side is still moving (the Node.js telepty's stalled-pipe lesson).
"""

from __future__ import annotations

from collections.abc import Callable

from telepty.clock import monotonic


class OutputActivity:
    """Last-output time and byte counters for one PTY."""

    __slots__ = ("_clock", "bytes_in", "bytes_out", "last_input_at", "last_output_at", "started_at")

    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        # Injected so tests can drive time without sleeping.
        self._clock = clock
        self.started_at: float = clock()
        # A session that never printed counts as quiet since it started, not forever busy.
        self.last_output_at: float = self.started_at
        self.last_input_at: float | None = None
        self.bytes_out = 0
        self.bytes_in = 0

    def note_output(self, n: int) -> None:
        if n <= 0:
            return
        self.bytes_out += n
        self.last_output_at = self._clock()

    def note_input(self, n: int) -> None:
        if n <= 0:
            return
        self.bytes_in += n
        self.last_input_at = self._clock()

    def idle_seconds(self) -> float:
        return max(0.0, self._clock() - self.last_output_at)

    def quiet_for(self, seconds: float) -> bool:
        return self.idle_seconds() >= seconds

    def __repr__(self) -> str:
        idle = self.idle_seconds()
        return f"OutputActivity(idle={idle:.3f}s, out={self.bytes_out}, in={self.bytes_in})"
