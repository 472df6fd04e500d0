"""Inject and delivery routes: parse → engine → render.

An inject is answered only after its delivery record is on disk, so a 202 is a
promise the daemon keeps across a crash.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from telepty.api.body import json_object, json_response, query_int
from telepty.api.keys import CONFIG, DELIVERIES, INTAKE
from telepty.api.models import PressEnter, read
from telepty.api.node_dialect import speaks_node
from telepty.api.spec import (
    COMPAT,
    HOP,
    IDEMPOTENCY,
    ORIGIN_QUERY,
    SESSION_TOKEN,
    Route,
    answer,
    enum,
    limit,
    listing,
    ok,
    path_id,
    query,
    ref,
    string,
)
from telepty.api.submission import hop_of, key_of, origin_of, token_of
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.intake import Submission
from telepty.delivery.model import Delivery, DeliveryStatus
from telepty.delivery.request import InjectBody, KeyPress
from telepty.errors import BadRequest, ErrorCode

ENTER_WAIT_S = 15.0  # how long an Enter asked for by a Node.js client is waited for
ENTER_POLL_S = 0.25


def public(request: web.Request, delivery: Delivery, *, include_prompt: bool = False) -> dict[str, Any]:
    """A delivery as the API shows it: screen text in its evidence only under the audit
    log's content rule (TELEPTY_AUDIT_CONTENT), since the screen shows the prompt."""
    return delivery.to_public(include_prompt=include_prompt,
                              screen_text=request.app[CONFIG].audit_content)


async def press_enter(request: web.Request, target: str) -> web.Response:
    """Enter, as a keys delivery through the session's queue, waited for a while.

    For the Node.js CLI's ``enter``, ``send-key … enter`` and ``inject --submit``: its
    daemon wrote a carriage return at once (again ``retries`` times, on a timer). Here
    the Enter waits its turn behind a prompt pasted with ``no_enter`` and passes the same
    checks as every keys delivery; it is pressed once, never repeated on a timer.
    """
    accepted = await request.app[INTAKE].accept(Submission(
        target=target, origin=origin_of(request), keys=KeyPress(("Enter",)), idempotency_key=key_of(request),
        sender_token=token_of(request),
    ))
    delivery = accepted.delivery
    ack = {"delivery_id": delivery.id, "status": str(delivery.status),
           "session_id": delivery.session_id, "kind": str(delivery.kind)}
    delivery = await _until_settled(request.app[DELIVERIES], delivery, ENTER_WAIT_S)
    return await delivery_answer(request, delivery, wait=True, wait_s=0, accepted=ack,
                                 extra={"strategy": "keys"})


async def _until_settled(engine: DeliveryEngine, d: Delivery, limit_s: float) -> Delivery:
    """The record once final, or once it waits for something slow (a retry, a hold: the
    caller hears 202 at once rather than after the limit), or when ``limit_s`` runs out."""
    deadline = time.monotonic() + limit_s
    while not d.final and d.status not in (DeliveryStatus.RETRYING, DeliveryStatus.HELD):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        d = await engine.wait(d.id, min(ENTER_POLL_S, left))
    return d


async def inject(request: web.Request) -> web.Response:
    body = await json_object(request)
    if speaks_node(request) and body.get("prompt") == "" and body.get("no_enter") is not True:
        # The Node.js CLI's `enter`: an empty prompt meant "press Enter" to its daemon.
        return await press_enter(request, request.match_info["id"])
    req = InjectBody.parse(body).request(max_prompt_bytes=request.app[CONFIG].max_prompt_bytes)
    accepted = await request.app[INTAKE].accept(Submission(
        target=request.match_info["id"], origin=origin_of(request), request=req,
        idempotency_key=key_of(request), sender_token=token_of(request), hop=hop_of(request),
    ))
    delivery = accepted.delivery
    ack = {"delivery_id": delivery.id, "status": str(delivery.status),
           "session_id": delivery.session_id, "verified_sender": delivery.verified_sender,
           "spoofed": delivery.spoofed}
    # The Node.js daemon answered {success, inject_id}; its clients get those names too.
    extra = {"success": True, "inject_id": delivery.id} if speaks_node(request) else None
    return await delivery_answer(request, delivery, wait=req.wait, wait_s=req.timeout, accepted=ack,
                                 extra=extra, warnings=accepted.warnings)


async def delivery_answer(
    request: web.Request, delivery: Delivery, *, wait: bool, wait_s: float, accepted: dict[str, Any],
    extra: dict[str, Any] | None = None, warnings: Sequence[str] = (),
) -> web.Response:
    """What inject, reply and keys answer: 202 with ``accepted`` at once; with ``wait``,
    the record once final (200 delivered, the failure's own status otherwise), or as it
    stands when ``wait_s`` runs out (202)."""
    extra = extra or {}
    if not wait:
        out, status = {**accepted, **extra}, 202
    else:
        delivery = await request.app[DELIVERIES].wait(delivery.id, wait_s)
        out = {**public(request, delivery), **extra}
        if not delivery.final:
            status = 202
        elif delivery.status is DeliveryStatus.DELIVERED:
            status = 200
        else:
            out["error"] = delivery.reason or str(delivery.status)
            status = _failure_status(delivery.reason)
    if warnings:
        out["warnings"] = list(warnings)
    return json_response(out, status=status)


def _failure_status(reason: str | None) -> int:
    if reason == ErrorCode.TMUX_UNAVAILABLE:
        return 503
    if reason == ErrorCode.CANCELLED:
        return 409
    return 422


async def submit(request: web.Request) -> web.Response:
    """``POST /api/sessions/{id}/submit``: the Node.js CLI's Enter (see ``press_enter``).
    Its ``pre_delay_ms``, ``retries`` and ``retry_delay_ms`` are checked and not used:
    the queue orders the Enter after the paste, and it is pressed once."""
    await read(request, PressEnter)
    return await press_enter(request, request.match_info["id"])


async def get_delivery(request: web.Request) -> web.Response:
    delivery = await request.app[DELIVERIES].get(request.match_info["id"])
    include_prompt = request.query.get("prompt") in {"1", "true"}
    return json_response(public(request, delivery, include_prompt=include_prompt))


async def list_deliveries(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in DeliveryStatus}:
        raise BadRequest(ErrorCode.INVALID_QUERY, f"unknown status {status!r}")
    limit = query_int(request, "limit", 50, 1, 1000)
    items = await request.app[DELIVERIES].list(
        session=request.query.get("session") or None, status=status, limit=limit
    )
    return json_response([public(request, d) for d in items])


async def cancel_delivery(request: web.Request) -> web.Response:
    engine = request.app[DELIVERIES]
    held = engine.holding(request.match_info["id"])
    delivery = await engine.cancel(request.match_info["id"])
    body = public(request, delivery)
    if held is not None:
        body["hold_released"] = held  # it was final already: what ended is the hold on that session
    return json_response(body)


# What the routes that create deliveries share in the API document.
INJECT_ERRORS = {
    400: "missing_field / invalid_field / invalid_prompt / invalid_header / invalid_origin / invalid_target",
    403: "sender_spoofed / invalid_session_token (strict mode)",
    404: "session_not_found / unknown_peer",
    413: "too_large: the prompt (with its reply footer) is over the limit",
    503: "tmux_unavailable: the session's pane needs tmux, which is missing",
}
# 202 at once, or with wait: true the final record (200 delivered; 409 cancelled,
# 422 failed, 503 tmux_unavailable).
DELIVERY_ANSWERS = {
    200: ok("Delivery", "wait: true and the delivery was delivered"),
    202: ok("DeliveryAck", "accepted and stored; delivery continues in the background"),
    409: answer({"anyOf": [ref("Error"), ref("DeliveryFailure")]}, "cancelled while waiting; or a conflict"),
    422: answer(ref("DeliveryFailure"), "wait: true and the delivery failed (reason in error)"),
    503: answer({"anyOf": [ref("Error"), ref("DeliveryFailure")]}, INJECT_ERRORS[503]),
}
TARGET = path_id(description="a session id or alias; id@host relays to a peer")
DELIVERY_ID = path_id(description="a delivery id")

ROUTES = (
    Route("POST", "/api/sessions/{id}/inject", inject, "inject", "Deliver a prompt into a session's terminal",
          "deliveries", params=(TARGET, IDEMPOTENCY, SESSION_TOKEN, HOP, ORIGIN_QUERY, COMPAT),
          body=InjectBody, ok=DELIVERY_ANSWERS,
          errors={**INJECT_ERRORS, 508: "hop_limit: relaying again would pass TELEPTY_HOP_LIMIT"}),
    Route("POST", "/api/sessions/{id}/submit", submit, "submit",
          "Press Enter in a session: a keys delivery, waited for up to 15 s (the Node.js CLI's enter, "
          "send-key enter and inject --submit)", "deliveries",
          params=(TARGET, IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY), body=PressEnter, body_required=False,
          ok=DELIVERY_ANSWERS, errors={400: "invalid_field / invalid_header / invalid_origin",
                                       404: "session_not_found", 503: INJECT_ERRORS[503]}),
    Route("GET", "/api/deliveries", list_deliveries, "listDeliveries", "Recent deliveries, newest first",
          "deliveries", params=(query("session", string(), "only this session id"),
                                query("status", enum(DeliveryStatus), "only this status"), limit(50, 1000)),
          ok={200: listing("Delivery")}, errors={400: "invalid_query"}),
    Route("GET", "/api/deliveries/{id}", get_delivery, "getDelivery", "One delivery record", "deliveries",
          params=(DELIVERY_ID, query("prompt", string(), "1 or true: include the prompt text")),
          ok={200: ok("Delivery")}, errors={404: "delivery_not_found"}),
    Route("DELETE", "/api/deliveries/{id}", cancel_delivery, "cancelDelivery",
          "Cancel a delivery that has not been written yet, or end the hold a failed one put on its session",
          "deliveries", params=(DELIVERY_ID,), ok={200: ok("Delivery", "cancelled")},
          errors={404: "delivery_not_found", 409: "not_cancellable: already final or writing"}),
)
