"""``GET /api/peers``: each peer in peers.json with reachability, version, machine id, rtt.

Tokens are never shown, only whether a peer has one (``has_token``).
"""

from __future__ import annotations

from aiohttp import web

from telepty.api.body import json_response
from telepty.api.keys import SERVICES


async def list_peers(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    peers = await svc.relay.peers_status()
    return json_response({"machine_id": svc.config.machine_id, "hop_limit": svc.config.hop_limit,
                          "peers_file": str(svc.config.peers_path), "peers": peers})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/peers", list_peers)
