"""Raw keys and explain: ``POST /api/sessions/{id}/keys``, ``GET /api/sessions/{id}/explain``.

Keys are deliveries like prompts (same queue, same records, same Idempotency-Key),
typed unbracketed: ``{"keys": ["Down", "Enter"]}`` answers a permission menu that a
paste would cancel. Explain shows what the daemon sees on a session's screen and why it
counts it idle, busy, blocked or unknown, plus what is waiting in its queue and why.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from telepty.api.body import json_response, query_int
from telepty.api.deliveries import DELIVERY_ANSWERS, INJECT_ERRORS, TARGET, delivery_answer
from telepty.api.keys import CONFIG, DELIVERIES, INTAKE, REGISTRY
from telepty.api.models import Keys, read
from telepty.api.spec import (
    IDEMPOTENCY,
    ORIGIN_QUERY,
    SESSION_TOKEN,
    Route,
    answer,
    array,
    enum,
    integer,
    obj,
    path_id,
    query,
)
from telepty.api.submission import key_of, origin_of, token_of
from telepty.config import Config
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.intake import Submission
from telepty.delivery.model import DeliveryError
from telepty.delivery.request import KeyPress
from telepty.errors import Conflict
from telepty.sessions.model import Session, SessionState


async def send_keys(request: web.Request) -> web.Response:
    body = await read(request, Keys)
    # The sender is recorded: who pressed keys in someone's session.
    accepted = await request.app[INTAKE].accept(Submission(
        target=request.match_info["id"], origin=origin_of(request),
        keys=KeyPress(tuple(body.keys), bool(body.force), body.quiet_ms),
        idempotency_key=key_of(request), sender_token=token_of(request),
    ))
    delivery = accepted.delivery
    ack = {"delivery_id": delivery.id, "status": str(delivery.status),
           "session_id": delivery.session_id, "kind": str(delivery.kind)}
    return await delivery_answer(request, delivery, wait=bool(body.wait), wait_s=float(body.timeout or 0),
                                 accepted=ack)


async def explain_session(
    engine: DeliveryEngine, config: Config, session: Session, lines: int,
) -> dict[str, Any]:
    """What the session's transport sees on its screen and why (``409`` when it cannot look)."""
    try:
        transport = engine.resolver(session)
        out: dict[str, Any] = await transport.explain(tail=lines, quiet_ms=config.quiet_ms)
    except DeliveryError as exc:
        raise Conflict(exc.reason, exc.detail) from None
    return out


async def explain(request: web.Request) -> web.Response:
    engine = request.app[DELIVERIES]
    session = request.app[REGISTRY].resolve(request.match_info["id"])
    lines = query_int(request, "lines", 20, 1, 1000)
    pending = [
        {k: d.to_public()[k] for k in ("delivery_id", "kind", "status", "reason", "detail",
                                         "stage", "attempts", "next_attempt_at")}
        for d in engine.pending(session.id)
    ]
    out = await explain_session(engine, request.app[CONFIG], session, lines)
    out["session_state"] = str(session.state)
    out["pending"] = pending
    out["hold"] = engine.hold_of(session.id)
    return json_response(out)


SID = path_id()

ROUTES = (
    Route("POST", "/api/sessions/{id}/keys", send_keys, "sendKeys",
          "Type raw keys (tmux key names or text) into a session, unbracketed", "deliveries",
          params=(TARGET, IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY), body=Keys, ok=DELIVERY_ANSWERS,
          errors={400: "invalid_keys / invalid_field / invalid_header / invalid_origin",
                  404: "session_not_found", 503: INJECT_ERRORS[503]}),
    Route("GET", "/api/sessions/{id}/explain", explain, "explainSession",
          "What the daemon sees on the screen and why it counts it idle or busy", "sessions",
          params=(SID, query("lines", integer(1, 1000, default=20), "screen lines to show")),
          ok={200: answer(obj({"session_state": enum(SessionState), "pending": array({"type": "object"})},
                              ("session_state", "pending")), "the transport's view (fields vary)")},
          errors={400: "invalid_query", 404: "session_not_found",
                  409: "no_screen, or the transport's reason (pane_dead, session_disconnected, …)"}),
)
