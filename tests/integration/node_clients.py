"""Old clients, rebuilt in the test suite from what the Node.js telepty 0.1.96 sends.

``NodeAllowWrapper`` is its ``telepty allow``: it registers over HTTP, runs the command
in a real PTY, and speaks the old wrapper protocol on ``WS /api/sessions/{id}?owner=1``
(``output``/``ready``/``session_died`` out, ``inject``/``resize`` in), including the way
it writes what it is sent: text only when the child shows a prompt (else queued until
one appears, or five seconds pass), a lone ``\\r`` at once or right behind the queue.
Nothing here comes from the Node.js code; the behaviour is the one its source shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import ptyprocess

NODE_HEADERS = {"User-Agent": "node", "x-telepty-token": "0b6a29c4-6d3a-4f55-9a55-3f9d8e5b1c2e"}
PROMPT = re.compile(r"[❯>$#%]\s*$")  # its default prompt pattern
SAFETY_FLUSH_S = 5.0
TEXT_GAP_S = 0.1


@dataclass
class NodeAllowWrapper:
    client: Any  # an aiohttp TestClient (the in-process daemon)
    session_id: str
    argv: list[str]
    cwd: str
    cols: int = 100
    rows: int = 30
    prompt: re.Pattern[str] = PROMPT  # what it takes for its child's prompt
    frames_in: list[dict[str, Any]] = field(default_factory=list)  # what the daemon sent it
    written: list[str] = field(default_factory=list)  # what it wrote to its child, in order
    ws: aiohttp.ClientWebSocketResponse | None = None
    child: ptyprocess.PtyProcess | None = None
    _prompt_ready: bool = False
    _queue: list[str] = field(default_factory=list)
    _flush_timer: asyncio.TimerHandle | None = None
    _reader: asyncio.Task[None] | None = None
    _writer: asyncio.Task[None] | None = None
    _exit_task: asyncio.Task[None] | None = None
    _outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def register(self) -> tuple[int, Any]:
        resp = await self.client.post("/api/sessions/register", headers=NODE_HEADERS, json={
            "session_id": self.session_id, "command": self.argv[0], "cwd": self.cwd, "backend": "pty",
            "cmux_workspace_id": None, "cmux_surface_id": None, "term_program": None,
            "term": "xterm-256color"})
        return resp.status, await resp.json()

    def start_child(self) -> None:
        env = {**os.environ, "TELEPTY_SESSION_ID": self.session_id, "TELEPTY_AVAILABLE": "true"}
        self.child = ptyprocess.PtyProcess.spawn(self.argv, cwd=self.cwd, env=env,
                                                 dimensions=(self.rows, self.cols))
        asyncio.get_running_loop().add_reader(self.child.fd, self._on_child_output)

    async def connect(self) -> None:
        self.ws = await self.client.ws_connect(
            f"/api/sessions/{self.session_id}?token={NODE_HEADERS['x-telepty-token']}&owner=1",
            headers={"User-Agent": "node"})
        self._reader = asyncio.ensure_future(self._read())
        self._writer = asyncio.ensure_future(self._write_frames())

    async def _write_frames(self) -> None:
        """One writer, so frames leave in the order they were made (output above all)."""
        while True:
            frame = await self._outbox.get()
            if self.ws is None or self.ws.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps(frame))

    async def start(self) -> NodeAllowWrapper:
        status, body = await self.register()
        assert status == 201, body
        # It starts its child first and connects while the child starts up; the child's
        # first output is lost if it wins that race. Here the socket goes first, so a
        # test never depends on who wins.
        await self.connect()
        self.start_child()
        return self

    def _on_child_output(self) -> None:
        assert self.child is not None
        try:
            data = os.read(self.child.fd, 65536)
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.child.fd)
            self._exit_task = asyncio.ensure_future(self._child_exited())
            return
        text = data.decode("utf-8", errors="replace")
        self._send({"type": "output", "data": text})
        if self.prompt.search(text):
            self._prompt_ready = True
            self._flush()
            self._send({"type": "ready"})

    async def _child_exited(self) -> None:
        assert self.child is not None
        with contextlib.suppress(Exception):
            self.child.wait()
        self._send({"type": "session_died", "session_id": self.session_id,
                    "exitCode": self.child.exitstatus or 0, "signal": None, "willRestart": False})
        await asyncio.sleep(0.05)
        await self.client.delete(f"/api/sessions/{self.session_id}", headers=NODE_HEADERS)
        await self.close()

    def _send(self, frame: dict[str, Any]) -> None:
        if self.ws is not None and not self.ws.closed:  # made while disconnected: dropped, as there
            self._outbox.put_nowait(frame)

    def _write(self, text: str) -> None:
        assert self.child is not None
        self.written.append(text)
        os.write(self.child.fd, text.encode("utf-8"))

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            self.frames_in.append(frame)
            if frame.get("type") == "inject":
                self._inject(str(frame.get("data") or ""))
            elif frame.get("type") == "resize" and self.child is not None:
                self.child.setwinsize(frame["rows"], frame["cols"])

    def _inject(self, data: str) -> None:
        if not data:
            return
        if data == "\r":
            if self._queue:
                self._queue.append(data)
                self._flush()
            else:
                self._write(data)
        elif self._prompt_ready:
            self._write(data)
            self._prompt_ready = False
        else:
            self._queue.append(data)
            if self._flush_timer is None:
                self._flush_timer = asyncio.get_running_loop().call_later(SAFETY_FLUSH_S, self._flush)

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch, self._queue = self._queue, []
        delay = 0.0
        loop = asyncio.get_running_loop()
        for text in batch:
            loop.call_later(delay, self._write, text)
            delay += 0 if text == "\r" else TEXT_GAP_S
        if batch:
            self._prompt_ready = False

    async def drop_socket(self) -> None:
        """The wrapper's connection breaks (the child keeps running)."""
        if self.ws is not None:
            await self.ws.close()
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def close(self) -> None:
        await self.drop_socket()
        if self.child is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.child.fd)
            if self.child.isalive():
                self.child.terminate(force=True)
