"""``GET /metrics``: Prometheus text exposition of the daemon's state.

Counts of things that have records (sessions, deliveries, the event log) are read from
those records at scrape time; delivery latency is measured live (see
``telepty.metrics``), and the bus reports its own traffic through ``EventBus.stats()``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiohttp import web

from telepty import __version__
from telepty.api.keys import BUS, METRICS, REGISTRY, STATS
from telepty.api.spec import Route, string
from telepty.delivery.model import DeliveryStatus
from telepty.metrics import CONTENT_TYPE, Family, gauge_by, render
from telepty.sessions.model import SessionState

log = logging.getLogger("telepty.api.metrics")


def _bus_stats(bus: Any) -> dict[str, int]:
    """The bus's own counters (``EventBus.stats()``); whatever it cannot say is left out."""
    stats = getattr(bus, "stats", None)
    if not callable(stats):
        return {}
    try:
        out = stats()
    except Exception:
        log.exception("bus stats failed")
        return {}
    if not isinstance(out, dict):
        return {}
    return {k: v for k, v in out.items() if isinstance(v, int) and not isinstance(v, bool)}


async def metrics(request: web.Request) -> web.Response:
    sessions = Counter(str(s.state) for s in request.app[REGISTRY].list())
    deliveries = await request.app[STATS].deliveries_by_status()
    bus = _bus_stats(request.app[BUS])

    events = Family(
        "telepty_bus_events_total", "counter",
        "Bus events since the daemon started: in = accepted into the durable log, "
        "out = handed to live subscribers.",
    )
    for direction in ("in", "out"):
        if f"events_{direction}" in bus:
            events.add(bus[f"events_{direction}"], direction=direction)
    subscribers = Family("telepty_bus_subscribers", "gauge", "Bus subscribers connected now.")
    if "subscribers" in bus:
        subscribers.add(bus["subscribers"])
    dropped = Family(
        "telepty_bus_subscribers_dropped_total", "counter",
        "Bus subscribers cut loose for falling behind, since the daemon started.",
    )
    if "subscribers_dropped" in bus:
        dropped.add(bus["subscribers_dropped"])

    text = render([
        Family("telepty_build_info", "gauge", "The running telepty version.").add(1, version=__version__),
        gauge_by("telepty_sessions", "Sessions known to the daemon, by state.", "state", sessions,
                 known=[s.value for s in SessionState]),
        gauge_by("telepty_deliveries", "Delivery records in the store, by status.", "status",
                 deliveries, known=[s.value for s in DeliveryStatus]),
        request.app[METRICS].delivery_seconds.family(),
        events,
        subscribers,
        dropped,
    ])
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


ROUTES = (
    Route("GET", "/metrics", metrics, "metrics", "Prometheus metrics", "meta",
          ok={200: {"description": "Prometheus text exposition",
                    "content": {"text/plain": {"schema": string()}}}}),
)
