"""Reading request bodies strictly: a bad body is a 400 that changes nothing."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

import orjson
from aiohttp import web

from telepty.api.keys import CONFIG
from telepty.errors import BadRequest, TooLarge

T = TypeVar("T")
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
        raise TooLarge("too_large", f"request body over {max_bytes} bytes")
    try:
        # read() gathers the whole body, bounded by the app's client_max_size.
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge("too_large", f"request body over {max_bytes} bytes") from None
    if len(raw) > max_bytes:
        raise TooLarge("too_large", f"request body over {max_bytes} bytes")
    return parse_json_object(raw)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A body as a JSON object (an empty body is ``{}``), or ``BadRequest``."""
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("invalid_json", "body must be a JSON object")
    return data


def opt(data: dict[str, Any], key: str, kind: type[T] | tuple[type, ...], default: Any = None) -> Any:
    """An optional field of the given type; ``null`` counts as absent."""
    value = data.get(key)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a JSON true must not pass as a number.
    if isinstance(value, bool) and bool not in kinds:
        raise BadRequest("invalid_field", f"{key} must be {_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise BadRequest(
            "invalid_field", f"{key} must be {_names(kinds)}, got {type(value).__name__}"
        )
    return value


def req(data: dict[str, Any], key: str, kind: type[T] | tuple[type, ...]) -> Any:
    if data.get(key) is None:
        raise BadRequest("missing_field", f"{key} is required")
    return opt(data, key, kind)


def _names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "a boolean", float: "a number",
             dict: "an object", list: "an array"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


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
        raise BadRequest("invalid_query", f"{key} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest("invalid_query", f"{key} must be between {lo} and {hi}")
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
        raise BadRequest("invalid_query", f"{key} must be one of {allowed}, got {raw!r}") from None
