"""``GET /api/peers``: each peer in peers.json with reachability, version, machine id, rtt.

Tokens are never shown, only whether a peer has one (``has_token``).
"""

from __future__ import annotations

from aiohttp import web

from telepty.api.body import json_response
from telepty.api.keys import CONFIG, RELAY
from telepty.api.spec import Route, answer, array, integer, obj, string


async def list_peers(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    peers = await request.app[RELAY].peers_status()
    return json_response({"machine_id": config.machine_id, "hop_limit": config.hop_limit,
                          "peers_file": str(config.peers_path), "peers": peers})


ROUTES = (
    Route("GET", "/api/peers", list_peers, "listPeers",
          "Peers from peers.json, with reachability (never their tokens)", "meta",
          ok={200: answer(obj({"machine_id": string(), "hop_limit": integer(), "peers_file": string(),
                               "peers": array({"type": "object"})},
                              ("machine_id", "hop_limit", "peers_file", "peers")), "OK")}),
)
