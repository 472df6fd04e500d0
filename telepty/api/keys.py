"""Typed application state: one ``web.AppKey`` per service a handler reaches.

The daemon's composition root (``telepty.daemon.create_app``) builds every service
through its constructor and puts each under its key; a handler takes exactly the
services it uses (``request.app[REGISTRY]``), and nothing here knows the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from telepty.api.auth import TrustPolicy
from telepty.bus.hub import EventBus, Subscription
from telepty.bus.ingest import BusIngest
from telepty.clock import utc_now
from telepty.config import Config
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.intake import Intake
from telepty.delivery.profiles import SubmitProfiles
from telepty.metrics import DaemonMetrics
from telepty.relay.service import Relay
from telepty.sessions.identity import SessionIdentities
from telepty.sessions.panes import TmuxPool
from telepty.sessions.registry import SessionRegistry
from telepty.sessions.terminals import Terminals
from telepty.store.audit import InjectAuditRepo
from telepty.store.handoffs import HandoffRepo
from telepty.store.stats import StatsRepo
from telepty.store.threads import ThreadRepo


@dataclass
class DaemonInfo:
    """Who this daemon is, for ``GET /api/meta``."""

    home_id: str  # names the home it serves (telepty.home_id); the CLI checks it
    started_at: str = field(default_factory=utc_now)
    port: int | None = None  # the port it listens on, once it does (None in-process)


CONFIG = web.AppKey("config", Config)
TRUST = web.AppKey("trust", TrustPolicy)
INFO = web.AppKey("info", DaemonInfo)
REGISTRY = web.AppKey("registry", SessionRegistry)
TERMINALS = web.AppKey("terminals", Terminals)
TMUX = web.AppKey("tmux", TmuxPool)
IDENTITIES = web.AppKey("identities", SessionIdentities)
PROFILES = web.AppKey("profiles", SubmitProfiles)
DELIVERIES = web.AppKey("deliveries", DeliveryEngine)
INTAKE = web.AppKey("intake", Intake)
AUDIT = web.AppKey("audit", InjectAuditRepo)
RELAY = web.AppKey("relay", Relay)
BUS = web.AppKey("bus", EventBus)
BUS_INGEST = web.AppKey("bus_ingest", BusIngest)
HANDOFFS = web.AppKey("handoffs", HandoffRepo)
THREADS = web.AppKey("threads", ThreadRepo)
STATS = web.AppKey("stats", StatsRepo)
METRICS = web.AppKey("metrics", DaemonMetrics)
# Every open WebSocket (wrappers, attach clients): closed first at shutdown, because
# aiohttp's cleanup waits for their handlers to return.
WEBSOCKETS = web.AppKey("websockets", set[web.WebSocketResponse])
# Every open bus socket's subscription, attached or not, so shutdown can let each go.
BUS_SOCKETS = web.AppKey("bus_sockets", set[Subscription])
