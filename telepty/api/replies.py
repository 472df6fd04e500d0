"""``POST /api/reply`` and ``GET /api/identity``: answering without knowing who asked.

An agent that received a prompt should not have to parse a footer to find its
sender. ``telepty reply "…"`` asks the daemon, which knows both ends: the session
the caller runs in (its session token) and the ``reply_to`` of the last prompt that
session received (see :mod:`telepty.sessions.identity`). The reply is an ordinary
delivery from that session to that ``reply_to``, in the same thread.

A session without a token (a registered tmux pane) can still reply by naming itself
(``session_id``); such a reply is recorded as unverified, like any claimed ``from``.
"""

from __future__ import annotations

from aiohttp import web

from telepty.api.body import json_response
from telepty.api.deliveries import DELIVERY_ANSWERS, INJECT_ERRORS, delivery_answer
from telepty.api.keys import CONFIG, IDENTITIES, INTAKE, REGISTRY
from telepty.api.models import Reply, read
from telepty.api.spec import IDEMPOTENCY, ORIGIN_QUERY, SESSION_TOKEN, Route, answer, enum, obj, ok, string
from telepty.api.submission import key_of, origin_of, token_of
from telepty.delivery.intake import Submission
from telepty.delivery.model import DeliveryStatus
from telepty.errors import BadRequest, ErrorCode, NotFound


async def identity(request: web.Request) -> web.Response:
    """Which session the presented session token belongs to (``telepty whoami``)."""
    sender = request.app[INTAKE].sender(token_of(request))
    if sender.verified is None:
        raise BadRequest(ErrorCode.NO_SESSION_IDENTITY, "this request carries no valid session token "
                         "(x-telepty-session-token); run it inside a wrapped or spawned session")
    session = request.app[REGISTRY].require(sender.verified)
    last = await request.app[IDENTITIES].last_received(session.id)
    return json_response({
        "session_id": session.id,
        "alias": session.alias,
        "type": str(session.type),
        "agent": session.agent,
        "state": str(session.state),
        "verified": True,
        "reply_to": last.reply_to if last else None,
    })


async def reply(request: web.Request) -> web.Response:
    registry, intake = request.app[REGISTRY], request.app[INTAKE]
    body = await read(request, Reply)
    sender = intake.sender(token_of(request))
    claimed = body.session_id
    if sender.verified is not None and claimed is not None:
        named = registry.find_live(claimed)
        if named is None or named.id != sender.verified:
            raise BadRequest(ErrorCode.SESSION_MISMATCH, f"session_id is {claimed!r}, but the session token "
                             f"presented belongs to {sender.verified!r}")
    me = sender.verified
    if me is None and claimed is not None:
        me = registry.resolve(claimed).id
    if me is None:
        raise BadRequest(ErrorCode.NO_SESSION_IDENTITY, "telepty reply answers for the session it runs in, "
                         "and this request names none: run it inside a wrapped or spawned session "
                         "(TELEPTY_SESSION_TOKEN) or pass session_id")
    last = await request.app[IDENTITIES].last_received(me)
    if last is None:
        raise NotFound(ErrorCode.NOTHING_TO_REPLY_TO, f"session {me!r} has not received a prompt with a "
                       "reply_to yet, so there is no one to reply to; use telepty inject TARGET instead")
    if body.thread_id is None and last.thread_id is not None:
        body = body.model_copy(update={"thread_id": last.thread_id})  # the conversation goes on
    req = body.request(max_prompt_bytes=request.app[CONFIG].max_prompt_bytes, sender=me)
    accepted = await intake.accept(Submission(
        target=last.reply_to, origin=origin_of(request), request=req, idempotency_key=key_of(request),
        sender_token=token_of(request), via="reply",
    ))
    delivery = accepted.delivery
    extra = {"in_reply_to": last.delivery_id, "reply_to": last.reply_to}
    ack = {"delivery_id": delivery.id, "status": str(delivery.status), "session_id": delivery.session_id,
           "from": delivery.sender, "verified_sender": delivery.verified_sender}
    return await delivery_answer(request, delivery, wait=req.wait, wait_s=req.timeout, accepted=ack,
                                 extra=extra, warnings=accepted.warnings)


ROUTES = (
    Route("GET", "/api/identity", identity, "whoami", "Which session the presented session token belongs to",
          "deliveries", params=(SESSION_TOKEN,), ok={200: ok("Identity")},
          errors={400: "no_session_identity", 403: "invalid_session_token (strict mode)",
                  404: "session_not_found"}),
    Route("POST", "/api/reply", reply, "reply", "Answer the last prompt the calling session received",
          "deliveries", params=(IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY), body=Reply,
          ok={**DELIVERY_ANSWERS, 202: answer(obj(
              {"delivery_id": string(), "status": enum(DeliveryStatus), "session_id": string(),
               "in_reply_to": string(), "reply_to": string()},
              ("delivery_id", "status", "session_id", "in_reply_to", "reply_to")), "accepted")},
          errors={**INJECT_ERRORS, 400: INJECT_ERRORS[400] + " / no_session_identity / session_mismatch",
                  404: "nothing_to_reply_to / session_not_found"}),
)
