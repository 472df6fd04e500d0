"""Handoff routes: parse → store → publish → render.

A handoff moves created → claimed → executing → completed and nowhere else; any other
request is a 409 that changes nothing. Every accepted step is on disk before its
``handoff.<status>`` event is published and before the caller hears back.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from telepty.api.body import json_response, query_enum, query_int
from telepty.api.keys import BUS, HANDOFFS
from telepty.api.models import ClaimHandoff, CompleteHandoff, Empty, NewHandoff, read
from telepty.api.spec import Route, enum, limit, listing, ok, path_id, query
from telepty.errors import Conflict, ErrorCode, NotFound
from telepty.store.handoffs import REQUIRED_BEFORE, Handoff, HandoffStatus

log = logging.getLogger("telepty.api.handoffs")

def new_handoff(body: NewHandoff) -> Handoff:
    tasks = body.tasks
    h = Handoff(
        source_session_id=body.source_session_id,
        deliberation_id=body.deliberation_id,
        auto_execute=bool(body.auto_execute),
        tasks=list(tasks) if tasks is not None else [],
        task_count=body.task_count if body.task_count is not None else len(tasks or []),
        payload=body.payload,
    )
    if body.handoff_id is not None:
        h.id = body.handoff_id
    return h


async def publish_step(request: web.Request, h: Handoff) -> None:
    """The step is already stored; a bus failure is logged, not turned into an error."""
    try:
        await request.app[BUS].emit(f"handoff.{h.status}", **h.event_fields())
    except Exception:
        log.exception("could not publish handoff.%s for %s", h.status, h.id)


async def create_handoff(request: web.Request) -> web.Response:
    h = new_handoff(await read(request, NewHandoff))
    if not await request.app[HANDOFFS].insert(h):
        raise Conflict(ErrorCode.HANDOFF_EXISTS, f"a handoff with id {h.id!r} already exists")
    await publish_step(request, h)
    return json_response(h.to_public(), status=201)


async def list_handoffs(request: web.Request) -> web.Response:
    status = query_enum(request, "status", HandoffStatus)
    limit = query_int(request, "limit", 100, 1, 1000)
    handoffs = await request.app[HANDOFFS].list(status=status, limit=limit)
    return json_response([h.to_public() for h in handoffs])


async def get_handoff(request: web.Request) -> web.Response:
    h = await request.app[HANDOFFS].get(request.match_info["id"])
    if h is None:
        raise NotFound(ErrorCode.HANDOFF_NOT_FOUND, f"no handoff with id {request.match_info['id']!r}")
    return json_response(h.to_public())


async def claim_handoff(request: web.Request) -> web.Response:
    body = await read(request, ClaimHandoff)
    return await _advance(request, HandoffStatus.CLAIMED, claimed_by=body.claimed_by)


async def start_handoff(request: web.Request) -> web.Response:
    await read(request, Empty)
    return await _advance(request, HandoffStatus.EXECUTING)


async def complete_handoff(request: web.Request) -> web.Response:
    body = await read(request, CompleteHandoff)
    return await _advance(request, HandoffStatus.COMPLETED, result=body.result)


async def _advance(request: web.Request, to: HandoffStatus, *, claimed_by: str | None = None,
                   result: Any = None) -> web.Response:
    handoff_id = request.match_info["id"]
    moved = await request.app[HANDOFFS].transition(handoff_id, to, claimed_by=claimed_by, result=result)
    if moved.handoff is None:
        raise NotFound(ErrorCode.HANDOFF_NOT_FOUND, f"no handoff with id {handoff_id!r}")
    if not moved.applied:
        raise Conflict(
            ErrorCode.ILLEGAL_TRANSITION,
            f"handoff {handoff_id} is {moved.handoff.status}; {to} needs it {REQUIRED_BEFORE[to]}",
        )
    await publish_step(request, moved.handoff)
    return json_response(moved.handoff.to_public())


HID = path_id(description="a handoff id")
ADVANCE_ERRORS = {404: "handoff_not_found",
                  409: "illegal_transition: created → claimed → executing → completed only"}

ROUTES = (
    Route("POST", "/api/handoffs", create_handoff, "createHandoff", "Create a handoff", "handoffs",
          body=NewHandoff, ok={201: ok("Handoff", "created")},
          errors={400: "missing_field / invalid_field", 409: "handoff_exists: that handoff_id is taken"}),
    Route("GET", "/api/handoffs", list_handoffs, "listHandoffs", "Handoffs, newest first", "handoffs",
          params=(query("status", enum(HandoffStatus), "only this status"), limit(100, 1000)),
          ok={200: listing("Handoff")}, errors={400: "invalid_query"}),
    Route("GET", "/api/handoffs/{id}", get_handoff, "getHandoff", "One handoff", "handoffs", params=(HID,),
          ok={200: ok("Handoff")}, errors={404: "handoff_not_found"}),
    Route("POST", "/api/handoffs/{id}/claim", claim_handoff, "claimHandoff", "Claim a handoff", "handoffs",
          params=(HID,), body=ClaimHandoff, ok={200: ok("Handoff")},
          errors={**ADVANCE_ERRORS, 400: "missing_field / invalid_field"}),
    Route("POST", "/api/handoffs/{id}/executing", start_handoff, "startHandoff",
          "Mark a claimed handoff executing", "handoffs", params=(HID,), body=Empty, body_required=False,
          ok={200: ok("Handoff")}, errors=ADVANCE_ERRORS),
    Route("POST", "/api/handoffs/{id}/complete", complete_handoff, "completeHandoff",
          "Complete an executing handoff", "handoffs", params=(HID,), body=CompleteHandoff,
          body_required=False, ok={200: ok("Handoff")}, errors=ADVANCE_ERRORS),
)
