"""Thread routes: parse → store → publish → render.

A thread is a named conversation among sessions; messages join it by carrying its id
as ``thread_id`` on an inject, and ``message_count`` counts exactly those deliveries.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from telepty.api.body import json_object, json_response, opt, query_enum, query_int, req
from telepty.api.handoffs import NAME_RE, name_field
from telepty.api.keys import BUS, THREADS
from telepty.errors import BadRequest, Conflict, NotFound
from telepty.store.threads import Thread, ThreadStatus

log = logging.getLogger("telepty.api.threads")

MAX_TOPIC = 1000
MAX_PARTICIPANTS = 500


def parse_thread(data: dict[str, Any]) -> Thread:
    topic = req(data, "topic", str)
    if not topic.strip():
        raise BadRequest("invalid_field", "topic must not be empty")
    if len(topic) > MAX_TOPIC:
        raise BadRequest("invalid_field", f"topic may be at most {MAX_TOPIC} characters")
    participants = opt(data, "participant_session_ids", list, [])
    if len(participants) > MAX_PARTICIPANTS:
        raise BadRequest("invalid_field", f"at most {MAX_PARTICIPANTS} participant_session_ids")
    for p in participants:
        if not isinstance(p, str) or not NAME_RE.match(p):
            raise BadRequest(
                "invalid_field", f"participant_session_ids must be session ids (strings), got {p!r}"
            )
    t = Thread(
        topic=topic,
        orchestrator_session_id=name_field(data, "orchestrator_session_id"),
        participant_session_ids=list(dict.fromkeys(participants)),  # keep order, drop repeats
    )
    chosen = name_field(data, "thread_id")
    if chosen is not None:
        t.id = chosen
    return t


def thread_view(t: Thread) -> dict[str, Any]:
    """A thread as every route shows it; ``id`` and ``participant_count`` repeat what the
    Node.js CLI's ``deliberate status`` reads."""
    return {**t.to_public(), "id": t.id, "participant_count": len(t.participant_session_ids)}


async def _publish(request: web.Request, kind: str, fields: dict[str, Any]) -> None:
    """The change is already stored; a bus failure is logged, not turned into an error."""
    try:
        await request.app[BUS].emit(kind, **fields)
    except Exception:
        log.exception("could not publish %s for thread %s", kind, fields.get("thread_id"))


async def open_thread(request: web.Request) -> web.Response:
    threads = request.app[THREADS]
    t = parse_thread(await json_object(request))
    if not await threads.insert(t):
        raise Conflict("thread_exists", f"a thread with id {t.id!r} already exists")
    # Deliveries may already carry this id (a caller-chosen one): count them now.
    stored = await threads.get(t.id) or t
    await _publish(request, "thread.opened", {
        "thread_id": stored.id,
        "topic": stored.topic,
        "orchestrator_session_id": stored.orchestrator_session_id,
        "participant_session_ids": stored.participant_session_ids,
    })
    return json_response(thread_view(stored), status=201)


async def list_threads(request: web.Request) -> web.Response:
    status = query_enum(request, "status", ThreadStatus)
    limit = query_int(request, "limit", 100, 1, 1000)
    threads = await request.app[THREADS].list(status=status, limit=limit)
    return json_response([thread_view(t) for t in threads])


async def get_thread(request: web.Request) -> web.Response:
    t = await request.app[THREADS].get(request.match_info["id"])
    if t is None:
        raise NotFound("thread_not_found", f"no thread with id {request.match_info['id']!r}")
    return json_response(thread_view(t))


async def _close(request: web.Request, thread_id: str, *, again_ok: bool) -> Thread:
    closing = await request.app[THREADS].close(thread_id)
    if closing.thread is None:
        raise NotFound("thread_not_found", f"no thread with id {thread_id!r}")
    if not closing.applied:
        if again_ok:
            return closing.thread
        raise Conflict("illegal_transition", f"thread {thread_id} is already closed")
    t = closing.thread
    await _publish(request, "thread.closed", {
        "thread_id": t.id, "topic": t.topic, "message_count": t.message_count,
    })
    return t


async def close_thread(request: web.Request) -> web.Response:
    await json_object(request)  # no fields yet, but a malformed body is still refused
    return json_response(thread_view(await _close(request, request.match_info["id"], again_ok=False)))


async def patch_thread(request: web.Request) -> web.Response:
    """The Node.js CLI's ``deliberate end``: ``{"status": "closed"}``. Closing a closed
    thread changes nothing and is no error there. Its ``message_count`` is not taken:
    here the count is the number of deliveries carrying the thread's id."""
    data = await json_object(request)
    status = opt(data, "status", str)
    opt(data, "message_count", int)
    if status not in (None, "closed"):
        raise BadRequest("invalid_field", "status can only be set to closed")
    thread_id = request.match_info["id"]
    if status is None:
        t = await request.app[THREADS].get(thread_id)
        if t is None:
            raise NotFound("thread_not_found", f"no thread with id {thread_id!r}")
    else:
        t = await _close(request, thread_id, again_ok=True)
    return json_response({"success": True, **thread_view(t)})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/threads", open_thread)
    app.router.add_get("/api/threads", list_threads)
    app.router.add_get("/api/threads/{id}", get_thread)
    app.router.add_post("/api/threads/{id}/close", close_thread)
    app.router.add_patch("/api/threads/{id}", patch_thread)  # the Node.js CLI's `deliberate end`
