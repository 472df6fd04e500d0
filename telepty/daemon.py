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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from telepty import __version__
from telepty.api.auth import TrustPolicy, auth_middleware
from telepty.api.bus import let_sockets_go, publish_site, retention_loop
from telepty.api.errors import error_middleware
from telepty.api.keys import (
    AUDIT,
    BUS,
    BUS_INGEST,
    BUS_SOCKETS,
    CONFIG,
    DELIVERIES,
    HANDOFFS,
    IDENTITIES,
    INFO,
    INTAKE,
    METRICS,
    PROFILES,
    REGISTRY,
    RELAY,
    STATS,
    TERMINALS,
    THREADS,
    TMUX,
    TRUST,
    WEBSOCKETS,
    DaemonInfo,
)
from telepty.api.openapi import ROUTES
from telepty.api.spec import install
from telepty.bus.envelope import SESSION_STATE_REPORT
from telepty.bus.hub import EventBus
from telepty.bus.ingest import BusIngest
from telepty.bus.nats_fleet import fleet_for
from telepty.bus.router import TurnAckIds, TurnRouter
from telepty.bus.state_reports import StateReports
from telepty.config import Config
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.intake import Intake
from telepty.delivery.profiles import load_profiles
from telepty.delivery.transports.resolver import TransportResolver
from telepty.home_id import ensure_home_id
from telepty.metrics import DaemonMetrics
from telepty.relay.service import Relay
from telepty.runtime_file import DaemonAddress, remove_runtime, write_runtime
from telepty.sessions.identity import SessionIdentities
from telepty.sessions.lifecycle import SessionLifecycle
from telepty.sessions.panes import TmuxPool
from telepty.sessions.registry import SessionRegistry
from telepty.sessions.terminals import Terminals
from telepty.store.audit import InjectAuditRepo
from telepty.store.db import Database
from telepty.store.deliveries import DeliveryRepo
from telepty.store.events import EventRepo
from telepty.store.handoffs import HandoffRepo
from telepty.store.identity import LastReceivedRepo, SessionTokenRepo
from telepty.store.sessions import SessionRepo
from telepty.store.stats import StatsRepo
from telepty.store.threads import ThreadRepo
from telepty.token_file import ensure_token

log = logging.getLogger("telepty.daemon")

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def resource(open_: Callable[[], Awaitable[Any]] | None = None,
             close: Callable[[], Awaitable[Any] | None] | None = None) -> CleanupCtx:
    """One ``cleanup_ctx`` entry: ``open_`` at startup, ``close`` at cleanup (in reverse)."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if open_ is not None:
            await open_()
        yield
        if close is not None:
            done = close()
            if done is not None:
                await done
    return ctx


def background(name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> CleanupCtx:
    """A task that runs for the daemon's life and is cancelled (and awaited) at cleanup."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(work(), name=f"telepty-{name}")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return ctx


async def _liveness_loop(registry: SessionRegistry, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await registry.check_liveness()
        except Exception:
            log.exception("liveness check failed")


async def _quietly(work: Awaitable[Any]) -> None:
    """Best effort at shutdown (the last activity times): a failure must not stop the rest."""
    with contextlib.suppress(Exception):
        await work


def create_app(config: Config) -> web.Application:
    """The application factory and the daemon's one composition root: every service is
    built here, through its constructor, and put under its ``AppKey``. Opening the store
    and starting background work happen at startup, one ``cleanup_ctx`` per resource."""
    config.home.mkdir(parents=True, exist_ok=True)
    trust = TrustPolicy.from_config(config, ensure_token(config.token_path))
    db = Database(config.db_path)
    # TELEPTY_BUS_URL=nats://…: the bus is the fleet's JetStream stream and id@host prompts
    # for machines on it go through their work queues (telepty.bus.nats_fleet).
    fleet = fleet_for(config)
    bus = EventBus(EventRepo(db) if fleet is None else fleet.log, config.machine_id,
                   subscriber_queue=config.bus_subscriber_queue)
    tmux = TmuxPool(config.tmux_bin)
    # A pane's output is its session's activity (the registry hands its clock to the probe).
    registry = SessionRegistry(SessionRepo(db), emit=bus.emit, pane_probe=tmux.pane_alive,
                               pane_owner=tmux.pane_pid)
    identities = SessionIdentities(SessionTokenRepo(db), LastReceivedRepo(db))
    registry.on_removed.append(lambda s: identities.forget([s.id]))  # a removed session's token dies
    registry.on_renamed.append(identities.rename)
    terminals = Terminals(registry, config, identities)  # spawned children get a session token
    audit = InjectAuditRepo(db, keep_content=config.audit_content, max_rows=config.audit_retention_count,
                            max_age_s=config.audit_retention_seconds)
    profiles = load_profiles(config.profiles_path, settle_ms_override=config.settle_ms)
    relay = Relay(config, emit=bus.emit, local=registry, fleet=fleet.queue if fleet is not None else None)
    deliveries = DeliveryRepo(db)
    acks = TurnAckIds(bus, deliveries)  # a routed turn's ids on its delivery's acks
    engine = DeliveryEngine(  # id@host targets become relay pseudo-sessions (telepty.relay.service)
        deliveries, relay.registry(registry),
        TransportResolver(terminals, tmux, profiles, remote=relay.transport_for),
        acks.wrap(relay.emitter(bus)), profiles, config,
    )
    metrics = DaemonMetrics()
    registry.on_exited.append(engine.session_gone)  # a retry wait on a dead pane ends now
    engine.on_final.extend((relay.forget, metrics.observe_delivery, identities.note_final))
    intake = Intake(config, registry, engine, identities, tmux, relay, audit)
    router = TurnRouter(bus, intake, engine, registry, machine_id=config.machine_id)
    reports = StateReports(registry)
    bus.add_listener(reports.on_event)
    ingest = BusIngest(bus, router, max_prompt_bytes=config.max_prompt_bytes,
                       checks={SESSION_STATE_REPORT: reports.check})
    session_lifecycle = SessionLifecycle(
        registry, bus.emit, idle_threshold=config.idle_seconds, health_interval=config.health_interval
    )

    app = web.Application(
        middlewares=[error_middleware, auth_middleware(trust)],
        client_max_size=config.max_body_bytes,
    )
    app[CONFIG] = config
    app[TRUST] = trust
    app[INFO] = DaemonInfo(home_id=ensure_home_id(config.home))
    app[REGISTRY] = registry
    app[TERMINALS] = terminals
    app[TMUX] = tmux
    app[IDENTITIES] = identities
    app[PROFILES] = profiles
    app[DELIVERIES] = engine
    app[INTAKE] = intake
    app[AUDIT] = audit
    app[RELAY] = relay
    app[BUS] = bus
    app[BUS_INGEST] = ingest
    app[HANDOFFS] = HandoffRepo(db)
    app[THREADS] = ThreadRepo(db)
    app[STATS] = StatsRepo(db)
    app[METRICS] = metrics
    app[WEBSOCKETS] = set()
    app[BUS_SOCKETS] = set()

    # Startup runs these in order; cleanup in reverse.
    if fleet is not None:  # first: a NATS server that is not there stops the start here
        app.cleanup_ctx.append(resource(fleet.connect, fleet.close))
    app.cleanup_ctx.extend([
        resource(db.open, db.close),
        resource(close=bus.close),
        resource(registry.load, lambda: _quietly(registry.persist_activity())),
        resource(close=tmux.close),
        resource(close=terminals.close),
        resource(identities.load, identities.flush),
        resource(close=relay.close),
        resource(engine.start, engine.stop),
    ])
    if fleet is not None:  # before the engine stops: items in progress stay unacknowledged
        app.cleanup_ctx.append(resource(lambda: fleet.start(bus, intake, engine), fleet.stop_worker))
    history = bus.events if fleet is None else fleet.own_events()
    app.cleanup_ctx.extend([
        resource(close=router.close),
        background("liveness", lambda: _liveness_loop(registry, config.liveness_interval)),
        background("session-idle", lambda: session_lifecycle.run_idle(history=history)),
        background("session-health", session_lifecycle.run_health),
        background("bus-retention", lambda: retention_loop(bus, config)),
    ])

    async def close_websockets(app: web.Application) -> None:
        for ws in list(app[WEBSOCKETS]):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"daemon stopping")

    app.on_shutdown.append(close_websockets)
    app.on_shutdown.append(let_sockets_go)
    install(app, ROUTES)  # and GET /api/openapi.json describes every one of them
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
    info = app[INFO]
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = publish_site(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(
            f"telepty: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; "
            "choose another port with `telepty daemon --port N` (or TELEPTY_PORT=N)"
        ) from None
    addresses = runner.addresses
    port = addresses[0][1] if addresses else config.port
    info.port = port
    host = config.host if ":" not in config.host else f"[{config.host}]"
    write_runtime(config.runtime_path, DaemonAddress(
        pid=os.getpid(),
        host=config.host,
        port=port,
        url=f"http://{'127.0.0.1' if config.host in ('0.0.0.0', '') else host}:{port}",
        version=__version__,
        started_at=info.started_at,
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
