"""Session routes: parse → registry → render."""

from __future__ import annotations

import time

from aiohttp import web

from telepty.api.body import json_object, json_response
from telepty.api.keys import CONFIG, DELIVERIES, IDENTITIES, PROFILES, REGISTRY, RELAY, TERMINALS
from telepty.api.models import SESSION_ID_SCHEMA, CleanSessions, RegisterSession, Rename, read
from telepty.api.node_dialect import node_fields
from telepty.api.node_socket import node_socket
from telepty.api.spec import (
    Route,
    answer,
    array,
    boolean,
    enum,
    integer,
    obj,
    ok,
    param,
    path_id,
    query,
    ref,
    string,
)
from telepty.delivery.profiles import SubmitProfiles
from telepty.errors import BadRequest, Conflict, ErrorCode
from telepty.sessions.agents import detect_agent
from telepty.sessions.model import Session, SessionState, SessionType, validate_session_id
from telepty.sessions.registry import RegisterSpec

REGISTRABLE = {"wrapped": SessionType.WRAPPED, "pane": SessionType.PANE}


def public_session(request: web.Request, session: Session) -> dict[str, object]:
    """A session as every route shows it: our record, and beside it the fields the
    Node.js CLI reads (``telepty.api.node_dialect``; documented in docs/node-compat.md)."""
    now = time.time()
    data = session.to_public(request.app[CONFIG].machine_id, now)
    data.update(node_fields(session, linked=session.id in request.app[TERMINALS].links,
                            idle_seconds=data.get("idle_seconds")))  # type: ignore[arg-type]
    return data



def parse_register(data: dict[str, object]) -> tuple[RegisterSpec, bool]:
    """A registration (the route's body, or a wrapper's hello) as the registry's spec."""
    body = RegisterSession.parse(data)
    command = body.command or ""
    spec = RegisterSpec(
        type=REGISTRABLE[body.type or "wrapped"],
        command=command,
        cwd=body.cwd or "",
        session_id=body.session_id,
        pid=body.pid,
        tmux_pane=body.tmux_pane,
        tmux_socket=body.tmux_socket,
        agent=body.agent or detect_agent(command),
        meta=dict(body.meta or {}),
    )
    return spec, bool(body.replace)


def require_profile(profiles: SubmitProfiles, agent: str | None) -> None:
    """An agent kind is a profile name: one the daemon has no profile for is refused,
    rather than silently read with [default]."""
    problem = profiles.unknown_agent(agent)
    if problem:
        raise BadRequest(ErrorCode.INVALID_FIELD, f"agent: {problem}")


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
        raise BadRequest(ErrorCode.INVALID_QUERY, f"scope must be local or all, got {scope!r}")
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
    new_id = (await read(request, Rename)).new_id
    session = registry.check_rename(old_id, new_id)  # exact id: an alias is never renamed
    for status in PENDING_STATUSES:
        if await request.app[DELIVERIES].list(session=old_id, status=status, limit=1):
            raise Conflict(ErrorCode.DELIVERIES_PENDING, f"session {old_id!r} has {status} deliveries; "
                           "rename it once they are final (or cancel them)")
    if (session.type is SessionType.WRAPPED and session.state is not SessionState.EXITED
            and old_id not in request.app[TERMINALS].links):
        raise Conflict(ErrorCode.SESSION_DISCONNECTED, f"the wrapper of session {old_id!r} is not connected; "
                       "rename it while it is, so the wrapper learns its new id")
    renamed = await registry.rename(old_id, new_id)
    return json_response({"old_id": old_id, "new_id": renamed.id, "success": True,
                          "session": public_session(request, renamed)})


async def clean_sessions(request: web.Request) -> web.Response:
    """Forget exited sessions (optionally only those idle longer than ``older_than``).

    Never a running or disconnected one: those still have an agent behind them.
    """
    registry = request.app[REGISTRY]
    body = await read(request, CleanSessions)
    older_than_s = float(body.older_than) if body.older_than is not None else None
    dry_run = bool(body.dry_run)
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


SID = path_id()
EXACT = param("path", "id", SESSION_ID_SCHEMA, "an exact session id (never an alias)")
RENAMED = answer(obj({"old_id": string(), "new_id": string(), "success": boolean(),
                      "session": ref("Session")}, ("old_id", "new_id", "session")), "renamed")
RENAME_ERRORS = {400: "missing_field / invalid_session_id / invalid_field", 404: "session_not_found",
                 409: "session_exists / deliveries_pending / session_disconnected"}

ROUTES = (
    Route("POST", "/api/sessions/register", register, "registerSession",
          "Register a wrapped session or an existing tmux pane", "sessions",
          body=RegisterSession, body_required=False, ok={201: ok("Session", "registered")},
          errors={400: "invalid_field / missing_field / invalid_session_id",
                  409: "session_exists: the id is live (pass replace: true to take it over)"}),
    Route("POST", "/api/sessions/clean", clean_sessions, "cleanSessions",
          "Forget exited sessions (never running or disconnected ones)", "sessions",
          body=CleanSessions, body_required=False,
          ok={200: answer(obj({"removed": array(string()), "count": integer(0), "dry_run": boolean()},
                              ("removed", "count", "dry_run")), "what was (or would be) removed")},
          errors={400: "invalid_field / invalid_query"}),
    Route("POST", "/api/sessions/{id}/rename", rename_session, "renameSession",
          "Give a session a new id (exact ids only)", "sessions", params=(EXACT,), body=Rename,
          ok={200: RENAMED}, errors=RENAME_ERRORS),
    Route("GET", "/api/sessions", list_sessions, "listSessions",
          "List sessions (this machine's, or with scope=all every peer's too)", "sessions",
          params=(
              query("type", string(), "only this type (spawned, wrapped, pane)"),
              query("agent", string(), "only this agent kind"),
              query("project", string(), "only sessions whose cwd ends in this name"),
              query("state", string(), "only this state (running, disconnected, exited)"),
              query("all", string(), "0 or false: leave exited sessions out"),
              query("scope", enum(["local", "all"], default="local"), "all: ask every peer too",
                    empty_ok=False),
          ),
          ok={200: answer({"anyOf": [array(ref("Session")), ref("SessionsEverywhere")]},
                          "an array (scope=local) or sessions with their peers (scope=all)")},
          errors={400: "invalid_query: scope is not local or all"}),
    Route("GET", "/api/sessions/{id}", get_session, "getSession",
          "One session by id or alias (a WebSocket upgrade here is the Node.js CLI's terminal socket: its "
          "allow wrapper with ?owner=1, else its attach)", "sessions",
          params=(SID, query("owner", string(), "1: the Node.js allow wrapper")), ok={200: ok("Session")},
          errors={404: "session_not_found", 409: "WebSocket only: not_wrappable / wrapper_connected / "
                  "session_exited / session_disconnected / not_attachable"}),
    Route("DELETE", "/api/sessions/{id}", delete_session, "deleteSession",
          "Remove a session (kills a spawned PTY, detaches a wrapper)", "sessions", params=(EXACT,),
          ok={200: answer(obj({"session_id": string(), "removed": boolean(const=True), "type": string()},
                              ("session_id", "removed", "type")), "removed")},
          errors={400: "invalid_session_id", 404: "session_not_found"}),
    Route("PATCH", "/api/sessions/{id}", rename_session, "renameSessionNode",
          "Rename a session, as the Node.js CLI asks (same as …/rename)", "sessions", params=(EXACT,),
          body=Rename, ok={200: RENAMED}, errors=RENAME_ERRORS),
)
