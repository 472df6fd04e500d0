"""``GET /api/openapi.json``: an OpenAPI 3.1 description of every route the daemon serves.

Why it exists: callers (orchestrators, peers, MCP glue, people with curl) get one
machine-readable contract, and the tests hold the daemon to it:
``tests/unit/test_openapi.py`` fails when a route is registered without being described
(or described without being registered), and ``tests/integration/
test_api_schemathesis.py`` fuzzes a real daemon from this document, so a request body
the document calls valid must not crash a handler and every answer must be one the
document announces.

Nothing here is written twice: the operations come from the route table (``ROUTES``,
the handler modules' entries, the same table ``telepty.daemon`` installs), the request
bodies from the models the handlers read them with (``telepty.api.models``), the
answers from ``telepty.api.answers``. What this module adds is what every operation
shares: the auth refusals, the body refusals, the router's 404 for an unmatchable path
parameter, the security schemes.

Extensions: ``x-websocket: true`` marks routes that upgrade to a WebSocket (listed for
completeness; an HTTP fuzzer should skip them); ``x-spawns-process: true`` marks the one
operation that starts a program, which a fuzzer must never feed arbitrary commands.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, Final

import orjson
from aiohttp import web

from telepty import __version__
from telepty.api import (
    bus,
    deliveries,
    fanout,
    handoffs,
    handoffs_v1,
    injects,
    meta,
    metrics,
    peers,
    raw_keys,
    replies,
    session_state,
    sessions,
    terminals,
    threads,
)
from telepty.api.answers import answers
from telepty.api.spec import JSON, WEBSOCKET_OK, Route, Schema, answer, ref
from telepty.delivery.request import RequestModel

__all__ = ["OPENAPI_PATH", "ROUTES", "build_document", "openapi_json"]

OPENAPI_PATH: Final = "/api/openapi.json"
OPENAPI_VERSION: Final = "3.1.0"

# Answers any authenticated route can give (telepty.api.auth.decide).
AUTH_ERRORS: Final = {
    401: "unauthorized / token_required: send the daemon token (x-telepty-token, Bearer, or ?token=)",
    403: "origin_forbidden / host_forbidden: browser origins and foreign Host headers are refused",
}
# Answers any route that reads a JSON body can give (telepty.api.body.json_object).
BODY_ERRORS: Final = {
    400: "invalid_json: the body is not a JSON object",
    413: "too_large: the body is over TELEPTY_MAX_BODY_BYTES",
}
# A path parameter aiohttp's router cannot match (e.g. an encoded slash) is a 404 too.
PATH_404: Final = "not_found: no such route"
# Loopback callers with a local Host are trusted without a token ({}), unless
# TELEPTY_REQUIRE_TOKEN=1; everyone else presents the token one of three ways.
AUTHENTICATED: Final = [{}, {"token": []}, {"bearer": []}, {"tokenQuery": []}]
SECURITY_SCHEMES: Final = {
    "token": {"type": "apiKey", "in": "header", "name": "x-telepty-token",
              "description": "the daemon token ($TELEPTY_HOME/token)"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "the daemon token"},
    "tokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                   "description": "the daemon token, for WebSocket clients that cannot set headers"},
}
TAGS: Final = ("meta", "sessions", "deliveries", "bus", "handoffs", "threads")


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_document_bytes(), content_type=JSON)


ROUTES: Final[tuple[Route, ...]] = (
    *meta.ROUTES,
    Route("GET", OPENAPI_PATH, openapi_json, "openapi", "This document", "meta",
          ok={200: answer({"type": "object", "required": ["openapi", "info", "paths"]}, "OpenAPI 3.1")}),
    *sessions.ROUTES,
    *terminals.ROUTES,
    *fanout.ROUTES,  # before /api/sessions/{id}/inject: "multicast" is not an id
    *replies.ROUTES,
    *injects.ROUTES,
    *deliveries.ROUTES,
    *raw_keys.ROUTES,
    *bus.ROUTES,
    *session_state.ROUTES,
    *handoffs.ROUTES,
    *handoffs_v1.ROUTES,  # the Node.js CLI's /api/handoff
    *threads.ROUTES,
    *metrics.ROUTES,
    *peers.ROUTES,
)
"""Every route the daemon serves, in the order it registers them."""


def _model_schema(model: type[RequestModel], schemas: dict[str, Schema]) -> Schema:
    """``model``'s schema into ``schemas`` (with the models it uses); a ``$ref`` to it."""
    name = model.__name__
    if name not in schemas:
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub, schema in generated.pop("$defs", {}).items():
            schemas.setdefault(sub, _untitled(schema))
        schemas[name] = _untitled(generated)
    return ref(name)


def _untitled(node: Any) -> Any:
    """Without pydantic's ``title`` keys (the names are the schemas' own keys)."""
    if isinstance(node, dict):
        return {k: _untitled(v) for k, v in node.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_untitled(v) for v in node]
    return node


def operation(route: Route, schemas: dict[str, Schema]) -> Schema:
    """One operation; the auth errors, the body errors and the router's 404 for an
    unmatchable path parameter are added here so no operation can forget them."""
    ok: dict[int, Schema] = dict(WEBSOCKET_OK if route.websocket else route.ok)
    errors = dict(route.errors)
    if route.websocket:
        errors = _merged({400: "http_400: not a WebSocket upgrade request"}, errors)
    every: dict[int, str] = {}
    if route.body is not None:
        every.update(BODY_ERRORS)
    if any(p["in"] == "path" for p in route.params):
        every[404] = PATH_404
    if not route.public:
        every.update(AUTH_ERRORS)
    responses: dict[str, Schema] = {str(code): resp for code, resp in sorted(ok.items())}
    for code, text in sorted(_merged(every, errors).items()):
        responses.setdefault(str(code), answer(ref("Error"), text))
    op: Schema = {"operationId": route.op_id, "summary": route.summary, "tags": [route.tag],
                  "responses": dict(sorted(responses.items()))}
    if route.params:
        op["parameters"] = list(route.params)
    if route.body is not None:
        body = route.body if isinstance(route.body, dict) else _model_schema(route.body, schemas)
        op["requestBody"] = {"required": route.body_required, "content": {JSON: {"schema": body}}}
    op["security"] = [] if route.public else AUTHENTICATED
    if route.websocket:
        op["x-websocket"] = True
    op.update({f"x-{k.replace('_', '-')}": v for k, v in route.extensions.items()})
    return op


def _merged(base: dict[int, str], extra: dict[int, str]) -> dict[int, str]:
    """``extra``'s texts before ``base``'s where both say something of one status."""
    out = dict(base)
    for code, text in extra.items():
        out[code] = f"{text}; {out[code]}" if code in out else text
    return out


def build_document(routes: Iterable[Route] = ROUTES, version: str = __version__) -> dict[str, Any]:
    """The whole document, freshly built (callers may change their copy)."""
    schemas = answers()
    paths: dict[str, dict[str, Schema]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route, schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "telepty daemon API",
            "version": version,
            "description": (
                "Deliver prompts into AI agent terminals. Every error is JSON "
                '{"error": "<code>", "detail": "<human text>"}. Loopback callers are trusted '
                "unless TELEPTY_REQUIRE_TOKEN=1; others send the daemon token."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
        "tags": [{"name": t} for t in TAGS],
    }


@functools.cache
def _document_bytes() -> bytes:
    # Built once per process: the document depends on nothing but the code.
    return orjson.dumps(build_document())
