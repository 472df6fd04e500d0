"""Terminal routes: spawn, attach, the wrapper control socket, and screen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import orjson
from aiohttp import WSMessage, WSMsgType, web

from telepty.api.body import json_response, query_int
from telepty.api.keys import BUS, CONFIG, IDENTITIES, PROFILES, REGISTRY, TERMINALS, TMUX, WEBSOCKETS
from telepty.api.models import SpawnSession, read
from telepty.api.sessions import parse_register, public_session, require_profile
from telepty.api.spec import Route, answer, enum, integer, obj, ok, path_id, query, string
from telepty.delivery.transports.stream import dims, stream_view
from telepty.errors import BadRequest, Conflict, ErrorCode, NotFound, TeleptyError
from telepty.pty.spawned import PtyClosedError
from telepty.pty.wrap_protocol import (
    WRAPPER_MESSAGES,
    Exit,
    Heartbeat,
    Hello,
    Refused,
    Result,
    Welcome,
    WireError,
    decode,
    encode,
)
from telepty.sessions.identity import is_token_hash
from telepty.sessions.model import SessionState, SessionType
from telepty.sessions.registry import RegisterSpec
from telepty.sessions.terminals import SpawnSpec
from telepty.sessions.wrapper_link import WrapperLink

log = logging.getLogger("telepty.api")

HEARTBEAT_S = 15.0


# -- spawn ----------------------------------------------------------------------


async def spawn(request: web.Request) -> web.Response:
    body = await read(request, SpawnSession)
    if body.agent is not None:
        require_profile(request.app[PROFILES], body.agent)
    cwd = body.cwd or os.path.expanduser("~")
    spec = SpawnSpec.from_command(
        body.command, body.args, cwd=cwd, session_id=body.session_id, env=dict(body.env or {}),
        cols=body.cols or 120, rows=body.rows or 40, agent=body.agent,
    )
    session = await request.app[TERMINALS].spawn(spec)
    out = public_session(request, session)
    out["session_id"] = session.id  # what the Node.js CLI's spawn reads (then attaches to)
    return json_response(out, status=201)


# -- attach (spawned) -------------------------------------------------------------


async def attach(request: web.Request) -> web.StreamResponse:
    """Replay recent output, then stream live output; input and resizes come back."""
    sockets = request.app[WEBSOCKETS]
    session = request.app[REGISTRY].resolve(request.match_info["id"])
    pty = request.app[TERMINALS].spawned.get(session.id)
    if pty is None:
        if session.type is not SessionType.SPAWNED:
            raise BadRequest(ErrorCode.NOT_ATTACHABLE, f"session {session.id!r} is {session.type}; "
                             "only spawned sessions can be attached")
        raise Conflict(ErrorCode.SESSION_EXITED, f"session {session.id!r} has exited")
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    sockets.add(ws)
    replay = request.query.get("replay", "1") not in {"0", "false"}
    queue = pty.subscribe(replay=replay)
    session.clients += 1

    async def pump_out() -> None:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            await ws.send_bytes(chunk)
        if pty.exited.is_set():
            await ws.send_json({"type": "exit", "code": pty.exit_code})
        await ws.close()

    pump = asyncio.ensure_future(pump_out())
    try:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                with contextlib.suppress(PtyClosedError):
                    await pty.write(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await _attach_control(pty, msg.data)
            else:
                break
    finally:
        sockets.discard(ws)
        session.clients = max(0, session.clients - 1)
        pty.unsubscribe(queue)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
    return ws


async def _attach_control(pty: Any, text: str) -> None:
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    if not isinstance(msg, dict):
        return
    if msg.get("type") == "resize":
        cols, rows = msg.get("cols"), msg.get("rows")
        if isinstance(cols, int) and isinstance(rows, int) and 0 < cols <= 1000 and 0 < rows <= 1000:
            pty.resize(cols, rows)
    elif msg.get("type") == "input" and isinstance(msg.get("data"), str):
        with contextlib.suppress(PtyClosedError):
            await pty.write(msg["data"].encode())


# -- the wrapper's control socket (its messages: telepty.pty.wrap_protocol) --------------


def _register_spec(hello: Hello) -> tuple[RegisterSpec, bool]:
    return parse_register({
        "type": "wrapped", "session_id": hello.session_id, "command": hello.command, "cwd": hello.cwd,
        "pid": hello.pid, "tmux_pane": hello.tmux_pane, "tmux_socket": hello.tmux_socket,
        "agent": hello.agent, "replace": hello.replace, "meta": hello.meta,
    })


def _read_hello(first: WSMessage) -> Hello:
    if first.type is not WSMsgType.TEXT:
        raise BadRequest(ErrorCode.INVALID_HELLO, "the first frame must be a JSON hello")
    try:
        return decode(first.data, {Hello.TYPE: Hello})
    except WireError as exc:
        if exc.field is not None:
            raise BadRequest(ErrorCode.INVALID_FIELD, exc.detail) from None
        raise BadRequest(ErrorCode.INVALID_HELLO,
                         f'the first frame must be {{"type": "hello", ...}}: {exc.detail}') from None


async def wrap_socket(request: web.Request) -> web.StreamResponse:
    app = request.app
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=8 * 1024 * 1024)
    await ws.prepare(request)
    app[WEBSOCKETS].add(ws)
    try:
        return await _serve_wrapper(app, ws)
    finally:
        app[WEBSOCKETS].discard(ws)


async def _serve_wrapper(app: web.Application, ws: web.WebSocketResponse) -> web.WebSocketResponse:
    registry, identities, terminals, config = app[REGISTRY], app[IDENTITIES], app[TERMINALS], app[CONFIG]
    try:
        first = await ws.receive(timeout=10.0)
    except TimeoutError:
        await ws.close(code=4408, message=b"no hello")
        return ws
    try:
        hello = _read_hello(first)
        spec, replace = _register_spec(hello)
        require_profile(app[PROFILES], spec.agent)
        token_hash = hello.session_token_sha256
        if token_hash is not None and not is_token_hash(token_hash):
            raise BadRequest(ErrorCode.INVALID_HELLO, "session_token_sha256 must be 64 lower-case hex digits")
        session = await registry.register(spec, replace=replace)
        if token_hash is not None:
            # Every (re)connect: the child's token is the identity, whatever the id.
            await identities.bind(session.id, token_hash)
        else:
            # No token in this child: an earlier occupant's token must not speak for it.
            await identities.unbind(session.id)
    except TeleptyError as exc:
        await ws.send_str(encode(Refused(error=exc.code, detail=exc.detail)))
        await ws.close(code=4000 + exc.status, message=exc.code.encode())
        return ws

    link = WrapperLink(session.id, ws, config.scrollback_bytes, protocol=hello.protocol or 1)
    terminals.attach_link(link)
    session.clients = 0
    await ws.send_str(encode(Welcome(session_id=session.id,
                                     session=session.to_public(config.machine_id, time.time()))))
    log.info("wrapper connected session=%s pid=%s", session.id, session.pid)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                link.feed_output(msg.data)
                registry.touch(session.id, link.last_output_wall)
            elif msg.type is WSMsgType.TEXT:
                await _wrapper_message(app, link, msg.data)
            else:
                break
    finally:
        await terminals.link_closed(link)
        log.info("wrapper disconnected session=%s", session.id)
    return ws


async def _wrapper_message(app: web.Application, link: WrapperLink, text: str) -> None:
    registry = app[REGISTRY]
    try:
        msg = decode(text, WRAPPER_MESSAGES)
    except WireError as exc:
        log.debug("ignoring a wrapper frame of session=%s: %s", link.session_id, exc.detail)
        return
    if isinstance(msg, Heartbeat):
        if link.feed_heartbeat(msg):
            log.warning("wrapper output stalled session=%s", link.session_id)
            await app[BUS].emit(
                "session_upstream_stalled", target=link.session_id, session_id=link.session_id,
                bytes_reported=msg.bytes_mirrored, bytes_received=link.bytes_received,
            )
        registry.touch(link.session_id, link.last_output_wall)
    elif isinstance(msg, Result):
        link.feed_result(msg)
    elif isinstance(msg, Exit):
        await registry.set_state(link.session_id, SessionState.EXITED, exit_code=msg.code,
                                 reason="process_exited")


# -- screen -------------------------------------------------------------------------


async def screen(request: web.Request) -> web.Response:
    """The session's screen as text: a tmux pane's capture, or a PTY session's screen as
    the terminal model ``explain`` and deliveries read it (the very same model), so
    backspaces, carriage returns and redraws show as the terminal shows them."""
    session = request.app[REGISTRY].resolve(request.match_info["id"])
    lines = query_int(request, "lines", 40, 1, 10_000)
    text: str | None = None
    source = "scrollback"
    server = request.app[TMUX].for_session(session)
    if session.tmux_pane and server is not None:
        with contextlib.suppress(Exception):
            text = await server.capture_tail(session.tmux_pane, lines)
            source = "pane"
    if text is None:
        scrollback = request.app[TERMINALS].scrollback_of(session.id)
        if scrollback is None:
            raise NotFound(ErrorCode.NO_SCREEN, f"nothing is known of session {session.id!r}'s screen")
        text = "\n".join(stream_view(scrollback, *dims(session)).lines()[-lines:])
    # ``screen`` repeats ``text`` under the name the Node.js CLI's read-screen prints.
    return json_response({"session_id": session.id, "source": source, "lines": lines, "text": text,
                          "screen": text})


SID = path_id()

ROUTES = (
    Route("POST", "/api/sessions/spawn", spawn, "spawnSession", "Start a program in a PTY the daemon owns",
          "sessions", body=SpawnSession, ok={201: ok("Session", "spawned")},
          errors={400: "missing_field / invalid_field / invalid_cwd / spawn_failed / invalid_session_id",
                  409: "session_exists: a live session has that id"},
          extensions={"spawns_process": True}),
    Route("GET", "/api/sessions/{id}/attach", attach, "attachSession",
          "WebSocket: a spawned session's output (scrollback, then live) and input", "sessions",
          params=(SID, query("replay", string(), "0 or false: no scrollback replay")), websocket=True,
          errors={400: "not_attachable: only spawned sessions can be attached",
                  404: "session_not_found", 409: "session_exited"}),
    Route("GET", "/api/sessions/{id}/screen", screen, "getScreen",
          "The session's recent screen (pane capture or PTY scrollback)", "sessions",
          params=(SID, query("lines", integer(1, 10_000, default=40), "how many lines")),
          ok={200: answer(obj({"session_id": string(), "source": enum(["pane", "scrollback"]),
                               "lines": integer(1), "text": string(),
                               "screen": string(description="text again, as the Node.js CLI reads it")},
                              ("session_id", "source", "lines", "text", "screen")), "the screen's tail")},
          errors={400: "invalid_query", 404: "session_not_found / no_screen"}),
    Route("GET", "/api/wrap", wrap_socket, "wrapSocket",
          "WebSocket: a telepty wrap process's control socket (hello, output, results)", "sessions",
          websocket=True),
)
