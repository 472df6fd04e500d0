"""Inject and delivery routes: parse → engine → render.

An inject is answered only after its delivery record is on disk, so a 202 is a
promise the daemon keeps across a crash.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web

from telepty.api.body import json_object, json_response, opt, query_int
from telepty.api.identity import check_claim, request_sender, with_footer
from telepty.api.keys import SERVICES
from telepty.api.node_dialect import speaks_node
from telepty.delivery.model import Delivery, DeliveryStatus, Origin
from telepty.delivery.request import parse_inject
from telepty.errors import BadRequest, Unavailable
from telepty.relay.peers import split_target
from telepty.relay.service import HOP_HEADER, incoming_hop

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 200
ENTER_WAIT_S = 15.0  # how long an Enter asked for by a Node.js client is waited for
ENTER_POLL_S = 0.25


def public(request: web.Request, delivery: Delivery, *, include_prompt: bool = False) -> dict[str, Any]:
    """A delivery as the API shows it: screen text in its evidence only under the audit
    log's content rule (TELEPTY_AUDIT_CONTENT), since the screen shows the prompt."""
    return delivery.to_public(include_prompt=include_prompt,
                              screen_text=request.app[SERVICES].config.audit_content)


def _origin(request: web.Request) -> Origin:
    value = request.query.get("origin") or request.headers.get("x-telepty-origin") or "api"
    try:
        origin = Origin(value)
    except ValueError:
        raise BadRequest("invalid_origin", f"origin must be api or cli, got {value!r}") from None
    if origin not in (Origin.API, Origin.CLI):
        # bus_auto_route and relay deliveries are made by the daemon itself.
        raise BadRequest("invalid_origin", f"origin {value!r} cannot be set by a caller")
    return origin


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        raise BadRequest("invalid_header", f"{IDEMPOTENCY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY} chars")
    return key


async def press_enter(request: web.Request, target: str) -> web.Response:
    """Enter, as a keys delivery through the session's queue, waited for a while.

    For the Node.js CLI's ``enter``, ``send-key … enter`` and ``inject --submit``: its
    daemon wrote a carriage return at once (again ``retries`` times, on a timer). Here
    the Enter waits its turn behind a prompt pasted with ``no_enter`` and passes the same
    checks as every keys delivery; it is pressed once, never repeated on a timer.
    """
    svc = request.app[SERVICES]
    key = _idempotency_key(request)
    session = svc.registry.resolve(target)
    if session.tmux_pane and not svc.tmux.server(session.tmux_socket).available():
        raise Unavailable("tmux_unavailable", f"session {session.id!r} lives in a tmux pane, "
                          f"but tmux ({svc.config.tmux_bin}) is not installed or not on PATH")
    sender = request_sender(request)
    delivery = await svc.deliveries.submit_keys(
        ["Enter"], target=target, origin=_origin(request), idempotency_key=key,
        verified_sender=sender.verified,
    )
    accepted = {"delivery_id": delivery.id, "status": str(delivery.status),
                "session_id": delivery.session_id, "kind": str(delivery.kind)}
    delivery = await _until_settled(svc, delivery, ENTER_WAIT_S)
    return await delivery_answer(request, delivery, wait=True, wait_s=0, accepted=accepted,
                                 extra={"strategy": "keys"})


async def _until_settled(svc: Any, d: Delivery, limit_s: float) -> Delivery:
    """The record once final, or once it waits for something slow (a retry, a hold: the
    caller hears 202 at once rather than after the limit), or when ``limit_s`` runs out."""
    deadline = time.monotonic() + limit_s
    while not d.final and d.status not in (DeliveryStatus.RETRYING, DeliveryStatus.HELD):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        d = await svc.deliveries.wait(d.id, min(ENTER_POLL_S, left))
    return d


async def inject(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    body = await json_object(request)
    if speaks_node(request) and body.get("prompt") == "" and body.get("no_enter") is not True:
        # The Node.js CLI's `enter`: an empty prompt meant "press Enter" to its daemon.
        return await press_enter(request, request.match_info["id"])
    req = parse_inject(body, max_prompt_bytes=svc.config.max_prompt_bytes)
    sender = request_sender(request)  # the session token, if the caller runs in a session
    key = _idempotency_key(request)
    target = request.match_info["id"]
    hop = incoming_hop(request.headers.get(HOP_HEADER))
    # id@host on another machine: 508 hop_limit / 404 unknown_peer before any record exists.
    remote = await svc.relay.check_remote(target, hop)
    origin = _origin(request)
    if remote is None:
        target = split_target(target)[0]  # id@<this machine> is plain id
        req = replace(with_footer(req, svc.config.max_prompt_bytes, sender.verified),
                      warnings=req.warnings + sender.warnings)
        session = svc.registry.resolve(target)
        if session.tmux_pane and not svc.tmux.server(session.tmux_socket).available():
            # Refused before a record exists: nothing was accepted, nothing is lost.
            raise Unavailable("tmux_unavailable", f"session {session.id!r} lives in a tmux pane, "
                              f"but tmux ({svc.config.tmux_bin}) is not installed or not on PATH")
    else:
        # The peer adds the reply footer; the local record is the relay's (origin relay).
        req = replace(req, warnings=req.warnings + sender.warnings)
        origin = Origin.RELAY
    check_claim(request, req.sender, sender)  # strict mode: 403 sender_spoofed, nothing stored
    delivery = await svc.deliveries.submit(
        req, target=target, origin=origin, idempotency_key=key, verified_sender=sender.verified,
    )
    if remote is not None:
        svc.relay.note_hop(delivery.id, hop + 1)
    accepted = {"delivery_id": delivery.id, "status": str(delivery.status),
                "session_id": delivery.session_id, "verified_sender": delivery.verified_sender,
                "spoofed": delivery.spoofed}
    # The Node.js daemon answered {success, inject_id}; its clients get those names too.
    extra = {"success": True, "inject_id": delivery.id} if speaks_node(request) else None
    return await delivery_answer(request, delivery, wait=req.wait, wait_s=req.timeout, accepted=accepted,
                                 extra=extra, warnings=req.warnings)


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
        delivery = await request.app[SERVICES].deliveries.wait(delivery.id, wait_s)
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
    if reason == "tmux_unavailable":
        return 503
    if reason in {"cancelled"}:
        return 409
    return 422


async def submit(request: web.Request) -> web.Response:
    """``POST /api/sessions/{id}/submit``: the Node.js CLI's Enter (see ``press_enter``).
    Its ``pre_delay_ms``, ``retries`` and ``retry_delay_ms`` are checked and not used:
    the queue orders the Enter after the paste, and it is pressed once."""
    body = await json_object(request)
    for name in ("pre_delay_ms", "retries", "retry_delay_ms"):
        value = opt(body, name, (int, float))
        if value is not None and not 0 <= value <= 60_000:
            raise BadRequest("invalid_field", f"{name} must be a number from 0 to 60000")
    return await press_enter(request, request.match_info["id"])


async def get_delivery(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    delivery = await svc.deliveries.get(request.match_info["id"])
    include_prompt = request.query.get("prompt") in {"1", "true"}
    return json_response(public(request, delivery, include_prompt=include_prompt))


async def list_deliveries(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in DeliveryStatus}:
        raise BadRequest("invalid_query", f"unknown status {status!r}")
    limit = query_int(request, "limit", 50, 1, 1000)
    items = await svc.deliveries.list(
        session=request.query.get("session") or None, status=status, limit=limit
    )
    return json_response([public(request, d) for d in items])


async def cancel_delivery(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    held = svc.deliveries.holding(request.match_info["id"])
    delivery = await svc.deliveries.cancel(request.match_info["id"])
    body = public(request, delivery)
    if held is not None:
        body["hold_released"] = held  # it was final already: what ended is the hold on that session
    return json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/sessions/{id}/inject", inject)
    app.router.add_post("/api/sessions/{id}/submit", submit)
    app.router.add_get("/api/deliveries", list_deliveries)
    app.router.add_get("/api/deliveries/{id}", get_delivery)
    app.router.add_delete("/api/deliveries/{id}", cancel_delivery)
