"""What every route that creates deliveries reads from the HTTP request itself.

The body is the route's; the headers and the query are the same for all of them: who
is asking (``origin``), the session token that proves the sender, the caller's
``Idempotency-Key``, and the hop count a peer daemon sets. The checks on those values
belong to the intake (``telepty.delivery.intake``), which knows nothing of HTTP.
"""

from __future__ import annotations

from aiohttp import web

from telepty.delivery.model import Origin
from telepty.errors import BadRequest, ErrorCode
from telepty.relay.service import HOP_HEADER, incoming_hop
from telepty.sessions.identity import SESSION_TOKEN_HEADER

IDEMPOTENCY_HEADER = "Idempotency-Key"


def origin_of(request: web.Request) -> Origin:
    value = request.query.get("origin") or request.headers.get("x-telepty-origin") or "api"
    try:
        origin = Origin(value)
    except ValueError:
        raise BadRequest(ErrorCode.INVALID_ORIGIN, f"origin must be api or cli, got {value!r}") from None
    if origin not in (Origin.API, Origin.CLI):
        # bus_auto_route and relay deliveries are made by the daemon itself.
        raise BadRequest(ErrorCode.INVALID_ORIGIN, f"origin {value!r} cannot be set by a caller")
    return origin


def token_of(request: web.Request) -> str | None:
    """The calling session's own token (TELEPTY_SESSION_TOKEN), if it presents one."""
    return request.headers.get(SESSION_TOKEN_HEADER)


def key_of(request: web.Request) -> str | None:
    return request.headers.get(IDEMPOTENCY_HEADER)


def hop_of(request: web.Request) -> int:
    return incoming_hop(request.headers.get(HOP_HEADER))
