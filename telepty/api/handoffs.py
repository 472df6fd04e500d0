"""Handoff routes: parse → store → publish → render.

A handoff moves created → claimed → executing → completed and nowhere else; any other
request is a 409 that changes nothing. Every accepted step is on disk before its
``handoff.<status>`` event is published and before the caller hears back.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from telepty.api.body import json_object, json_response, opt, query_enum, query_int, req
from telepty.api.keys import BUS, HANDOFFS
from telepty.errors import BadRequest, Conflict, NotFound
from telepty.store.handoffs import REQUIRED_BEFORE, Handoff, HandoffStatus

log = logging.getLogger("telepty.api.handoffs")

# Ids and names callers choose: session ids (maybe with @host), deliberation ids, uuids.
NAME_RE = re.compile(r"^[A-Za-z0-9._:@/-]{1,200}\Z")  # \Z: "$" would let a trailing newline in
MAX_TASKS = 1000
MAX_TASK_COUNT = 2**31 - 1  # a count given without the tasks; larger would not fit the store

_ACTIONS = {
    "claim": HandoffStatus.CLAIMED,
    "executing": HandoffStatus.EXECUTING,
    "complete": HandoffStatus.COMPLETED,
}


def name_field(data: dict[str, Any], key: str) -> str | None:
    value = opt(data, key, str)
    if value is not None and not NAME_RE.match(value):
        raise BadRequest(
            "invalid_field", f"{key} must be 1-200 characters of A-Z a-z 0-9 . _ : @ / - (got {value!r})"
        )
    return value


def parse_handoff(data: dict[str, Any]) -> Handoff:
    tasks = opt(data, "tasks", list)
    task_count = opt(data, "task_count", int)
    if tasks is None and task_count is None:
        raise BadRequest("missing_field", "tasks (an array) or task_count is required")
    if tasks is not None and len(tasks) > MAX_TASKS:
        raise BadRequest("invalid_field", f"tasks may hold at most {MAX_TASKS} entries")
    if task_count is not None and not 0 <= task_count <= MAX_TASK_COUNT:
        raise BadRequest("invalid_field", f"task_count must be an integer from 0 to {MAX_TASK_COUNT}")
    if tasks is not None and task_count is not None and task_count != len(tasks):
        raise BadRequest(
            "invalid_field", f"task_count is {task_count} but tasks holds {len(tasks)} entries"
        )
    h = Handoff(
        source_session_id=name_field(data, "source_session_id"),
        deliberation_id=name_field(data, "deliberation_id"),
        auto_execute=opt(data, "auto_execute", bool, False),
        tasks=tasks if tasks is not None else [],
        task_count=task_count if task_count is not None else len(tasks or []),
        payload=opt(data, "payload", dict),
    )
    chosen = name_field(data, "handoff_id")
    if chosen is not None:
        h.id = chosen
    return h


async def _publish(request: web.Request, h: Handoff) -> None:
    """The step is already stored; a bus failure is logged, not turned into an error."""
    try:
        await request.app[BUS].emit(f"handoff.{h.status}", **h.event_fields())
    except Exception:
        log.exception("could not publish handoff.%s for %s", h.status, h.id)


async def create_handoff(request: web.Request) -> web.Response:
    h = parse_handoff(await json_object(request))
    if not await request.app[HANDOFFS].insert(h):
        raise Conflict("handoff_exists", f"a handoff with id {h.id!r} already exists")
    await _publish(request, h)
    return json_response(h.to_public(), status=201)


async def list_handoffs(request: web.Request) -> web.Response:
    status = query_enum(request, "status", HandoffStatus)
    limit = query_int(request, "limit", 100, 1, 1000)
    handoffs = await request.app[HANDOFFS].list(status=status, limit=limit)
    return json_response([h.to_public() for h in handoffs])


async def get_handoff(request: web.Request) -> web.Response:
    h = await request.app[HANDOFFS].get(request.match_info["id"])
    if h is None:
        raise NotFound("handoff_not_found", f"no handoff with id {request.match_info['id']!r}")
    return json_response(h.to_public())


async def advance_handoff(request: web.Request) -> web.Response:
    handoff_id = request.match_info["id"]
    to = _ACTIONS.get(request.match_info["action"])
    if to is None:
        raise NotFound("not_found", f"no such handoff action {request.match_info['action']!r}")
    body = await json_object(request)
    claimed_by = req(body, "claimed_by", str) if to is HandoffStatus.CLAIMED else None
    if claimed_by is not None and not NAME_RE.match(claimed_by):
        raise BadRequest("invalid_field", f"claimed_by must be 1-200 characters of A-Z a-z 0-9 . _ : @ / - "
                         f"(got {claimed_by!r})")
    result = body.get("result") if to is HandoffStatus.COMPLETED else None
    moved = await request.app[HANDOFFS].transition(handoff_id, to, claimed_by=claimed_by, result=result)
    if moved.handoff is None:
        raise NotFound("handoff_not_found", f"no handoff with id {handoff_id!r}")
    if not moved.applied:
        raise Conflict(
            "illegal_transition",
            f"handoff {handoff_id} is {moved.handoff.status}; {to} needs it {REQUIRED_BEFORE[to]}",
        )
    await _publish(request, moved.handoff)
    return json_response(moved.handoff.to_public())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/handoffs", create_handoff)
    app.router.add_get("/api/handoffs", list_handoffs)
    app.router.add_get("/api/handoffs/{id}", get_handoff)
    app.router.add_post("/api/handoffs/{id}/{action:claim|executing|complete}", advance_handoff)
