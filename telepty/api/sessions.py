"""Session routes: parse → registry → render."""

from __future__ import annotations

import time

from aiohttp import web

from telepty.api.body import json_object, json_response, opt
from telepty.api.injects import parse_duration
from telepty.api.keys import CONFIG, DELIVERIES, IDENTITIES, PROFILES, REGISTRY, RELAY, TERMINALS
from telepty.api.node_dialect import node_fields
from telepty.api.node_socket import node_socket
from telepty.delivery.profiles import SubmitProfiles
from telepty.errors import BadRequest, Conflict
from telepty.sessions.agents import detect_agent, validate_agent_name
from telepty.sessions.model import PANE_ID_RE, Session, SessionState, SessionType, validate_session_id
from telepty.sessions.registry import RegisterSpec

REGISTRABLE = {"wrapped": SessionType.WRAPPED, "pane": SessionType.PANE}
MAX_PID = 2**31 - 1  # pid_t; anything larger would not even fit the store's INTEGER


def public_session(request: web.Request, session: Session) -> dict[str, object]:
    """A session as every route shows it: our record, and beside it the fields the
    Node.js CLI reads (``telepty.api.node_dialect``; documented in docs/node-compat.md)."""
    now = time.time()
    data = session.to_public(request.app[CONFIG].machine_id, now)
    data.update(node_fields(session, linked=session.id in request.app[TERMINALS].links,
                            idle_seconds=data.get("idle_seconds")))  # type: ignore[arg-type]
    return data



def parse_register(data: dict[str, object]) -> tuple[RegisterSpec, bool]:
    kind = opt(data, "type", str, "wrapped")
    if kind not in REGISTRABLE:
        raise BadRequest("invalid_field", "type must be 'wrapped' or 'pane' (spawn creates spawned)")
    session_id = data.get("session_id")
    if session_id is not None:
        validate_session_id(session_id)
    command = opt(data, "command", str, "")
    cwd = opt(data, "cwd", str, "")
    pid = opt(data, "pid", int)
    if pid is not None and not 0 < pid <= MAX_PID:
        raise BadRequest("invalid_field", f"pid must be an integer from 1 to {MAX_PID}")
    pane = opt(data, "tmux_pane", str)
    if pane is not None and not PANE_ID_RE.match(pane):
        raise BadRequest("invalid_field", f"tmux_pane must look like %3, got {pane!r}")
    if kind == "pane" and pane is None:
        raise BadRequest("missing_field", "tmux_pane is required for a pane session")
    socket = opt(data, "tmux_socket", str)
    agent = opt(data, "agent", str)
    if agent is not None:
        validate_agent_name(agent)
    meta = opt(data, "meta", dict, {})
    replace = opt(data, "replace", bool, False)
    spec = RegisterSpec(
        type=REGISTRABLE[kind],
        command=command,
        cwd=cwd,
        session_id=session_id,  # type: ignore[arg-type]
        pid=pid,
        tmux_pane=pane,
        tmux_socket=socket,
        agent=agent or detect_agent(command),
        meta=meta,
    )
    return spec, replace


def require_profile(profiles: SubmitProfiles, agent: str | None) -> None:
    """An agent kind is a profile name: one the daemon has no profile for is refused,
    rather than silently read with [default]."""
    problem = profiles.unknown_agent(agent)
    if problem:
        raise BadRequest("invalid_field", f"agent: {problem}")


async def register(request: web.Request) -> web.Response:
    spec, replace = parse_register(await json_object(request))
    require_profile(request.app[PROFILES], spec.agent)
    session = await request.app[REGISTRY].register(spec, replace=replace)
    return json_response(public_session(request, session), status=201)


async def list_sessions(request: web.Request) -> web.Response:
    q = request.query
    include_exited = q.get("all", "1") not in {"0", "false"}
    sessions = request.app[REGISTRY].list(
        type=q.get("type") or None,
        agent=q.get("agent") or None,
        project=q.get("project") or None,
        state=q.get("state") or None,
        include_exited=include_exited,
    )
    scope = q.get("scope", "local")
    if scope not in {"local", "all"}:
        raise BadRequest("invalid_query", f"scope must be local or all, got {scope!r}")
    if scope == "local":
        return json_response([public_session(request, s) for s in sessions])
    # scope=all: this machine's sessions and every peer's (telepty.relay); a peer that
    # does not answer is listed as unreachable, never an error for the whole list.
    mine = request.app[CONFIG].machine_id
    out = [{**public_session(request, s), "host": mine, "address": s.id} for s in sessions]
    forwarded = {k: q[k] for k in ("type", "agent", "project", "state", "all") if q.get(k)}
    peers = await request.app[RELAY].peer_sessions(forwarded)
    for peer in peers:
        remote = peer.pop("sessions")
        peer["count"] = len(remote)
        for rs in remote:
            if isinstance(rs, dict) and isinstance(rs.get("id"), str):
                out.append({**rs, "host": peer["name"], "address": f"{rs['id']}@{peer['name']}"})
    return json_response({"scope": "all", "machine_id": mine, "sessions": out, "peers": peers})


async def get_session(request: web.Request) -> web.StreamResponse:
    """One session; a WebSocket upgrade on this path is the Node.js CLI's terminal socket
    (its ``allow`` wrapper and ``attach``), served by ``telepty.api.node_socket``."""
    if request.headers.get("Upgrade", "").strip().lower() == "websocket":
        return await node_socket(request)
    name = request.match_info["id"]
    session = request.app[REGISTRY].resolve(name)
    body = public_session(request, session)
    body["requested"] = name
    # What the Node.js CLI's `reply` reads: who the last prompt that had someone to
    # answer came from, and where the answer goes.
    last = await request.app[IDENTITIES].last_received(session.id)
    body["lastInjectReplyTo"] = last.reply_to if last else None
    body["lastInjectFrom"] = last.sender if last else None
    return json_response(body)


async def delete_session(request: web.Request) -> web.Response:
    session_id = validate_session_id(request.match_info["id"], "id")
    session = await request.app[REGISTRY].remove(session_id)
    return json_response({"session_id": session.id, "removed": True, "type": str(session.type)})


PENDING_STATUSES = ("queued", "delivering", "retrying", "held")


async def rename_session(request: web.Request) -> web.Response:
    """Exact ids only (SPEC §8), and only when nothing is in flight for the session.

    Refused while deliveries are pending (they are bound to the old id and would fail
    ``session_not_found`` half-way) and while a wrapped session's wrapper is away (it
    would come back registering the old id; the wrapper is told of a rename only over
    its live socket).
    """
    registry = request.app[REGISTRY]
    old_id = validate_session_id(request.match_info["id"], "id")
    data = await json_object(request)
    new_id = data.get("new_id")
    if new_id is None:
        raise BadRequest("missing_field", "new_id is required")
    session = registry.check_rename(old_id, new_id)  # exact id: an alias is never renamed
    for status in PENDING_STATUSES:
        if await request.app[DELIVERIES].list(session=old_id, status=status, limit=1):
            raise Conflict("deliveries_pending", f"session {old_id!r} has {status} deliveries; rename it "
                           "once they are final (or cancel them)")
    if (session.type is SessionType.WRAPPED and session.state is not SessionState.EXITED
            and old_id not in request.app[TERMINALS].links):
        raise Conflict("session_disconnected", f"the wrapper of session {old_id!r} is not connected; "
                       "rename it while it is, so the wrapper learns its new id")
    renamed = await registry.rename(old_id, new_id)
    return json_response({"old_id": old_id, "new_id": renamed.id, "success": True,
                          "session": public_session(request, renamed)})


async def clean_sessions(request: web.Request) -> web.Response:
    """Forget exited sessions (optionally only those idle longer than ``older_than``).

    Never a running or disconnected one: those still have an agent behind them.
    """
    registry = request.app[REGISTRY]
    data = await json_object(request)
    if opt(data, "exited", bool, True) is not True:
        raise BadRequest("invalid_field", "clean only ever removes exited sessions (exited must be true)")
    older = data.get("older_than")
    older_than_s: float | None = None
    if isinstance(older, str):
        older_than_s = parse_duration(older, "older_than")
    elif older is not None:
        older_than_s = float(opt(data, "older_than", (int, float)))
        if not older_than_s >= 0:
            raise BadRequest("invalid_field", "older_than must not be negative")
    dry_run = opt(data, "dry_run", bool, False)
    candidates = registry.cleanable(older_than_s=older_than_s)
    removed: list[str] = []
    if not dry_run:
        for s in candidates:
            current = registry.get(s.id)
            if current is None or current.state is not SessionState.EXITED:
                continue  # came back meanwhile (a wrapper reconnected): not ours to remove
            await registry.remove(s.id)
            removed.append(s.id)
    else:
        removed = [s.id for s in candidates]
    return json_response({"removed": removed, "count": len(removed), "dry_run": dry_run})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/sessions/register", register)
    app.router.add_post("/api/sessions/clean", clean_sessions)
    app.router.add_post("/api/sessions/{id}/rename", rename_session)
    app.router.add_get("/api/sessions", list_sessions)
    app.router.add_get("/api/sessions/{id}", get_session)
    app.router.add_delete("/api/sessions/{id}", delete_session)
    app.router.add_patch("/api/sessions/{id}", rename_session)  # the Node.js CLI's `rename`
