"""Who is this daemon: health (open to all) and meta (authenticated)."""

from __future__ import annotations

import os

from aiohttp import web

from telepty import __version__
from telepty.api.body import json_response
from telepty.api.keys import SERVICES
from telepty.api.node_dialect import NODE_CAPABILITIES, NODE_PROTOCOL_VERSION, speaks_node
from telepty.home_id import ensure_home_id

# The id of the home this daemon serves (telepty.home_id): the CLI refuses a daemon
# whose id is not its own home's.
HOME_ID = web.AppKey("home_id", str)

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
    svc = request.app[SERVICES]
    body = {
        "name": "telepty",
        "version": __version__,
        "pid": os.getpid(),
        "host": svc.config.host,
        "port": svc.bound_port or svc.config.port,
        "machine_id": svc.config.machine_id,
        "started_at": svc.started_at,
        "home": str(svc.config.home),
        "home_id": request.app[HOME_ID],
        "capabilities": list(svc.capabilities),
    }
    if speaks_node(request):
        # The Node.js CLI "repairs" (kills and replaces) a local daemon whose version is
        # not its own: it is told the version of the protocol spoken here, and ours
        # stays in ``implementation_version`` (telepty.api.node_dialect).
        body["version"] = NODE_PROTOCOL_VERSION
        body["implementation_version"] = __version__
        body["capabilities"] = list(dict.fromkeys([*svc.capabilities, *NODE_CAPABILITIES]))
    return json_response(body)


def add_routes(app: web.Application) -> None:
    app[HOME_ID] = ensure_home_id(app[SERVICES].config.home)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/meta", meta)
