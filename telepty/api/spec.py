"""The route table: each route declared once, with what the API document says of it.

A handler module lists its routes as ``ROUTES``: method, path, handler, and the
operation's metadata (id, summary, parameters, answers, error codes) beside the request
model its body is read with. ``install`` registers them with aiohttp; ``telepty.api.
openapi`` builds ``/api/openapi.json`` from the very same table and models, so a route
cannot be served without being described, nor a body be checked by rules the document
does not state.

The small schema helpers here are for what has no request model: answers, query and
header parameters.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from telepty.api.node_dialect import COMPAT_HEADER
from telepty.delivery.limits import MAX_IDEMPOTENCY_KEY
from telepty.delivery.model import Origin
from telepty.delivery.request import RequestModel

Schema = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON: Final = "application/json"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    op_id: str
    summary: str
    tag: str
    ok: Mapping[int, Schema] = field(default_factory=dict)
    errors: Mapping[int, str] = field(default_factory=dict)
    params: tuple[Schema, ...] = ()
    body: type[RequestModel] | Schema | None = None  # a model (read and documented) or a bare schema
    body_required: bool = True
    public: bool = False  # no credentials needed
    websocket: bool = False
    extensions: Mapping[str, Any] = field(default_factory=dict)


def install(app: web.Application, routes: Iterable[Route]) -> None:
    """Register ``routes`` in order (a fixed path before a ``{param}`` one that would match it)."""
    for r in routes:
        app.router.add_route(r.method, r.path, r.handler)


# -- schema helpers ------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def string(**kw: Any) -> Schema:
    return {"type": "string", **kw}


def integer(lo: int | None = None, hi: int | None = None, **kw: Any) -> Schema:
    out: Schema = {"type": "integer", **kw}
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


def boolean(**kw: Any) -> Schema:
    return {"type": "boolean", **kw}


def enum(values: Any, **kw: Any) -> Schema:
    return {"type": "string", "enum": [str(v) for v in values], **kw}


def array(items: Schema, **kw: Any) -> Schema:
    return {"type": "array", "items": items, **kw}


def obj(props: dict[str, Schema], required: tuple[str, ...] = (), **kw: Any) -> Schema:
    """An object; unknown properties stay allowed unless the caller says otherwise."""
    out: Schema = {"type": "object", "properties": props, **kw}
    if required:
        out["required"] = list(required)
    return out


def nullable(schema: Schema) -> Schema:
    """``schema`` or ``null``: response fields the daemon leaves empty."""
    out = copy.deepcopy(schema)
    kind = out.get("type")
    if "$ref" in out or kind is None:
        return {"anyOf": [out, {"type": "null"}]}
    out["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    if "const" in out:
        out["enum"] = [out.pop("const"), None]
    return out


def pattern(rx: re.Pattern[str]) -> str:
    """A parser's own regex as a JSON Schema pattern: ``\\Z`` (no trailing newline) is
    Python's; JSON Schema's ``$`` already means the very end."""
    return rx.pattern.removesuffix("\\Z") + "$"


NSTR: Final = nullable(string())
TIMESTAMP: Final = string(description="UTC ISO-8601 with Z")


# -- parameters -----------------------------------------------------------------------


def param(where: str, name: str, schema: Schema, description: str, *, required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": description}


def path_id(name: str = "id", description: str = "a session id or alias") -> Schema:
    # Any non-empty segment reaches the handler (aiohttp's ``[^{}/]+``); the handler judges it.
    return param("path", name, string(minLength=1), description)


def query(name: str, schema: Schema, description: str, *, empty_ok: bool = True) -> Schema:
    """A query parameter; the handlers read an empty value (``?status=``) as absent."""
    if empty_ok:
        schema = {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
    return param("query", name, schema, description)


def limit(default: int, hi: int) -> Schema:
    return query("limit", integer(1, hi, default=default), f"at most this many items (1-{hi})")


IDEMPOTENCY: Final = param("header", "Idempotency-Key", string(minLength=1, maxLength=MAX_IDEMPOTENCY_KEY),
                           "a repeated request with the same key returns the first delivery")
ORIGIN_QUERY: Final = query("origin", enum([Origin.API, Origin.CLI], default="api"),
                            "who is asking (also the x-telepty-origin header)")
SESSION_TOKEN: Final = param("header", "x-telepty-session-token", string(),
                             "the calling session's own token (TELEPTY_SESSION_TOKEN): proves the sender")
COMPAT: Final = param("header", COMPAT_HEADER, string(),
                      "node: answer in the Node.js telepty's shapes (docs/node-compat.md); the "
                      "Node.js CLI is recognised by its User-Agent, node")
HOP: Final = param("header", "x-telepty-hop", string(description="an integer, read with int()"),
                   "relays this request has passed through (set by peer daemons)")


# -- answers --------------------------------------------------------------------------


def answer(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def ok(name: str, description: str = "OK") -> Schema:
    return answer(ref(name), description)


def listing(name: str, description: str = "OK") -> Schema:
    return answer(array(ref(name)), description)


WEBSOCKET_OK: Final = {101: {"description": "switching to the WebSocket protocol"}}
