"""The daemon's end of one ``telepty wrap`` process: its control socket and mirror.

Protocol (``WS /api/wrap``; JSON text frames, binary frames are terminal output):

wrapper → daemon
  ``hello``      first frame: session_id?, command, cwd, pid, tmux_pane?, tmux_socket?,
                 agent?, replace, cols, rows, session_token_sha256?. Answered by
                 ``welcome`` {session_id, session} or ``error`` {error, detail} and a close.
                 ``session_token_sha256`` is the hash of the TELEPTY_SESSION_TOKEN the
                 wrapper generated and put in the child's environment before starting
                 it; the token itself never crosses this socket. Sent on every
                 (re)connect, so the identity survives a daemon restart.
  binary         every byte the child printed, in order (buffered while disconnected
                 and flushed on connect, so early output is not lost).
  ``heartbeat``  every second: bytes_out (read from the child), bytes_mirrored (sent on
                 this connection), bytes_in, idle_ms, bracketed_paste.
  ``result``     {id, ok, error?, ...}: the answer to a daemon request.
  ``exit``       {code}: the child exited; the session becomes ``exited``.

daemon → wrapper (each with an ``id`` the result echoes)
  ``paste``      {data, submit, settle_ms, no_enter} (base64): write the prompt to the
                 PTY, bracketed when the app enabled it, then the submit bytes.
  ``write``      {data}: raw bytes (keys for permission menus), never bracketed.
  ``detach``     {reason}: stop talking to the daemon (deleted/replaced); the agent
                 keeps running for the person using it.
  ``renamed``    {session_id}: the session now has this id (``telepty rename``); use it
                 in every later hello. No result is expected.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import time
from typing import Any

from aiohttp import web

from telepty.activity import OutputActivity
from telepty.pty.scrollback import Scrollback

log = logging.getLogger("telepty.wrapper")

# The mirror is "stalled" when the wrapper says it sent bytes we never received,
# on this many consecutive heartbeats (one could race a frame in flight).
STALL_HEARTBEATS = 2
# How far a heartbeat's idea of the last output may drift before it counts as new output.
HEARTBEAT_SLACK_S = 0.25


class WrapperGone(Exception):
    """The wrapper's socket closed or never answered."""


class WrapperLink:
    def __init__(self, session_id: str, ws: web.WebSocketResponse, scrollback_bytes: int) -> None:
        self.session_id = session_id
        self.ws = ws
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
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
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

    def feed_heartbeat(self, msg: dict[str, Any]) -> bool:
        """Record a heartbeat; returns True when the mirror has just become stalled."""
        self.last_heartbeat = time.monotonic()
        self.bytes_out_reported = _int(msg.get("bytes_out"), self.bytes_out_reported)
        self.bytes_in_reported = _int(msg.get("bytes_in"), self.bytes_in_reported)
        self.bracketed_paste = bool(msg.get("bracketed_paste", self.bracketed_paste))
        idle_ms = msg.get("idle_ms")
        if isinstance(idle_ms, int | float) and not isinstance(idle_ms, bool) and idle_ms >= 0:
            seen = time.time() - idle_ms / 1000.0
            # Recomputed each heartbeat, the same last output wobbles by a millisecond or
            # so (message latency); only a real change may move it, or every heartbeat
            # would look like new activity to the idle watch.
            if abs(seen - self.last_output_wall) > HEARTBEAT_SLACK_S:
                self.last_output_wall = seen
        mirrored = _int(msg.get("bytes_mirrored"), 0)
        if mirrored > self.bytes_received:
            self._stall_count += 1
        else:
            self._stall_count = 0
            self.stalled = False
        if self._stall_count >= STALL_HEARTBEATS and not self.stalled:
            self.stalled = True
            return True
        return False

    def feed_result(self, msg: dict[str, Any]) -> None:
        fut = self._pending.pop(_int(msg.get("id"), -1), None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    # -- what we ask of the wrapper -------------------------------------------------

    async def request(self, kind: str, timeout_s: float, **fields: Any) -> dict[str, Any]:
        if self.ws.closed or self.closed.is_set():
            raise WrapperGone("the wrapper is not connected")
        req_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            await self.ws.send_json({"type": kind, "id": req_id, **fields})
            return await asyncio.wait_for(fut, timeout_s)
        except (ConnectionError, RuntimeError) as exc:
            raise WrapperGone(f"could not reach the wrapper: {exc}") from None
        except TimeoutError:
            raise WrapperGone(f"the wrapper did not answer {kind!r} within {timeout_s:.1f}s") from None
        finally:
            self._pending.pop(req_id, None)

    async def paste(self, data: bytes, submit: bytes, settle_ms: int, no_enter: bool) -> dict[str, Any]:
        timeout = 30.0 + len(data) / 50_000 + settle_ms / 1000.0
        return await self.request(
            "paste", timeout_s=timeout, data=_b64(data), submit=_b64(submit),
            settle_ms=settle_ms, no_enter=no_enter,
        )

    async def write(self, data: bytes) -> dict[str, Any]:
        return await self.request("write", timeout_s=10.0, data=_b64(data))

    async def renamed(self, session_id: str) -> None:
        """Tell the wrapper its new id, so a reconnect re-registers under it."""
        self.session_id = session_id
        if not self.ws.closed:
            try:
                await self.ws.send_json({"type": "renamed", "session_id": session_id})
            except (ConnectionError, RuntimeError):
                pass

    async def detach(self, reason: str) -> None:
        if not self.ws.closed:
            try:
                await self.ws.send_json({"type": "detach", "reason": reason})
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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _int(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return default
