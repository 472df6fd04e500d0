"""Multicast and broadcast: one prompt, one delivery per target session.

Each target gets its own delivery record (its own FIFO, retries, outcome): fan-out is
a loop over the ordinary inject, not a second delivery path. What it adds:

- everything is checked before anything is accepted (unknown targets, the cap, tmux,
  a spoofed sender), so a bad request delivers to nobody rather than to some;
- a cap (``TELEPTY_FANOUT_MAX``, default 100): beyond it the request is refused with
  ``fanout_too_large`` instead of typing into a hundred and first terminal;
- broadcast never includes the sender's own session (an agent broadcasting a question
  must not receive it) nor exited sessions;
- every delivery of one fan-out shares a ``batch_id``, in the answer and in the audit
  log, and an ``Idempotency-Key`` covers the whole fan-out (one key per target is
  derived from it), so a retried request reaches nobody twice.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from telepty.api.body import json_response
from telepty.api.deliveries import INJECT_ERRORS
from telepty.api.keys import CONFIG, DELIVERIES, INTAKE, REGISTRY
from telepty.api.models import Broadcast, Multicast, read
from telepty.api.node_dialect import node_fanout_results, speaks_node
from telepty.api.spec import COMPAT, IDEMPOTENCY, ORIGIN_QUERY, SESSION_TOKEN, Route, ok
from telepty.api.submission import key_of, origin_of, token_of
from telepty.delivery.intake import FanoutBatch, Sender, Submission, checked_key
from telepty.delivery.model import Delivery, DeliveryStatus
from telepty.delivery.request import InjectBody, InjectRequest
from telepty.errors import BadRequest, ErrorCode, NotFound, TeleptyError
from telepty.sessions.model import Session, SessionState


def _too_large(n: int, cap: int, what: str) -> BadRequest:
    return BadRequest(ErrorCode.FANOUT_TOO_LARGE, f"{what} would reach {n} sessions; the limit is {cap} "
                      "(TELEPTY_FANOUT_MAX); narrow the targets or raise the limit")


async def _deliver_all(
    request: web.Request, req: InjectRequest, targets: list[tuple[str, Session]], sender: Sender,
    *, via: str, excluded: list[dict[str, Any]] | None = None,
) -> web.Response:
    intake = request.app[INTAKE]
    origin = origin_of(request)
    key = checked_key(key_of(request))
    spoofed = intake.claim(req.sender, sender)  # strict mode: refused before anyone gets it
    batch = FanoutBatch(via, f"fan_{uuid.uuid4().hex}")
    results: list[dict[str, Any]] = []
    accepted: list[Delivery] = []
    for asked, session in targets:
        try:
            d = (await intake.accept(Submission(
                target=asked, origin=origin, request=req, idempotency_key=key,
                sender_token=token_of(request), batch=batch,
            ))).delivery
        except TeleptyError as exc:  # the session vanished since it was resolved
            results.append({"target": asked, "session_id": session.id, "delivery_id": None,
                            "status": "failed", "reason": exc.code, "detail": exc.detail})
            continue
        accepted.append(d)
        results.append({"target": asked, "session_id": d.session_id, "delivery_id": d.id,
                        "status": str(d.status)})
    if req.wait and accepted:
        engine = request.app[DELIVERIES]
        finals = await asyncio.gather(*(engine.wait(d.id, req.timeout) for d in accepted))
        by_id = {d.id: d for d in finals}
        for r in results:
            d = by_id.get(r["delivery_id"] or "")
            if d is not None:
                r.update(status=str(d.status), reason=d.reason, detail=d.detail, attempts=d.attempts,
                         confirmed=d.confirmed)
    counts = {"delivered": 0, "failed": 0, "pending": 0}
    for r in results:
        if r["status"] == DeliveryStatus.DELIVERED:
            counts["delivered"] += 1
        elif r["status"] in (DeliveryStatus.FAILED, DeliveryStatus.CANCELLED):
            counts["failed"] += 1
        else:
            counts["pending"] += 1
    out: dict[str, Any] = {
        "batch_id": batch.batch_id,
        "via": via,
        "count": len(results),
        "verified_sender": sender.verified,
        "spoofed": spoofed,
        "summary": counts,
        "results": results,
    }
    if excluded is not None:
        out["excluded"] = excluded
    if speaks_node(request):
        # The Node.js CLI reads results.successful / results.failed: the records move
        # to ``deliveries`` for such a caller (telepty.api.node_dialect).
        out["success"] = True
        out["deliveries"] = results
        out["results"] = node_fanout_results(results)
    warnings = list(req.warnings) + list(sender.warnings)
    if warnings:
        out["warnings"] = warnings
    if counts["failed"]:
        out["error"] = ErrorCode.FANOUT_FAILED
        out["detail"] = f"{counts['failed']} of {len(results)} deliveries failed"
        return json_response(out, status=422 if req.wait else 202)
    if req.wait and not counts["pending"]:
        return json_response(out, status=200)
    return json_response(out, status=202)


def _prompt(request: web.Request, body: InjectBody) -> tuple[InjectRequest, Sender]:
    """The prompt with its footer, and who sends it: checked once for every target."""
    req = body.request(max_prompt_bytes=request.app[CONFIG].max_prompt_bytes)
    intake = request.app[INTAKE]
    sender = intake.sender(token_of(request))
    return intake.with_footer(req, sender.verified), sender


async def multicast(request: web.Request) -> web.Response:
    registry, intake = request.app[REGISTRY], request.app[INTAKE]
    body = await read(request, Multicast)
    req, sender = _prompt(request, body)
    names = body.session_ids
    cap = request.app[CONFIG].fanout_max
    if len(set(names)) > cap:
        raise _too_large(len(set(names)), cap, "this multicast")
    targets: list[tuple[str, Session]] = []
    seen: set[str] = set()
    unknown: list[str] = []
    for name in names:
        session = registry.find_live(name) or registry.get(name)
        if session is None:
            unknown.append(name)
            continue
        if session.id not in seen:  # an id and its alias are one target
            seen.add(session.id)
            targets.append((name, session))
    if unknown:
        raise NotFound(ErrorCode.SESSION_NOT_FOUND,
                       f"no session with id or alias {', '.join(map(repr, unknown))}; "
                       "nothing was sent")
    for _, session in targets:
        intake.require_reachable(session, "; nothing was sent")
    return await _deliver_all(request, req, targets, sender, via="multicast")


async def broadcast(request: web.Request) -> web.Response:
    registry, intake = request.app[REGISTRY], request.app[INTAKE]
    body = await read(request, Broadcast)
    req, sender = _prompt(request, body)
    agent, project, kind = body.agent, body.project, body.type
    exclude_names = body.exclude or []
    # The sender never hears its own broadcast: the verified session, and the session a
    # ``from`` names when no token says otherwise.
    own: set[str] = set()
    if sender.verified is not None:
        own.add(sender.verified)
    elif req.sender is not None and (claimed := registry.find_live(req.sender)) is not None:
        own.add(claimed.id)
    explicit = {s.id for n in exclude_names if (s := registry.find_live(n) or registry.get(n))}
    targets: list[tuple[str, Session]] = []
    excluded: list[dict[str, Any]] = []
    for s in registry.list(type=kind, agent=agent, project=project, include_exited=False):
        if s.state is SessionState.EXITED:
            continue
        if s.id in own:
            excluded.append({"session_id": s.id, "reason": "sender"})
        elif s.id in explicit:
            excluded.append({"session_id": s.id, "reason": "excluded"})
        elif (problem := intake.unreachable(s)) is not None:
            excluded.append({"session_id": s.id, "reason": problem})
        else:
            targets.append((s.id, s))
    if not targets:
        raise NotFound(ErrorCode.NO_TARGETS, "no live session to broadcast to"
                       + (" besides the sender" if own else "") + "; nothing was sent")
    cap = request.app[CONFIG].fanout_max
    if len(targets) > cap:
        raise _too_large(len(targets), cap, "this broadcast")
    return await _deliver_all(request, req, targets, sender, via="broadcast", excluded=excluded)


FANOUT_ANSWERS = {
    200: ok("Fanout", "wait: true and every delivery was delivered"),
    202: ok("Fanout", "accepted: one delivery per target"),
    422: ok("Fanout", "some deliveries failed (error: fanout_failed)"),
}
FANOUT_ERRORS = {**INJECT_ERRORS, 400: INJECT_ERRORS[400] + " / fanout_too_large"}

ROUTES = (
    Route("POST", "/api/sessions/multicast/inject", multicast, "multicast",
          "Deliver one prompt to each listed session", "deliveries",
          params=(IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY, COMPAT), body=Multicast, ok=FANOUT_ANSWERS,
          errors={**FANOUT_ERRORS, 404: "session_not_found"}),
    Route("POST", "/api/sessions/broadcast/inject", broadcast, "broadcast",
          "Deliver one prompt to every live session but the sender", "deliveries",
          params=(IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY, COMPAT), body=Broadcast, ok=FANOUT_ANSWERS,
          errors={k: v for k, v in FANOUT_ERRORS.items() if k != 503} | {404: "no_targets"}),
)
