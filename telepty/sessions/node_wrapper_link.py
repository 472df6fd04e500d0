"""The daemon's end of the Node.js CLI's ``telepty allow`` wrapper (its WebSocket protocol).

The Node.js wrapper registers with ``POST /api/sessions/register`` and then opens
``WS /api/sessions/{id}?owner=1``. Its protocol (JSON text frames only):

wrapper → daemon
  ``output``             {data}: what the child printed (a string).
  ``ready``              the wrapper saw its child's prompt; nothing more.
  ``session_died``       {exitCode, signal, willRestart}: the child ended; without a
                         restart the session becomes ``exited``.
  ``session_restarted``  {attempt}: the child was started again.

daemon → wrapper
  ``inject``             {data}: written to the child as it is (the wrapper queues it
                         until its child shows a prompt, and writes a lone ``\\r`` at once
                         or right after what it queued).
  ``resize``             {cols, rows}: resize the child (from an attached viewer).

It answers nothing, tracks no bracketed-paste mode and reports no heartbeats. So this
link does what our own wrapper (``telepty.sessions.wrapper_link``) does on its side:
it follows DECSET 2004 in the mirrored output and frames pastes itself, and a write
counts as done once the frame is on the socket. A paste counts as done once the child
printed something after it: that wrapper holds text back while it sees no prompt in
its child's output (its prompt pattern misses many agents' screens) and writes it after
five seconds at the latest, and the engine must not look for the paste on the screen
(and give up on it) before then. Whether it reached the agent is what
the delivery engine confirms anyway, from the mirrored output, exactly as for our
wrapper: every delivery to such a session goes through the same queue, quiet guard,
readiness checks and confirmation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from telepty.pty.bracketed import BracketedPasteTracker, frame_paste
from telepty.pty.wrap_protocol import Request, Result
from telepty.sessions.wrapper_link import WrapperGone, WrapperLink

log = logging.getLogger("telepty.wrapper")

__all__ = ["NodeWrapperLink"]

PASTE_SHOWN_S = 6.0  # the Node.js wrapper writes held-back text after 5 s at the latest


class NodeWrapperLink(WrapperLink):
    def __init__(self, session_id: str, ws: web.WebSocketResponse, scrollback_bytes: int) -> None:
        super().__init__(session_id, ws, scrollback_bytes)
        self.bracketed = BracketedPasteTracker()
        self._printed = asyncio.Event()  # set by any output after the last paste was sent

    def feed_output(self, data: bytes) -> None:
        self.bracketed.feed(data)
        self.bracketed_paste = self.bracketed.enabled
        super().feed_output(data)
        self._printed.set()

    async def _inject(self, data: bytes) -> None:
        if self.ws.closed or self.closed.is_set():
            raise WrapperGone("the wrapper is not connected")
        try:
            await self.ws.send_json({"type": "inject", "data": data.decode("utf-8", errors="replace")})
        except (ConnectionError, RuntimeError) as exc:
            raise WrapperGone(f"could not reach the wrapper: {exc}") from None

    async def paste(self, data: bytes) -> Result:
        bracketed = self.bracketed.enabled
        self._printed.clear()
        await self._inject(frame_paste(data, bracketed))
        # Until the child shows something (the wrapper wrote it), or past its 5 s flush.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PASTE_SHOWN_S):
                await self._printed.wait()
        return Result(id=next(self._ids), ok=True, bracketed=bracketed)

    async def write(self, data: bytes) -> Result:
        await self._inject(data)
        return Result(id=next(self._ids), ok=True)

    async def request(self, request: Request, timeout_s: float) -> Result:
        """The old wrapper has no request/answer messages beyond its ``inject``."""
        return Result(id=request.id, ok=False, error="unsupported",
                      detail=f"the Node.js wrapper has no {request.TYPE!r}")

    async def resize(self, cols: int, rows: int) -> None:
        if not self.ws.closed:
            try:
                await self.ws.send_json({"type": "resize", "cols": cols, "rows": rows})
            except (ConnectionError, RuntimeError):
                pass

    async def renamed(self, session_id: str) -> None:
        """The old wrapper has no rename message: it keeps re-registering under its old id
        when it reconnects (docs/node-compat.md says so)."""
        self.session_id = session_id

    async def detach(self, reason: str) -> None:
        """Deleted or replaced: close its socket (it has no ``detach`` message)."""
        if not self.ws.closed:
            try:
                await self.ws.close(code=1000, message=b"Session destroyed")
            except (ConnectionError, RuntimeError):
                pass
