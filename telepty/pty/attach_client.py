"""``telepty attach ID``: put the person's terminal on a spawned session's PTY.

The daemon owns the PTY; this client is only a window onto it, so leaving must never
hurt the session: Ctrl-] (0x1d, as in telnet) detaches and the agent keeps running.
Every way out prints one status line and leaves the terminal as it was found — the
same raw-mode discipline as ``telepty wrap`` (whose terminal pieces this reuses).

Exit codes: 0 detached or the session exited (both are normal ends of an attach),
1 the daemon refused (unknown session, not attachable), 3 the daemon is unreachable
or went away mid-session, 128+N when killed by signal N.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import urllib.parse
from typing import Any

import aiohttp
import orjson

from telepty.config import Config
from telepty.pty.daemon_link import Endpoint, ws_url
from telepty.pty.stdin_reader import StdinReader
from telepty.pty.user_terminal import TerminalOutput, UserTerminal, setup_logging, write_stderr_line

log = logging.getLogger("telepty.attach")

DETACH_KEY = b"\x1d"  # Ctrl-]
CONNECT_TIMEOUT_S = 5.0


class AttachRefused(Exception):
    """The daemon answered the handshake with an error (its JSON body is the message)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.status = status
        self.code = code


class _ErrorBodies:
    """Keeps the body of a refused WebSocket handshake.

    aiohttp raises ``WSServerHandshakeError`` without the response body, and the body
    is where the daemon says *why* (``session_not_found``…). A request-end trace hook
    runs after the status line is read and before the handshake check, so the body
    can be read there (only for non-101 answers: a 101 has no body, it has a socket).
    """

    def __init__(self) -> None:
        self.status: int | None = None
        self.body: bytes = b""
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_end.append(self._on_end)

    async def _on_end(self, _session: Any, _ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        resp = params.response
        if resp.status != 101:
            self.status = resp.status
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                self.body = await asyncio.wait_for(resp.read(), 2.0)

    def refusal(self, status: int) -> AttachRefused:
        try:
            err = orjson.loads(self.body) if self.body else {}
        except orjson.JSONDecodeError:
            err = {}
        if not isinstance(err, dict):
            err = {}
        code = str(err.get("error") or f"http_{status}")
        detail = str(err.get("detail") or self.body.decode(errors="replace")[:200])
        return AttachRefused(status, code, detail)


class Attachment:
    """One attach session: socket ↔ terminal, until detach, exit, or a lost daemon."""

    def __init__(self, session_name: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.name = session_name
        self.ws = ws
        self.terminal = UserTerminal()
        self.output: TerminalOutput | None = None
        # End of a piped input: nothing more will be typed, so leave (detached).
        self.stdin = StdinReader(self.terminal.stdin_fd, on_eof=lambda: self.stdin.queue.put_nowait(None),
                                 stop_at=DETACH_KEY)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.terminal.open_output()
        self.output = TerminalOutput(
            self.terminal.out_fd, on_pause=self._flowing.clear, on_resume=self._flowing.set
        )
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            loop.add_signal_handler(sig, self._finish, 128 + sig, "")
        loop.add_signal_handler(signal.SIGWINCH, self._send_size)
        sender = asyncio.ensure_future(self._send_inputs())
        receiver = asyncio.ensure_future(self._receive())
        try:
            self.terminal.enter_raw()
            self._send_size()
            self.stdin.start()
            code, line = await self._done
            self.stdin.stop()
            if line:
                self.output.write(line.encode())
            await self.output.drain(5.0)
            return code
        finally:
            self.stdin.stop()
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGWINCH):
                loop.remove_signal_handler(sig)
            self.terminal.restore()
            for task in (sender, receiver):
                task.cancel()
            for task in (sender, receiver):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.output.close()
            self.terminal.close()

    def _finish(self, code: int, line: str) -> None:
        if not self._done.done():
            self._done.set_result((code, line))

    # -- daemon → terminal ------------------------------------------------------------

    async def _receive(self) -> None:
        assert self.output is not None
        while True:
            msg = await self.ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                self.output.write(msg.data)
                # Backpressure: a slow terminal stops us reading the socket, and TCP
                # flow control tells the daemon (which drops us if we fall far behind).
                await self._flowing.wait()
            elif msg.type is aiohttp.WSMsgType.TEXT:
                frame = _json(msg.data)
                if frame.get("type") == "exit":
                    self._finish(0, f"\r\n[session {self.name} exited with code {frame.get('code')}]\r\n")
                    return
            else:
                self._finish(3, f"\r\n[lost the connection to the daemon; {self.name} was not detached]\r\n")
                return

    # -- terminal → daemon ------------------------------------------------------------

    async def _send_inputs(self) -> None:
        while True:
            data = await self.stdin.queue.get()
            if data is None:
                self._finish(0, f"\r\n[detached from {self.name}]\r\n")
                return
            try:
                await self.ws.send_bytes(data)
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                return  # the receiver reports the lost connection
            self.stdin.resume_if_room()

    def _send_size(self) -> None:
        cols, rows = self.terminal.size()
        frame = orjson.dumps({"type": "resize", "cols": cols, "rows": rows}).decode()
        task = asyncio.ensure_future(self._send_text(frame))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _send_text(self, text: str) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
            await self.ws.send_str(text)


def _json(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


async def attach(endpoint: Endpoint, session_name: str) -> int:
    base, token = await asyncio.to_thread(endpoint)
    path = f"/api/sessions/{urllib.parse.quote(session_name, safe='')}/attach"
    url = ws_url(base, path, token)
    errors = _ErrorBodies()
    async with aiohttp.ClientSession(trace_configs=[errors.trace]) as http:
        try:
            ws = await asyncio.wait_for(
                http.ws_connect(url, heartbeat=15.0, max_msg_size=64 * 1024 * 1024), CONNECT_TIMEOUT_S
            )
        except aiohttp.WSServerHandshakeError as exc:
            refusal = errors.refusal(exc.status)
            write_stderr_line(f"telepty: {refusal}\n")
            return 1
        except (aiohttp.ClientError, OSError, TimeoutError):
            write_stderr_line(
                f"telepty: telepty daemon is not running at {base} (start it with `telepty daemon`)\n"
            )
            return 3
        async with ws:
            return await Attachment(session_name, ws).run()


def run_attach(config: Config, session_name: str, endpoint: Endpoint) -> int:
    """Entry point for the CLI: returns the exit status to leave with. ``endpoint`` finds
    this home's daemon (the CLI's way)."""
    setup_logging(config)
    try:
        return asyncio.run(attach(endpoint, session_name))
    except Exception as exc:  # a bug must still end in one line, not a raw-mode traceback
        log.exception("attach failed")
        write_stderr_line(f"\r\ntelepty: attach failed: {exc!r}\r\n")
        return 1
