"""``/api/handoff``: the Node.js telepty's handoff routes, over our handoffs.

The Node.js CLI's ``handoff list|drop|claim|status|get`` use these. They are views of
the same persisted handoffs as ``/api/handoffs`` (one store, one state machine, the
same ``handoff.<status>`` events), in the old words:

* a handoff is ``pending`` until claimed (ours says ``created``);
* the body of ``drop`` is a ``synthesis`` object: its ``tasks`` become the handoff's
  tasks, and the whole synthesis is kept (``payload.synthesis``) and given back;
* ``PATCH /api/handoff/{id}`` moves it on (``executing``, ``completed``). There is no
  ``failed`` state here: that is refused (409) instead of half-supported. Progress
  ``message``s are accepted and not kept (``progress`` is always empty).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from telepty.api.body import json_object, json_response, opt, req
from telepty.api.handoffs import MAX_TASKS, NAME_RE, _publish, name_field
from telepty.api.keys import HANDOFFS
from telepty.errors import BadRequest, Conflict, NotFound
from telepty.store.handoffs import REQUIRED_BEFORE, Handoff, HandoffStatus

MAX_MESSAGE = 10_000
_V1_STATUS = {HandoffStatus.CREATED: "pending"}
_FROM_V1 = {"pending": HandoffStatus.CREATED, "claimed": HandoffStatus.CLAIMED,
            "executing": HandoffStatus.EXECUTING, "completed": HandoffStatus.COMPLETED}


def _status(h: Handoff) -> str:
    return _V1_STATUS.get(h.status, str(h.status))


def _synthesis(h: Handoff) -> dict[str, Any]:
    kept = (h.payload or {}).get("synthesis")
    return kept if isinstance(kept, dict) else {"tasks": h.tasks}


def summary_v1(h: Handoff) -> dict[str, Any]:
    return {"id": h.id, "status": _status(h), "deliberation_id": h.deliberation_id,
            "source_session_id": h.source_session_id, "auto_execute": h.auto_execute,
            "claimed_by": h.claimed_by, "task_count": h.task_count, "created_at": h.created_at,
            "updated_at": h.updated_at}


def detail_v1(h: Handoff) -> dict[str, Any]:
    return {**summary_v1(h), "synthesis": _synthesis(h), "progress": [], "result": h.result}


async def _get(request: web.Request) -> Handoff:
    h = await request.app[HANDOFFS].get(request.match_info["id"])
    if h is None:
        raise NotFound("handoff_not_found", f"no handoff with id {request.match_info['id']!r}")
    return h


async def drop(request: web.Request) -> web.Response:
    data = await json_object(request)
    synthesis = req(data, "synthesis", dict)
    tasks = opt(synthesis, "tasks", list, [])
    if len(tasks) > MAX_TASKS:
        raise BadRequest("invalid_field", f"synthesis.tasks may hold at most {MAX_TASKS} entries")
    h = Handoff(
        source_session_id=name_field(data, "source_session_id"),
        deliberation_id=name_field(data, "deliberation_id"),
        auto_execute=opt(data, "auto_execute", bool, False),
        tasks=tasks,
        task_count=len(tasks),
        payload={"synthesis": synthesis},
    )
    if not await request.app[HANDOFFS].insert(h):  # pragma: no cover - a fresh uuid
        raise Conflict("handoff_exists", f"a handoff with id {h.id!r} already exists")
    await _publish(request, h)
    return json_response({"handoff_id": h.id, "status": _status(h)}, status=201)


async def list_v1(request: web.Request) -> web.Response:
    raw = request.query.get("status") or None
    status = None
    if raw is not None:
        if raw == "failed":
            return json_response([])  # a state this daemon's handoffs never reach
        if raw not in _FROM_V1:
            raise BadRequest("invalid_query", f"status must be one of {', '.join([*_FROM_V1, 'failed'])}")
        status = _FROM_V1[raw]
    return json_response([summary_v1(h) for h in await request.app[HANDOFFS].list(status=status, limit=1000)])


async def get_v1(request: web.Request) -> web.Response:
    return json_response(detail_v1(await _get(request)))


async def _move(request: web.Request, to: HandoffStatus, *, claimed_by: str | None = None,
                result: Any = None) -> Handoff:
    handoff_id = request.match_info["id"]
    moved = await request.app[HANDOFFS].transition(handoff_id, to, claimed_by=claimed_by, result=result)
    if moved.handoff is None:
        raise NotFound("handoff_not_found", f"no handoff with id {handoff_id!r}")
    if not moved.applied:
        raise Conflict("illegal_transition", f"handoff {handoff_id} is {_status(moved.handoff)}; "
                       f"{to} needs it {_V1_STATUS.get(REQUIRED_BEFORE[to], REQUIRED_BEFORE[to])}")
    await _publish(request, moved.handoff)
    return moved.handoff


async def claim_v1(request: web.Request) -> web.Response:
    data = await json_object(request)
    agent = req(data, "agent_session_id", str)
    if not NAME_RE.match(agent):
        raise BadRequest("invalid_field", "agent_session_id must be 1-200 characters of "
                         "A-Z a-z 0-9 . _ : @ / -")
    h = await _move(request, HandoffStatus.CLAIMED, claimed_by=agent)
    return json_response({"success": True, "handoff_id": h.id, "status": _status(h)})


async def patch_v1(request: web.Request) -> web.Response:
    data = await json_object(request)
    status = opt(data, "status", str)
    message = opt(data, "message", str)
    if message is not None and len(message) > MAX_MESSAGE:
        raise BadRequest("invalid_field", f"message may be at most {MAX_MESSAGE} characters")
    if status is None:
        h = await _get(request)  # a progress message alone: nothing moves
    elif status == "executing":
        h = await _move(request, HandoffStatus.EXECUTING)
    elif status == "completed":
        h = await _move(request, HandoffStatus.COMPLETED, result=data.get("result"))
    elif status == "failed":
        await _get(request)
        raise Conflict("illegal_transition", "this daemon's handoffs have no failed state; complete "
                       "the handoff with a result that says it failed")
    elif status == "claimed":
        raise BadRequest("invalid_field", "claim with POST /api/handoff/{id}/claim and agent_session_id")
    else:
        raise BadRequest("invalid_field", "status must be executing or completed")
    return json_response({"success": True, "handoff_id": h.id, "status": _status(h)})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/handoff", drop)
    app.router.add_get("/api/handoff", list_v1)
    app.router.add_get("/api/handoff/{id}", get_v1)
    app.router.add_post("/api/handoff/{id}/claim", claim_v1)
    app.router.add_patch("/api/handoff/{id}", patch_v1)
