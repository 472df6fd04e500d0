"""Reading a request's JSON body and query strictly, and writing JSON answers.

A bad body or query is a 400 (or 413) that changes nothing; what the fields of a body
must be is its model's to say (``telepty.api.models``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

import orjson
from aiohttp import web

from telepty.api.keys import CONFIG
from telepty.errors import BadRequest, ErrorCode, TooLarge

E = TypeVar("E", bound=StrEnum)

MAX_BODY = 4 * 1024 * 1024  # a 1 MiB prompt, JSON-escaped, fits with room to spare


def body_limit(request: web.Request) -> int:
    """The daemon's configured cap (TELEPTY_MAX_BODY_BYTES), or the default outside it."""
    config = request.app.get(CONFIG)
    return config.max_body_bytes if config is not None else MAX_BODY


async def json_object(request: web.Request, *, max_bytes: int | None = None) -> dict[str, Any]:
    if max_bytes is None:
        max_bytes = body_limit(request)
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(ErrorCode.TOO_LARGE, f"request body over {max_bytes} bytes")
    try:
        # read() gathers the whole body, bounded by the app's client_max_size.
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(ErrorCode.TOO_LARGE, f"request body over {max_bytes} bytes") from None
    if len(raw) > max_bytes:
        raise TooLarge(ErrorCode.TOO_LARGE, f"request body over {max_bytes} bytes")
    return parse_json_object(raw)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A body as a JSON object (an empty body is ``{}``), or ``BadRequest``."""
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(ErrorCode.INVALID_JSON, "body must be a JSON object")
    return data


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json"
    )


def query_int(request: web.Request, key: str, default: int, lo: int = 0, hi: int = 10_000) -> int:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(ErrorCode.INVALID_QUERY, f"{key} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(ErrorCode.INVALID_QUERY, f"{key} must be between {lo} and {hi}")
    return value



def query_enum(request: web.Request, key: str, enum: type[E]) -> E | None:
    """An optional query value that must be one of ``enum``'s; the error lists them."""
    raw = request.query.get(key) or None
    if raw is None:
        return None
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise BadRequest(ErrorCode.INVALID_QUERY, f"{key} must be one of {allowed}, got {raw!r}") from None
