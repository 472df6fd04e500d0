"""Turn every failure into the SPEC's ``{"error", "detail"}`` shape.

The daemon must never crash on input: anything unexpected becomes a logged 500
with a code, and the request that caused it changes nothing it had not committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from telepty.api.body import json_response
from telepty.errors import ErrorCode, TeleptyError

log = logging.getLogger("telepty.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.TOO_LARGE,
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TeleptyError as exc:
        return json_response(exc.to_dict(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        return json_response({"error": code, "detail": exc.reason}, status=exc.status)
    except Exception:
        log.exception("unhandled error method=%s path=%s", request.method, request.path)
        return json_response(
            {"error": ErrorCode.INTERNAL_ERROR, "detail": "the daemon hit an unexpected error; see its log"},
            status=500,
        )
