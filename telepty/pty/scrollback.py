"""Recent output of a PTY, kept so a late attacher or the screen endpoint can see it.

Only the tail matters (a replay shows what the agent's screen was recently showing),
so the buffer keeps the most recent ``capacity`` bytes and forgets the rest. Trimming
on every append would make each append O(capacity); instead the bytearray is allowed
to grow to twice the capacity and is then cut back in one go, which keeps appends
amortised O(len(chunk)).
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_SCROLLBACK_BYTES = 256 * 1024


class Scrollback:
    """Bounded byte buffer that keeps the most recent ``capacity`` bytes."""

    __slots__ = ("__weakref__", "_buf", "_capacity", "on_append", "total_bytes")

    def __init__(self, capacity: int = DEFAULT_SCROLLBACK_BYTES) -> None:
        if capacity <= 0:
            raise ValueError("scrollback capacity must be positive")
        self._capacity = capacity
        self._buf = bytearray()
        # Lifetime byte count, so callers can tell how much was dropped.
        self.total_bytes = 0
        # Told after each append (a screen model keeping up with the stream); must be cheap.
        self.on_append: Callable[[], None] | None = None

    @property
    def capacity(self) -> int:
        return self._capacity

    def append(self, data: bytes) -> None:
        n = len(data)
        if not n:
            return
        self.total_bytes += n
        cap = self._capacity
        if n >= cap:
            # The chunk alone overflows the window: everything older is gone anyway.
            self._buf = bytearray(memoryview(data)[n - cap :])
        else:
            self._buf += data
            if len(self._buf) > 2 * cap:
                del self._buf[: len(self._buf) - cap]
        if self.on_append is not None:
            self.on_append()

    def snapshot(self) -> bytes:
        """The retained tail; may start mid-escape-sequence or mid-UTF-8 character."""
        buf = self._buf
        if len(buf) > self._capacity:
            return bytes(memoryview(buf)[len(buf) - self._capacity :])
        return bytes(buf)

    def tail(self, n: int) -> bytes:
        """The last ``n`` retained bytes (cheap look at what the screen just showed)."""
        if n <= 0:
            return b""
        n = min(n, len(self))
        return bytes(memoryview(self._buf)[len(self._buf) - n :])

    def clear(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return min(len(self._buf), self._capacity)

    def __repr__(self) -> str:
        return f"Scrollback(len={len(self)}, capacity={self._capacity})"
