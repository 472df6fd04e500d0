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

from telepty.api.body import json_response
from telepty.api.handoffs import HID, publish_step
from telepty.api.keys import HANDOFFS
from telepty.api.models import ClaimHandoffNode, DropHandoff, MoveHandoffNode, read
from telepty.api.spec import (
    TIMESTAMP,
    Route,
    answer,
    array,
    boolean,
    enum,
    integer,
    nullable,
    obj,
    query,
    string,
)
from telepty.errors import BadRequest, Conflict, ErrorCode, NotFound
from telepty.store.handoffs import REQUIRED_BEFORE, Handoff, HandoffStatus

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
        raise NotFound(ErrorCode.HANDOFF_NOT_FOUND, f"no handoff with id {request.match_info['id']!r}")
    return h


async def drop(request: web.Request) -> web.Response:
    body = await read(request, DropHandoff)
    synthesis = body.synthesis.model_dump(exclude_unset=True)
    tasks = list(body.synthesis.tasks or [])
    h = Handoff(
        source_session_id=body.source_session_id,
        deliberation_id=body.deliberation_id,
        auto_execute=bool(body.auto_execute),
        tasks=tasks,
        task_count=len(tasks),
        payload={"synthesis": synthesis},
    )
    if not await request.app[HANDOFFS].insert(h):  # pragma: no cover - a fresh uuid
        raise Conflict(ErrorCode.HANDOFF_EXISTS, f"a handoff with id {h.id!r} already exists")
    await publish_step(request, h)
    return json_response({"handoff_id": h.id, "status": _status(h)}, status=201)


async def list_v1(request: web.Request) -> web.Response:
    raw = request.query.get("status") or None
    status = None
    if raw is not None:
        if raw == "failed":
            return json_response([])  # a state this daemon's handoffs never reach
        if raw not in _FROM_V1:
            raise BadRequest(ErrorCode.INVALID_QUERY,
                             f"status must be one of {', '.join([*_FROM_V1, 'failed'])}")
        status = _FROM_V1[raw]
    return json_response([summary_v1(h) for h in await request.app[HANDOFFS].list(status=status, limit=1000)])


async def get_v1(request: web.Request) -> web.Response:
    return json_response(detail_v1(await _get(request)))


async def _move(request: web.Request, to: HandoffStatus, *, claimed_by: str | None = None,
                result: Any = None) -> Handoff:
    handoff_id = request.match_info["id"]
    moved = await request.app[HANDOFFS].transition(handoff_id, to, claimed_by=claimed_by, result=result)
    if moved.handoff is None:
        raise NotFound(ErrorCode.HANDOFF_NOT_FOUND, f"no handoff with id {handoff_id!r}")
    if not moved.applied:
        raise Conflict(ErrorCode.ILLEGAL_TRANSITION, f"handoff {handoff_id} is {_status(moved.handoff)}; "
                       f"{to} needs it {_V1_STATUS.get(REQUIRED_BEFORE[to], REQUIRED_BEFORE[to])}")
    await publish_step(request, moved.handoff)
    return moved.handoff


async def claim_v1(request: web.Request) -> web.Response:
    agent = (await read(request, ClaimHandoffNode)).agent_session_id
    h = await _move(request, HandoffStatus.CLAIMED, claimed_by=agent)
    return json_response({"success": True, "handoff_id": h.id, "status": _status(h)})


async def patch_v1(request: web.Request) -> web.Response:
    body = await read(request, MoveHandoffNode)  # a progress message is accepted and not kept
    status = body.status
    if status is None:
        h = await _get(request)  # a progress message alone: nothing moves
    elif status == "executing":
        h = await _move(request, HandoffStatus.EXECUTING)
    elif status == "completed":
        h = await _move(request, HandoffStatus.COMPLETED, result=body.result)
    elif status == "failed":
        await _get(request)
        raise Conflict(ErrorCode.ILLEGAL_TRANSITION, "this daemon's handoffs have no failed state; complete "
                       "the handoff with a result that says it failed")
    elif status == "claimed":
        raise BadRequest(ErrorCode.INVALID_FIELD,
                         "claim with POST /api/handoff/{id}/claim and agent_session_id")
    else:
        raise BadRequest(ErrorCode.INVALID_FIELD, "status must be executing or completed")
    return json_response({"success": True, "handoff_id": h.id, "status": _status(h)})


V1_SUMMARY = obj({
    "id": string(), "status": string(), "deliberation_id": nullable(string()),
    "source_session_id": nullable(string()), "auto_execute": boolean(), "claimed_by": nullable(string()),
    "task_count": integer(0), "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
}, ("id", "status", "task_count", "created_at"))
V1_MOVED = answer(obj({"success": boolean(const=True), "handoff_id": string(), "status": string()},
                      ("success", "handoff_id", "status")), "moved")

ROUTES = (
    Route("POST", "/api/handoff", drop, "dropHandoffNode",
          "Create a handoff from a synthesis (the Node.js CLI's handoff drop)", "handoffs", body=DropHandoff,
          ok={201: answer(obj({"handoff_id": string(), "status": string(const="pending")},
                              ("handoff_id", "status")), "created")},
          errors={400: "missing_field / invalid_field"}),
    Route("GET", "/api/handoff", list_v1, "listHandoffsNode",
          "Handoffs in the Node.js CLI's words (pending = created)", "handoffs",
          params=(query("status", enum(["pending", "claimed", "executing", "completed", "failed"]),
                        "only this status"),),
          ok={200: answer(array(V1_SUMMARY), "newest first")}, errors={400: "invalid_query"}),
    Route("GET", "/api/handoff/{id}", get_v1, "getHandoffNode",
          "One handoff with its synthesis (the Node.js CLI's handoff status/get)", "handoffs", params=(HID,),
          ok={200: answer({"allOf": [V1_SUMMARY, obj({
              "synthesis": {"type": "object"}, "progress": array({}), "result": {}},
              ("synthesis", "progress"))]}, "the handoff")},
          errors={404: "handoff_not_found"}),
    Route("POST", "/api/handoff/{id}/claim", claim_v1, "claimHandoffNode",
          "Claim a pending handoff (the Node.js CLI's handoff claim)", "handoffs", params=(HID,),
          body=ClaimHandoffNode, ok={200: V1_MOVED},
          errors={400: "missing_field / invalid_field", 404: "handoff_not_found",
                  409: "illegal_transition: not pending"}),
    Route("PATCH", "/api/handoff/{id}", patch_v1, "moveHandoffNode",
          "Move a handoff on: executing, completed (there is no failed here)", "handoffs", params=(HID,),
          body=MoveHandoffNode, body_required=False, ok={200: V1_MOVED},
          errors={400: "invalid_field", 404: "handoff_not_found",
                  409: "illegal_transition (failed is one: no such state here)"}),
)
