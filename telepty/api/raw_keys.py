"""Raw keys and explain: ``POST /api/sessions/{id}/keys``, ``GET /api/sessions/{id}/explain``.

Keys are deliveries like prompts (same queue, same records, same Idempotency-Key),
typed unbracketed: ``{"keys": ["Down", "Enter"]}`` answers a permission menu that a
paste would cancel. Explain shows what the daemon sees on a session's screen and why it
counts it idle, busy, blocked or unknown, plus what is waiting in its queue and why.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from telepty.api.body import json_object, json_response, query_int
from telepty.api.deliveries import IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY, _origin, delivery_answer
from telepty.api.identity import request_sender
from telepty.api.keys import SERVICES
from telepty.delivery.keys import parse_keys
from telepty.delivery.model import DeliveryError
from telepty.delivery.request import _bool, _quiet_ms, _timeout
from telepty.errors import BadRequest, Conflict, Unavailable
from telepty.sessions.model import Session

_KEYS_FIELDS = {"keys", "force", "quiet_ms", "wait", "timeout"}


async def send_keys(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    body = await json_object(request)
    unknown = sorted(set(body) - _KEYS_FIELDS)
    if unknown:
        raise BadRequest("invalid_field", f"unknown field(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(_KEYS_FIELDS))}")
    keys = parse_keys(body.get("keys"))
    force, wait = _bool(body, "force"), _bool(body, "wait")
    quiet_ms, timeout = _quiet_ms(body), _timeout(body)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        raise BadRequest("invalid_header", f"{IDEMPOTENCY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY} chars")
    target = request.match_info["id"]
    session = svc.registry.resolve(target)
    if session.tmux_pane and not svc.tmux.server(session.tmux_socket).available():
        raise Unavailable("tmux_unavailable", f"session {session.id!r} lives in a tmux pane, "
                          f"but tmux ({svc.config.tmux_bin}) is not installed or not on PATH")
    sender = request_sender(request)  # recorded: who pressed keys in someone's session
    delivery = await svc.deliveries.submit_keys(
        keys, target=target, origin=_origin(request), force=force, quiet_ms=quiet_ms,
        idempotency_key=key, verified_sender=sender.verified,
    )
    accepted = {"delivery_id": delivery.id, "status": str(delivery.status),
                "session_id": delivery.session_id, "kind": str(delivery.kind)}
    return await delivery_answer(request, delivery, wait=wait, wait_s=timeout, accepted=accepted)


async def explain_session(svc: Any, session: Session, lines: int) -> dict[str, Any]:
    """What the session's transport sees on its screen and why (``409`` when it cannot look)."""
    try:
        transport = svc.deliveries.resolver(session)
        out: dict[str, Any] = await transport.explain(tail=lines, quiet_ms=svc.config.quiet_ms)
    except DeliveryError as exc:
        raise Conflict(exc.reason, exc.detail) from None
    return out


async def explain(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    session = svc.registry.resolve(request.match_info["id"])
    lines = query_int(request, "lines", 20, 1, 1000)
    pending = [
        {k: d.to_public()[k] for k in ("delivery_id", "kind", "status", "reason", "detail",
                                         "stage", "attempts", "next_attempt_at")}
        for d in svc.deliveries.pending(session.id)
    ]
    out = await explain_session(svc, session, lines)
    out["session_state"] = str(session.state)
    out["pending"] = pending
    out["hold"] = svc.deliveries.hold_of(session.id)
    return json_response(out)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/sessions/{id}/keys", send_keys)
    app.router.add_get("/api/sessions/{id}/explain", explain)
