"""``WS /api/sessions/{id}``: the Node.js CLI's terminal socket.

Two clients of the Node.js telepty use it, told apart as that daemon told them apart:

* ``?owner=1``: its ``allow`` wrapper. The session must already be registered (the
  wrapper registers before it connects, and again before every reconnect) as a wrapped
  session; it becomes that session's wrapper link (``NodeWrapperLink``), so prompts
  reach it through the delivery engine like any other.
* anything else: its ``attach`` (and the attach after ``spawn``): a viewer of a spawned
  PTY or of a wrapped session. Output goes out as ``{"type": "output", "data"}`` text
  frames (the scrollback first); ``{"type": "input", "data"}`` and
  ``{"type": "resize", "cols", "rows"}`` come back.

Where the Node.js daemon was lax, this is not: an unknown id is refused rather than
registered on the spot, and a wrapper link that is still connected is not displaced by
a second ``owner=1`` socket (the old daemon let any loopback page take a session over).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from telepty.api.keys import CONFIG, IDENTITIES, REGISTRY, TERMINALS, WEBSOCKETS
from telepty.errors import Conflict, ErrorCode, NotFound
from telepty.pty.spawned import PtyClosedError
from telepty.sessions.model import SessionState, SessionType, validate_session_id
from telepty.sessions.node_wrapper_link import NodeWrapperLink
from telepty.sessions.registry import SessionRegistry
from telepty.sessions.wrapper_link import WrapperGone, WrapperLink

log = logging.getLogger("telepty.api.node_socket")

HEARTBEAT_S = 15.0
MAX_FRAME = 8 * 1024 * 1024
MAX_DIM = 1000


async def node_socket(request: web.Request) -> web.StreamResponse:
    registry, terminals = request.app[REGISTRY], request.app[TERMINALS]
    name = validate_session_id(request.match_info["id"], "id")
    if request.query.get("owner") == "1":
        session = registry.get(name)
        if session is None:
            raise NotFound(ErrorCode.SESSION_NOT_FOUND, f"no session with id {name!r}; register it first "
                           "(POST /api/sessions/register)")
        if session.type is not SessionType.WRAPPED or session.state is SessionState.EXITED:
            raise Conflict(ErrorCode.NOT_WRAPPABLE, f"session {name!r} is a {session.state} {session.type} "
                           "session; only a registered wrapped session takes a wrapper")
        if name in terminals.links:
            raise Conflict(ErrorCode.WRAPPER_CONNECTED, f"session {name!r} already has a connected wrapper")
        return await _serve_wrapper(request, name)
    session = registry.resolve(name)
    if session.type is SessionType.SPAWNED:
        if session.id not in terminals.spawned:
            raise Conflict(ErrorCode.SESSION_EXITED, f"session {session.id!r} has exited")
    elif session.type is SessionType.WRAPPED:
        if session.id not in terminals.links:
            raise Conflict(ErrorCode.SESSION_DISCONNECTED, f"the wrapper of {session.id!r} is not connected")
    else:
        raise Conflict(ErrorCode.NOT_ATTACHABLE, f"session {session.id!r} is a {session.type} session; "
                       "attach to its tmux pane with tmux")
    return await _serve_viewer(request, session.id)


async def _open(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME)
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    return ws


def _frame(text: str) -> dict[str, Any] | None:
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) else None


def _dims(msg: dict[str, Any]) -> tuple[int, int] | None:
    cols, rows = msg.get("cols"), msg.get("rows")
    if (isinstance(cols, int) and isinstance(rows, int) and not isinstance(cols, bool)
            and not isinstance(rows, bool) and 0 < cols <= MAX_DIM and 0 < rows <= MAX_DIM):
        return cols, rows
    return None


# -- the wrapper ------------------------------------------------------------------------


async def _serve_wrapper(request: web.Request, session_id: str) -> web.WebSocketResponse:
    app = request.app
    registry, terminals = app[REGISTRY], app[TERMINALS]
    ws = await _open(request)
    link = NodeWrapperLink(session_id, ws, app[CONFIG].scrollback_bytes)
    try:
        if session_id in terminals.links:  # a second owner won the race to connect
            await ws.close(code=4409, message=b"wrapper_connected")
            return ws
        # No session token crosses this protocol: an earlier occupant's must not speak for it.
        await app[IDENTITIES].unbind(session_id)
        terminals.attach_link(link)
        await registry.set_state(session_id, SessionState.RUNNING)  # it was away: back now
        log.info("node.js wrapper connected session=%s", session_id)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                frame = _frame(msg.data)
                if frame is not None:
                    await _wrapper_frame(registry, link, frame)
            elif msg.type is not WSMsgType.BINARY:
                break
    finally:
        app[WEBSOCKETS].discard(ws)
        await terminals.link_closed(link)
        log.info("node.js wrapper disconnected session=%s", link.session_id)
    return ws


async def _wrapper_frame(registry: SessionRegistry, link: NodeWrapperLink, frame: dict[str, Any]) -> None:
    kind = frame.get("type")
    if kind == "output" and isinstance(frame.get("data"), str):
        link.feed_output(frame["data"].encode("utf-8", errors="replace"))
        registry.touch(link.session_id, link.last_output_wall)
    elif kind == "session_died" and frame.get("willRestart") is not True:
        code = frame.get("exitCode")
        await registry.set_state(
            link.session_id, SessionState.EXITED,
            exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            reason="process_exited",
        )
    # ``ready`` and ``session_restarted`` change nothing here: readiness is read from
    # the screen by the delivery engine, as for every session.


# -- viewers ----------------------------------------------------------------------------


async def _serve_viewer(request: web.Request, session_id: str) -> web.WebSocketResponse:
    terminals = request.app[TERMINALS]
    session = request.app[REGISTRY].require(session_id)
    pty = terminals.spawned.get(session_id)
    link: WrapperLink | None = None if pty is not None else terminals.links.get(session_id)
    ws = await _open(request)
    if pty is not None:
        queue = pty.subscribe(replay=True)
    else:
        assert link is not None
        queue = asyncio.Queue()
        snapshot = link.scrollback.snapshot()
        if snapshot:
            queue.put_nowait(snapshot)
        link.listeners.append(queue)
    session.clients += 1
    pump = asyncio.ensure_future(_pump_output(ws, queue))
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                if msg.type is WSMsgType.BINARY:
                    continue
                break
            frame = _frame(msg.data)
            if frame is None:
                continue
            if frame.get("type") == "input" and isinstance(frame.get("data"), str):
                data = frame["data"].encode("utf-8", errors="replace")
                with contextlib.suppress(PtyClosedError, WrapperGone, OSError):
                    await (pty.write(data) if pty is not None else link.write(data))  # type: ignore[union-attr]
            elif frame.get("type") == "resize" and (dims := _dims(frame)) is not None:
                if pty is not None:
                    pty.resize(*dims)
                elif isinstance(link, NodeWrapperLink):
                    await link.resize(*dims)
    finally:
        request.app[WEBSOCKETS].discard(ws)
        session.clients = max(0, session.clients - 1)
        if pty is not None:
            pty.unsubscribe(queue)
        elif link is not None and queue in link.listeners:
            link.listeners.remove(queue)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
    return ws


async def _pump_output(ws: web.WebSocketResponse, queue: asyncio.Queue[bytes | None]) -> None:
    """Terminal bytes as ``output`` text frames; a UTF-8 character split across two reads
    is held back until its end arrives, never turned into two replacement marks."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        chunk = await queue.get()
        if chunk is None:
            break
        text = decoder.decode(chunk)
        if text:
            await ws.send_json({"type": "output", "data": text})
    await ws.close(code=1000, message=b"Session exited")
