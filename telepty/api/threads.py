"""Thread routes: parse → store → publish → render.

A thread is a named conversation among sessions; messages join it by carrying its id
as ``thread_id`` on an inject, and ``message_count`` counts exactly those deliveries.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from telepty.api.body import json_response, query_enum, query_int
from telepty.api.keys import BUS, THREADS
from telepty.api.models import Empty, NewThread, PatchThread, read
from telepty.api.spec import Route, answer, boolean, enum, limit, listing, obj, ok, path_id, query, ref
from telepty.errors import Conflict, ErrorCode, NotFound
from telepty.store.threads import Thread, ThreadStatus

log = logging.getLogger("telepty.api.threads")



def new_thread(body: NewThread) -> Thread:
    t = Thread(
        topic=body.topic,
        orchestrator_session_id=body.orchestrator_session_id,
        # keep order, drop repeats
        participant_session_ids=list(dict.fromkeys(body.participant_session_ids or [])),
    )
    if body.thread_id is not None:
        t.id = body.thread_id
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
    t = new_thread(await read(request, NewThread))
    if not await threads.insert(t):
        raise Conflict(ErrorCode.THREAD_EXISTS, f"a thread with id {t.id!r} already exists")
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
        raise NotFound(ErrorCode.THREAD_NOT_FOUND, f"no thread with id {request.match_info['id']!r}")
    return json_response(thread_view(t))


async def _close(request: web.Request, thread_id: str, *, again_ok: bool) -> Thread:
    closing = await request.app[THREADS].close(thread_id)
    if closing.thread is None:
        raise NotFound(ErrorCode.THREAD_NOT_FOUND, f"no thread with id {thread_id!r}")
    if not closing.applied:
        if again_ok:
            return closing.thread
        raise Conflict(ErrorCode.ILLEGAL_TRANSITION, f"thread {thread_id} is already closed")
    t = closing.thread
    await _publish(request, "thread.closed", {
        "thread_id": t.id, "topic": t.topic, "message_count": t.message_count,
    })
    return t


async def close_thread(request: web.Request) -> web.Response:
    await read(request, Empty)
    return json_response(thread_view(await _close(request, request.match_info["id"], again_ok=False)))


async def patch_thread(request: web.Request) -> web.Response:
    """The Node.js CLI's ``deliberate end``: ``{"status": "closed"}``. Closing a closed
    thread changes nothing and is no error there. Its ``message_count`` is not taken:
    here the count is the number of deliveries carrying the thread's id."""
    status = (await read(request, PatchThread)).status
    thread_id = request.match_info["id"]
    if status is None:
        t = await request.app[THREADS].get(thread_id)
        if t is None:
            raise NotFound(ErrorCode.THREAD_NOT_FOUND, f"no thread with id {thread_id!r}")
    else:
        t = await _close(request, thread_id, again_ok=True)
    return json_response({"success": True, **thread_view(t)})


TID = path_id(description="a thread id")

ROUTES = (
    Route("POST", "/api/threads", open_thread, "openThread", "Open a thread", "threads", body=NewThread,
          ok={201: ok("Thread", "opened")},
          errors={400: "missing_field / invalid_field", 409: "thread_exists"}),
    Route("GET", "/api/threads", list_threads, "listThreads", "Threads, newest first", "threads",
          params=(query("status", enum(ThreadStatus), "open or closed"), limit(100, 1000)),
          ok={200: listing("Thread")}, errors={400: "invalid_query"}),
    Route("GET", "/api/threads/{id}", get_thread, "getThread", "One thread", "threads", params=(TID,),
          ok={200: ok("Thread")}, errors={404: "thread_not_found"}),
    Route("POST", "/api/threads/{id}/close", close_thread, "closeThread", "Close a thread", "threads",
          params=(TID,), body=Empty, body_required=False, ok={200: ok("Thread", "closed")},
          errors={404: "thread_not_found", 409: "illegal_transition: already closed"}),
    Route("PATCH", "/api/threads/{id}", patch_thread, "patchThread",
          "Close a thread the Node.js CLI's way ({status: closed}; closing a closed thread is no error)",
          "threads", params=(TID,), body=PatchThread, body_required=False,
          ok={200: answer({"allOf": [ref("Thread"), obj({"success": boolean(const=True)}, ("success",))]},
                          "the thread")},
          errors={400: "invalid_field", 404: "thread_not_found"}),
)
