"""The sender of an HTTP request: its session token, and what a ``from`` may claim.

Shared by every route that creates deliveries (inject, multicast, broadcast, reply) so
they all judge a sender the same way. Strict mode (``TELEPTY_REQUIRE_TOKEN=1``)
turns the two soft outcomes into refusals: a session token the daemon does not know,
and a ``from`` that the presented token contradicts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from aiohttp import web

from telepty.api.keys import SERVICES
from telepty.bus.reply_guide import with_reply_footer
from telepty.delivery.request import InjectRequest
from telepty.errors import TeleptyError, TooLarge
from telepty.sessions.identity import SESSION_TOKEN_HEADER, claims_other_sender
from telepty.sessions.model import SessionState

log = logging.getLogger("telepty.api.identity")

SENDER_SPOOFED = "sender_spoofed"
INVALID_SESSION_TOKEN = "invalid_session_token"


class Forbidden(TeleptyError):
    status = 403


@dataclass(frozen=True)
class Sender:
    verified: str | None  # the session the presented token belongs to
    warnings: tuple[str, ...] = ()


def request_sender(request: web.Request) -> Sender:
    """Who the request proves it is (None when it presents no usable session token).

    A token of a session that is gone (removed, exited) proves nothing: its child is
    dead, so whoever holds the token now is not that agent.
    """
    svc = request.app[SERVICES]
    token = request.headers.get(SESSION_TOKEN_HEADER, "").strip()
    if not token:
        return Sender(None)
    session_id = svc.identities.verify(token)
    session = svc.registry.get(session_id) if session_id is not None else None
    if session is not None and session.state is not SessionState.EXITED:
        return Sender(session.id)
    detail = ("the session token presented (x-telepty-session-token) belongs to no live session; "
              "it is stale (the session exited or was removed) or was never issued")
    if svc.config.require_token:
        raise Forbidden(INVALID_SESSION_TOKEN, detail)
    log.warning("unrecognised session token on %s %s from %s", request.method, request.path, request.remote)
    return Sender(None, (f"{INVALID_SESSION_TOKEN}: {detail}; recorded as unverified",))


def check_claim(request: web.Request, claimed: str | None, sender: Sender) -> bool:
    """True when ``claimed`` (the ``from``) contradicts the verified sender: spoofed.

    Strict mode refuses such a request outright (403 ``sender_spoofed``) so nothing
    is delivered; otherwise the delivery goes ahead flagged ``spoofed: true``.
    """
    svc = request.app[SERVICES]
    spoofed = claims_other_sender(svc.registry, claimed, sender.verified)
    if spoofed:
        log.warning("sender %r claimed by verified session %r on %s", claimed, sender.verified, request.path)
        if svc.config.require_token:
            raise Forbidden(SENDER_SPOOFED, f"from is {claimed!r}, but the session token presented "
                            f"belongs to session {sender.verified!r}; refused in strict mode")
    return spoofed


def with_footer(req: InjectRequest, max_prompt_bytes: int, verified: str | None = None) -> InjectRequest:
    """``req`` with the reply footer (SPEC §5) when it expects a reply and is no closing message.

    The footer becomes part of the delivered prompt (and of its hash in the record and
    the audit log): that is what the agent actually received. A prompt the footer
    would push over the size limit is refused as too large, like any other. The reply
    goes where the delivery's ``reply_to`` will point: the caller's, else its ``from``,
    else the verified sender (the engine fills them in the same order).
    """
    text = req.prompt.decode("utf-8")
    reply_to = req.reply_to or req.sender or verified
    final = with_reply_footer(text, reply_to=reply_to, reply_expected=req.reply_expected)
    if final is text:
        return req
    data = final.encode("utf-8")
    if len(data) > max_prompt_bytes:
        raise TooLarge("too_large", f"prompt plus its reply footer is {len(data)} bytes of UTF-8; "
                       f"the limit is {max_prompt_bytes}")
    return replace(req, prompt=data)
