"""Who is this daemon: health (open to all) and meta (authenticated)."""

from __future__ import annotations

import os

from aiohttp import web

from telepty import __version__
from telepty.api.body import json_response
from telepty.api.keys import CONFIG, INFO
from telepty.api.node_dialect import NODE_CAPABILITIES, NODE_PROTOCOL_VERSION, speaks_node
from telepty.api.spec import COMPAT, Route, ok

CAPABILITIES = (
    "sessions",
    "wrapped-sessions",
    "singleton-daemon",
    "durable-store",
    "spawned-sessions",
    "attach",
    "pane-sessions",
    "delivery-engine",
    "idempotent-inject",
    "submit-confirmation",
    "agent-profiles",
    "raw-keys",
    "explain",
    "bus",
    "bus-replay",
    "bus-auto-route",
    "handoff-inbox",
    "deliberation-threads",
    "session-lifecycle-events",
    "metrics",
    "sender-identity",
    "reply",
    "multicast",
    "broadcast",
    "inject-audit",
    "mcp",
    "session-rename",
    "session-clean",
    "relay",
)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def meta(request: web.Request) -> web.Response:
    config, info = request.app[CONFIG], request.app[INFO]
    body = {
        "name": "telepty",
        "version": __version__,
        "pid": os.getpid(),
        "host": config.host,
        "port": info.port or config.port,
        "machine_id": config.machine_id,
        "started_at": info.started_at,
        "home": str(config.home),
        "home_id": info.home_id,
        "capabilities": list(CAPABILITIES),
    }
    if speaks_node(request):
        # The Node.js CLI "repairs" (kills and replaces) a local daemon whose version is
        # not its own: it is told the version of the protocol spoken here, and ours
        # stays in ``implementation_version`` (telepty.api.node_dialect).
        body["version"] = NODE_PROTOCOL_VERSION
        body["implementation_version"] = __version__
        body["capabilities"] = list(dict.fromkeys([*CAPABILITIES, *NODE_CAPABILITIES]))
    return json_response(body)


ROUTES = (
    Route("GET", "/api/health", health, "health", "Liveness; the one route that needs no credentials", "meta",
          public=True, ok={200: ok("Health")}),
    Route("GET", "/api/meta", meta, "meta", "Who this daemon is", "meta", params=(COMPAT,),
          ok={200: ok("Meta")}),
)
