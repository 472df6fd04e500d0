"""The daemon's end of one ``telepty wrap`` process: its control socket and mirror.

The socket's messages are :mod:`telepty.pty.wrap_protocol`'s (the wrapper builds and
reads the very same ones). What the wrapper mirrors arrives as binary frames and is
kept here (scrollback, activity for the quiet guard); what the daemon asks (a paste, a
write) goes out as a request whose :class:`~telepty.pty.wrap_protocol.Result` comes
back with the same id.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

from aiohttp import web

from telepty.activity import OutputActivity
from telepty.pty.scrollback import Scrollback
from telepty.pty.wrap_protocol import (
    PROTOCOL,
    Detach,
    Heartbeat,
    LegacyPaste,
    Message,
    Paste,
    Renamed,
    Request,
    Result,
    Write,
    encode,
)

log = logging.getLogger("telepty.wrapper")

# The mirror is "stalled" when the wrapper says it sent bytes we never received,
# on this many consecutive heartbeats (one could race a frame in flight).
STALL_HEARTBEATS = 2
# How far a heartbeat's idea of the last output may drift before it counts as new output.
HEARTBEAT_SLACK_S = 0.25


class WrapperGone(Exception):
    """The wrapper's socket closed or never answered."""


class WrapperLink:
    def __init__(self, session_id: str, ws: web.WebSocketResponse, scrollback_bytes: int,
                 protocol: int = PROTOCOL) -> None:
        self.session_id = session_id
        self.ws = ws
        self.protocol = protocol  # the wrapper's (its hello said), for what it understands
        self.scrollback = Scrollback(scrollback_bytes)
        self.bytes_received = 0
        self.bytes_out_reported = 0
        self.bytes_in_reported = 0
        self.bracketed_paste = False
        self.last_output_wall = time.time()
        # The quiet guard's view: the mirrored bytes as they arrive here.
        self.activity = OutputActivity()
        self.last_heartbeat = time.monotonic()
        self.stalled = False
        self._stall_count = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Result]] = {}
        self.closed = asyncio.Event()
        self.listeners: list[asyncio.Queue[bytes | None]] = []

    # -- what the wrapper tells us --------------------------------------------------

    def feed_output(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self.scrollback.append(data)
        self.last_output_wall = time.time()
        self.activity.note_output(len(data))
        for q in list(self.listeners):
            if q.qsize() > 512:
                self.listeners.remove(q)
                q.put_nowait(None)
            else:
                q.put_nowait(data)

    def feed_heartbeat(self, msg: Heartbeat) -> bool:
        """Record a heartbeat; returns True when the mirror has just become stalled."""
        self.last_heartbeat = time.monotonic()
        if msg.bytes_out is not None:
            self.bytes_out_reported = msg.bytes_out
        if msg.bytes_in is not None:
            self.bytes_in_reported = msg.bytes_in
        if msg.bracketed_paste is not None:
            self.bracketed_paste = msg.bracketed_paste
        idle_ms = msg.idle_ms
        if idle_ms is not None and idle_ms >= 0:
            seen = time.time() - idle_ms / 1000.0
            # Recomputed each heartbeat, the same last output wobbles by a millisecond or
            # so (message latency); only a real change may move it, or every heartbeat
            # would look like new activity to the idle watch.
            if abs(seen - self.last_output_wall) > HEARTBEAT_SLACK_S:
                self.last_output_wall = seen
        mirrored = msg.bytes_mirrored or 0
        if mirrored > self.bytes_received:
            self._stall_count += 1
        else:
            self._stall_count = 0
            self.stalled = False
        if self._stall_count >= STALL_HEARTBEATS and not self.stalled:
            self.stalled = True
            return True
        return False

    def feed_result(self, msg: Result) -> None:
        fut = self._pending.pop(msg.id, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    # -- what we ask of the wrapper -------------------------------------------------

    async def request(self, request: Request, timeout_s: float) -> Result:
        """Send ``request`` and wait for its result; WrapperGone when none can come."""
        if self.ws.closed or self.closed.is_set():
            raise WrapperGone("the wrapper is not connected")
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[request.id] = fut
        try:
            await self._send(request)
            return await asyncio.wait_for(fut, timeout_s)
        except (ConnectionError, RuntimeError) as exc:
            raise WrapperGone(f"could not reach the wrapper: {exc}") from None
        except TimeoutError:
            raise WrapperGone(
                f"the wrapper did not answer {request.TYPE!r} within {timeout_s:.1f}s") from None
        finally:
            self._pending.pop(request.id, None)

    async def paste(self, data: bytes) -> Result:
        """Paste ``data`` (bracketed if the app asked for it); submitting is a separate write."""
        paste = Paste if self.protocol >= PROTOCOL else LegacyPaste
        return await self.request(paste(id=next(self._ids), data=data), timeout_s=30.0 + len(data) / 50_000)

    async def write(self, data: bytes) -> Result:
        return await self.request(Write(id=next(self._ids), data=data), timeout_s=10.0)

    async def _send(self, msg: Message) -> None:
        await self.ws.send_str(encode(msg))

    async def renamed(self, session_id: str) -> None:
        """Tell the wrapper its new id, so a reconnect re-registers under it."""
        self.session_id = session_id
        if not self.ws.closed:
            try:
                await self._send(Renamed(session_id=session_id))
            except (ConnectionError, RuntimeError):
                pass

    async def detach(self, reason: str) -> None:
        if not self.ws.closed:
            try:
                await self._send(Detach(reason=reason))
                await self.ws.close(code=4000, message=reason.encode()[:120])
            except (ConnectionError, RuntimeError):
                pass

    def fail_pending(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(WrapperGone("the wrapper disconnected"))
        self._pending.clear()
        self.closed.set()
        for q in self.listeners:
            q.put_nowait(None)
        self.listeners.clear()
