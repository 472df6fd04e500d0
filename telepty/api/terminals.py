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

from telepty.api.body import json_object, json_response, opt, query_int, req
from telepty.api.keys import SERVICES
from telepty.api.sessions import parse_register, public_session, require_profile, with_pane_owner
from telepty.delivery.transports.stream import dims, stream_view
from telepty.errors import BadRequest, Conflict, NotFound, TeleptyError
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
from telepty.sessions.agents import validate_agent_name
from telepty.sessions.identity import is_token_hash
from telepty.sessions.model import SessionState, SessionType, validate_session_id
from telepty.sessions.registry import RegisterSpec
from telepty.sessions.terminals import SpawnSpec
from telepty.sessions.wrapper_link import WrapperLink

log = logging.getLogger("telepty.api")

HEARTBEAT_S = 15.0


# -- spawn ----------------------------------------------------------------------


def _dims(data: dict[str, Any]) -> tuple[int, int]:
    cols = opt(data, "cols", int, 120)
    rows = opt(data, "rows", int, 40)
    if not (1 <= cols <= 1000 and 1 <= rows <= 1000):
        raise BadRequest("invalid_field", "cols and rows must be between 1 and 1000")
    return cols, rows


async def spawn(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    data = await json_object(request)
    session_id = data.get("session_id")
    if session_id is not None:
        validate_session_id(session_id)
    command = req(data, "command", str)
    args = opt(data, "args", list)
    if args is not None and not all(isinstance(a, str) for a in args):
        raise BadRequest("invalid_field", "args must be an array of strings")
    env = opt(data, "env", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise BadRequest("invalid_field", "env must map strings to strings")
    agent = opt(data, "agent", str)
    if agent is not None:
        validate_agent_name(agent)
        require_profile(svc.profiles, agent)
    cols, rows = _dims(data)
    cwd = opt(data, "cwd", str) or os.path.expanduser("~")
    spec = SpawnSpec.from_command(
        command, args, cwd=cwd, session_id=session_id, env=env, cols=cols, rows=rows, agent=agent
    )
    session = await svc.terminals.spawn(spec)
    body = public_session(request, session)
    body["session_id"] = session.id  # what the Node.js CLI's spawn reads (then attaches to)
    return json_response(body, status=201)


# -- attach (spawned) -------------------------------------------------------------


async def attach(request: web.Request) -> web.StreamResponse:
    """Replay recent output, then stream live output; input and resizes come back."""
    svc = request.app[SERVICES]
    session = svc.registry.resolve(request.match_info["id"])
    pty = svc.terminals.spawned.get(session.id)
    if pty is None:
        if session.type is not SessionType.SPAWNED:
            raise BadRequest("not_attachable", f"session {session.id!r} is {session.type}; "
                             "only spawned sessions can be attached")
        raise Conflict("session_exited", f"session {session.id!r} has exited")
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    svc.websockets.add(ws)
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
        svc.websockets.discard(ws)
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
        raise BadRequest("invalid_hello", "the first frame must be a JSON hello")
    try:
        return decode(first.data, {Hello.TYPE: Hello})
    except WireError as exc:
        if exc.field is not None:
            raise BadRequest("invalid_field", exc.detail) from None
        raise BadRequest("invalid_hello",
                         f'the first frame must be {{"type": "hello", ...}}: {exc.detail}') from None


async def wrap_socket(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=8 * 1024 * 1024)
    await ws.prepare(request)
    svc.websockets.add(ws)
    try:
        return await _serve_wrapper(svc, ws)
    finally:
        svc.websockets.discard(ws)


async def _serve_wrapper(svc: Any, ws: web.WebSocketResponse) -> web.WebSocketResponse:
    try:
        first = await ws.receive(timeout=10.0)
    except TimeoutError:
        await ws.close(code=4408, message=b"no hello")
        return ws
    try:
        hello = _read_hello(first)
        spec, replace = _register_spec(hello)
        require_profile(svc.profiles, spec.agent)
        spec = await with_pane_owner(svc.tmux, spec)
        token_hash = hello.session_token_sha256
        if token_hash is not None and not is_token_hash(token_hash):
            raise BadRequest("invalid_hello", "session_token_sha256 must be 64 lower-case hex digits")
        session = await svc.registry.register(spec, replace=replace)
        if token_hash is not None:
            # Every (re)connect: the child's token is the identity, whatever the id.
            await svc.identities.bind(session.id, token_hash)
        else:
            # No token in this child: an earlier occupant's token must not speak for it.
            await svc.identities.unbind(session.id)
    except TeleptyError as exc:
        await ws.send_str(encode(Refused(error=exc.code, detail=exc.detail)))
        await ws.close(code=4000 + exc.status, message=exc.code.encode())
        return ws

    link = WrapperLink(session.id, ws, svc.config.scrollback_bytes, protocol=hello.protocol or 1)
    svc.terminals.attach_link(link)
    session.clients = 0
    await ws.send_str(encode(Welcome(session_id=session.id,
                                     session=session.to_public(svc.config.machine_id, time.time()))))
    log.info("wrapper connected session=%s pid=%s", session.id, session.pid)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                link.feed_output(msg.data)
                svc.registry.touch(session.id, link.last_output_wall)
            elif msg.type is WSMsgType.TEXT:
                await _wrapper_message(svc, link, msg.data)
            else:
                break
    finally:
        await svc.terminals.link_closed(link)
        log.info("wrapper disconnected session=%s", session.id)
    return ws


async def _wrapper_message(svc: Any, link: WrapperLink, text: str) -> None:
    try:
        msg = decode(text, WRAPPER_MESSAGES)
    except WireError as exc:
        log.debug("ignoring a wrapper frame of session=%s: %s", link.session_id, exc.detail)
        return
    if isinstance(msg, Heartbeat):
        if link.feed_heartbeat(msg):
            log.warning("wrapper output stalled session=%s", link.session_id)
            await svc.bus.emit(
                "session_upstream_stalled", target=link.session_id, session_id=link.session_id,
                bytes_reported=msg.bytes_mirrored, bytes_received=link.bytes_received,
            )
        svc.registry.touch(link.session_id, link.last_output_wall)
    elif isinstance(msg, Result):
        link.feed_result(msg)
    elif isinstance(msg, Exit):
        await svc.registry.set_state(link.session_id, SessionState.EXITED, exit_code=msg.code,
                                     reason="process_exited")


# -- screen -------------------------------------------------------------------------


async def screen(request: web.Request) -> web.Response:
    """The session's screen as text: a tmux pane's capture, or a PTY session's screen as
    the terminal model ``explain`` and deliveries read it (the very same model), so
    backspaces, carriage returns and redraws show as the terminal shows them."""
    svc = request.app[SERVICES]
    session = svc.registry.resolve(request.match_info["id"])
    lines = query_int(request, "lines", 40, 1, 10_000)
    text: str | None = None
    source = "scrollback"
    if session.tmux_pane and svc.tmux_for(session) is not None:
        with contextlib.suppress(Exception):
            text = await svc.tmux_for(session).capture_tail(session.tmux_pane, lines)
            source = "pane"
    if text is None:
        scrollback = svc.terminals.scrollback_of(session.id)
        if scrollback is None:
            raise NotFound("no_screen", f"nothing is known of session {session.id!r}'s screen")
        text = "\n".join(stream_view(scrollback, *dims(session)).lines()[-lines:])
    # ``screen`` repeats ``text`` under the name the Node.js CLI's read-screen prints.
    return json_response({"session_id": session.id, "source": source, "lines": lines, "text": text,
                          "screen": text})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/sessions/spawn", spawn)
    app.router.add_get("/api/sessions/{id}/attach", attach)
    app.router.add_get("/api/sessions/{id}/screen", screen)
    app.router.add_get("/api/wrap", wrap_socket)
