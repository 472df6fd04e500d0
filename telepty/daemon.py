"""Builds the daemon: wires store, registry, bus and routes into one aiohttp app.

``create_app`` is the factory tests use in-process; ``run_daemon`` adds what only a
real process needs: the singleton lock, the listening socket, and signal handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from telepty import __version__
from telepty.api import bus as bus_routes
from telepty.api import deliveries as delivery_routes
from telepty.api import fanout as fanout_routes
from telepty.api import handoffs as handoff_routes
from telepty.api import handoffs_v1 as handoff_v1_routes
from telepty.api import injects as inject_audit_routes
from telepty.api import meta as meta_routes
from telepty.api import metrics as metrics_routes
from telepty.api import openapi as openapi_routes
from telepty.api import raw_keys as raw_keys_routes
from telepty.api import replies as reply_routes
from telepty.api import session_state as session_state_routes
from telepty.api import sessions as session_routes
from telepty.api import terminals as terminal_routes
from telepty.api import threads as thread_routes
from telepty.api.auth import TrustPolicy, auth_middleware
from telepty.api.errors import error_middleware
from telepty.api.keys import SERVICES
from telepty.bus.hub import EventBus
from telepty.bus.nats_fleet import fleet_for
from telepty.bus.router import TurnAckIds
from telepty.clock import utc_now
from telepty.config import Config
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.profiles import SubmitProfiles, load_profiles
from telepty.delivery.transports.resolver import TransportResolver
from telepty.metrics import DaemonMetrics
from telepty.relay import routes as relay_routes
from telepty.relay.service import Relay
from telepty.runtime_file import DaemonAddress, remove_runtime, write_runtime
from telepty.sessions.identity import SessionIdentities
from telepty.sessions.lifecycle import SessionLifecycle
from telepty.sessions.model import Session
from telepty.sessions.panes import TmuxPool
from telepty.sessions.registry import SessionRegistry
from telepty.sessions.terminals import Terminals
from telepty.store.audit import AuditingDeliveryRepo, InjectAuditRepo
from telepty.store.db import Database
from telepty.store.events import EventRepo
from telepty.store.handoffs import HandoffRepo
from telepty.store.identity import LastReceivedRepo, SessionTokenRepo
from telepty.store.sessions import SessionRepo
from telepty.store.stats import StatsRepo
from telepty.store.threads import ThreadRepo
from telepty.tmux import TmuxServer
from telepty.token_file import ensure_token

log = logging.getLogger("telepty.daemon")

@dataclass
class Services:
    config: Config
    db: Database
    registry: SessionRegistry
    bus: EventBus
    token: str
    terminals: Terminals
    tmux: TmuxPool
    deliveries: DeliveryEngine
    profiles: SubmitProfiles
    handoffs: HandoffRepo
    threads: ThreadRepo
    stats: StatsRepo
    metrics: DaemonMetrics
    lifecycle: SessionLifecycle
    identities: SessionIdentities  # session tokens (hashes) and each session's last reply_to
    audit: InjectAuditRepo  # every accepted injection, hashed
    relay: Relay  # id@host targets: peers, relayed deliveries (telepty.relay)
    started_at: str = field(default_factory=utc_now)
    bound_port: int | None = None
    capabilities: list[str] = field(default_factory=lambda: list(meta_routes.CAPABILITIES))
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    # Every open WebSocket (wrappers, attach clients, bus subscribers): closed first at
    # shutdown, because aiohttp's cleanup waits for their handlers to return.
    websockets: set[web.WebSocketResponse] = field(default_factory=set)
    extras: dict[str, Any] = field(default_factory=dict)

    def tmux_for(self, session: Session) -> TmuxServer | None:
        return self.tmux.for_session(session)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.background.append(task)
        return task


async def _liveness_loop(svc: Services) -> None:
    while True:
        await asyncio.sleep(svc.config.liveness_interval)
        try:
            await svc.registry.check_liveness()
        except Exception:
            log.exception("liveness check failed")


def create_app(config: Config) -> web.Application:
    """The application factory. Opening the store happens at startup, not here."""
    config.home.mkdir(parents=True, exist_ok=True)
    token = ensure_token(config.token_path)
    db = Database(config.db_path)
    # TELEPTY_BUS_URL=nats://…: the bus is the fleet's JetStream stream and id@host prompts
    # for machines on it go through their work queues (telepty.bus.nats_fleet).
    fleet = fleet_for(config)
    bus = EventBus(EventRepo(db) if fleet is None else fleet.log, config.machine_id)
    tmux = TmuxPool(config.tmux_bin)
    registry = SessionRegistry(SessionRepo(db), emit=bus.emit, pane_probe=tmux.pane_alive)
    tmux.on_output = registry.touch  # a pane's output is its session's activity
    terminals = Terminals(registry, config)
    identities = SessionIdentities(SessionTokenRepo(db), LastReceivedRepo(db))
    terminals.identities = identities  # spawned children get a session token
    registry.on_removed.append(lambda s: identities.forget([s.id]))  # a removed session's token dies
    registry.on_renamed.append(identities.rename)
    audit = InjectAuditRepo(db, keep_content=config.audit_content, max_rows=config.audit_retention_count,
                            max_age_s=config.audit_retention_seconds)
    profiles = load_profiles(config.profiles_path, settle_ms_override=config.settle_ms)
    relay = Relay(config, emit=bus.emit)
    acks = TurnAckIds(bus)  # a routed turn's ids on its delivery's acks
    engine = DeliveryEngine(  # id@host targets become relay pseudo-sessions (telepty.relay.service)
        AuditingDeliveryRepo(db, audit), relay.registry(registry),
        TransportResolver(terminals, tmux, profiles, remote=relay.transport_for),
        acks.wrap(relay.emitter(bus)), profiles, config
    )
    relay.engine = acks.engine = engine
    if fleet is not None:
        relay.fleet = fleet.queue
    registry.on_exited.append(engine.session_gone)  # a retry wait on a dead pane ends now
    engine.on_final.append(relay.forget)
    metrics = DaemonMetrics()
    engine.on_final.append(metrics.observe_delivery)
    engine.on_final.append(identities.note_final)
    session_lifecycle = SessionLifecycle(
        registry, bus.emit, idle_threshold=config.idle_seconds, health_interval=config.health_interval
    )
    svc = Services(config=config, db=db, registry=registry, bus=bus, token=token,
                   terminals=terminals, tmux=tmux, deliveries=engine, profiles=profiles,
                   handoffs=HandoffRepo(db), threads=ThreadRepo(db), stats=StatsRepo(db),
                   metrics=metrics, lifecycle=session_lifecycle, identities=identities, audit=audit,
                   relay=relay)

    policy = TrustPolicy.from_config(config, token)
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(policy)],
        client_max_size=config.max_body_bytes,
    )
    app[SERVICES] = svc

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if fleet is not None:
            await fleet.connect()  # first: a NATS server that is not there stops the start here
        await db.open()
        await registry.load()
        await identities.load()
        await engine.start()
        if fleet is not None:
            await fleet.start(bus, engine)
        svc.spawn(_liveness_loop(svc), "liveness")
        history = bus.events if fleet is None else fleet.own_events()
        svc.spawn(session_lifecycle.run_idle(history=history), "session-idle")
        svc.spawn(session_lifecycle.run_health(), "session-health")
        yield
        if fleet is not None:
            await fleet.stop_worker()
        await engine.stop()
        await relay.close()
        await identities.flush()
        for task in svc.background:
            task.cancel()
        for task in svc.background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await terminals.close()
        await tmux.close()
        with contextlib.suppress(Exception):
            await registry.persist_activity()
        bus.close()
        if fleet is not None:
            await fleet.close()
        await db.close()

    async def close_websockets(app: web.Application) -> None:
        for ws in list(svc.websockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"daemon stopping")

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_websockets)
    meta_routes.add_routes(app)
    session_routes.add_routes(app)
    terminal_routes.add_routes(app)
    fanout_routes.add_routes(app)  # before /api/sessions/{id}/inject: "multicast" is not an id
    reply_routes.add_routes(app)
    inject_audit_routes.add_routes(app)
    delivery_routes.add_routes(app)
    raw_keys_routes.add_routes(app)
    bus_routes.install(app)  # after the lifecycle above: its retention task needs the open db
    session_state_routes.add_routes(app)  # after the bus: state reports are bus events
    handoff_routes.add_routes(app)
    handoff_v1_routes.add_routes(app)  # the Node.js CLI's /api/handoff
    thread_routes.add_routes(app)
    metrics_routes.add_routes(app)
    relay_routes.add_routes(app)
    openapi_routes.add_routes(app)  # GET /api/openapi.json describes every route above
    return app


# -- the real process -----------------------------------------------------------


class AlreadyRunning(RuntimeError):
    pass


class DaemonLock:
    """An flock on ``daemon.pid``: held for the daemon's life, released by the kernel.

    flock rather than "does the pid file exist" because a kill -9 leaves the file
    behind but always releases the lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    app = create_app(config)
    svc = app[SERVICES]
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = bus_routes.publish_site(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(
            f"telepty: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; "
            "choose another port with `telepty daemon --port N` (or TELEPTY_PORT=N)"
        ) from None
    server = site._server  # aiohttp exposes no public accessor for the bound port
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else config.port
    svc.bound_port = port
    host = config.host if ":" not in config.host else f"[{config.host}]"
    write_runtime(config.runtime_path, DaemonAddress(
        pid=os.getpid(),
        host=config.host,
        port=port,
        url=f"http://{'127.0.0.1' if config.host in ('0.0.0.0', '') else host}:{port}",
        version=__version__,
        started_at=svc.started_at,
    ))
    print(
        f"telepty {__version__} listening on {config.host}:{port} "
        f"(pid {os.getpid()}, home {config.home})",
        file=sys.stderr,
        flush=True,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        remove_runtime(config.runtime_path)
        await runner.cleanup()
        print("telepty: daemon stopped", file=sys.stderr, flush=True)


def run_daemon(config: Config) -> int:
    logging.basicConfig(
        level=getattr(logging, config.log_level, logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    lock = DaemonLock(config.lock_path)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(
            f"telepty: a daemon is already running for {config.home} (pid {exc}); "
            "stop it first or set TELEPTY_HOME to another directory",
            file=sys.stderr,
        )
        return 1
    try:
        asyncio.run(serve(config))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 1
        raise
    finally:
        lock.release()
    return 0
