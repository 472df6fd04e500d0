"""Bus routes: publish (HTTP and WebSocket), the replay-then-live socket, log paging.

The socket's guarantee: with ``since=SEQ`` a subscriber gets every event after SEQ
exactly once and in order, first from the log, then live. The seam works like this:
replay pages from the log until caught up, *then* attach the live subscription, replay
once more from where the log left off (closing the window in between), and from then
on drop live events whose seq was already sent. An event committed before the attach
is in the last replay; one committed after it is fanned out to us; both at once are
deduplicated by seq. No gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from telepty.api.auth import TrustPolicy
from telepty.api.body import MAX_BODY, json_object, json_response, query_int
from telepty.api.bus_fast import FastPublish, FastPublishSite
from telepty.api.keys import SERVICES
from telepty.bus.envelope import KIND_RE
from telepty.bus.hub import BUS_CLOSED, SUBSCRIBER_OVERFLOW, EventBus, Subscription
from telepty.bus.ingest import BusIngest
from telepty.bus.router import TMUX_UNAVAILABLE, TurnRouter
from telepty.clock import to_iso
from telepty.errors import BadRequest, TeleptyError
from telepty.sessions.model import Session
from telepty.store.events import dumps_event

log = logging.getLogger("telepty.api.bus")

BUS_INGEST: web.AppKey[BusIngest] = web.AppKey("bus_ingest")
# Every open bus socket's subscription, attached or not, so shutdown can let each go.
BUS_SOCKETS: web.AppKey[set[Subscription]] = web.AppKey("bus_sockets")

HEARTBEAT_S = 15.0
REPLAY_PAGE = 500
MAX_KINDS = 64
MAX_SEQ = 2**63 - 1  # the log's seqs are SQLite INTEGERs
CLOSE_TIMEOUT_S = 2.0
CLOSE_OVERFLOW = 4429  # "too many": fell behind; reconnect with since
CLOSE_STOPPING = 1001  # going away


# -- query parsing ------------------------------------------------------------------


def parse_kinds(request: web.Request) -> tuple[str, ...]:
    raw = request.query.get("kinds", "")
    kinds = tuple(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))
    if len(kinds) > MAX_KINDS:
        raise BadRequest("invalid_query", f"kinds lists at most {MAX_KINDS} kinds")
    bad = [k for k in kinds if not KIND_RE.match(k)]
    if bad:
        raise BadRequest("invalid_query", f"kinds has invalid kind names: {', '.join(map(repr, bad))}")
    return kinds


def parse_since(request: web.Request) -> int | None:
    raw = request.query.get("since")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("invalid_query", f"since must be a seq (an integer >= 0), got {raw!r}") from None
    if not 0 <= value <= MAX_SEQ:
        raise BadRequest("invalid_query", f"since must be a seq from 0 to {MAX_SEQ}, got {value}")
    return value


def control(frame_kind: str, /, **fields: Any) -> str:
    """A control frame: never logged, no seq, kind under the reserved ``bus.`` prefix."""
    return orjson.dumps({**fields, "kind": frame_kind, "type": frame_kind}).decode()


# -- HTTP ---------------------------------------------------------------------------


async def publish(request: web.Request) -> web.Response:
    """The route as aiohttp serves it. Most publishes never get here: the daemon's
    listening site answers plain ones on a leaner path (``telepty.api.bus_fast``) with
    the same ingest and the same answers; this serves the rest (a query string, chunked
    bodies, a connection already handed to aiohttp) and the in-process test client."""
    body = await json_object(request)
    receipt = await request.app[BUS_INGEST].accept(body, transport="http")
    return json_response(receipt.to_public(), status=202)


async def list_events(request: web.Request) -> web.Response:
    bus = request.app[SERVICES].bus
    since = parse_since(request) or 0
    limit = query_int(request, "limit", 100, 1, 1000)
    kinds = parse_kinds(request)
    events = await bus.events.since(since, limit, kinds)
    first, last, count = await bus.events.bounds()
    return json_response({
        "events": events,
        "next_since": events[-1]["seq"] if events else since,
        "first_seq": first,
        "last_seq": last,
        "retained": count,
        "more": len(events) == limit,
    })


# -- the socket -----------------------------------------------------------------------


@dataclass
class _Cursor:
    sent: int = 0  # the highest seq handed to the socket


class _Sender:
    """One lock around the socket: acks and events come from two tasks."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()

    async def send(self, text: str) -> None:
        async with self.lock:
            await self.ws.send_str(text)

    async def send_event(self, text: str, seq: int, cursor: _Cursor) -> None:
        async with self.lock:
            # Counted as sent before the await: aiohttp hands the whole (uncompressed)
            # frame to the transport before it first yields, so an overflow that cancels
            # us while we wait for the peer to drain has still queued this event for it.
            cursor.sent = seq
            await self.ws.send_str(text)


async def bus_socket(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    ingest = request.app[BUS_INGEST]
    since = parse_since(request)
    kinds = parse_kinds(request)
    receive = request.query.get("receive", "1") not in {"0", "false", "no"}
    # No permessage-deflate: it would compress every event once per subscriber, and
    # fan-out is built on serialising each event once for all of them.
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_BODY, compress=False)
    await ws.prepare(request)
    sender = _Sender(ws)
    sub = Subscription(frozenset(kinds), svc.bus.subscriber_queue)
    sockets = request.app[BUS_SOCKETS]
    sockets.add(sub)
    cursor = _Cursor()
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(_read(ws, sender, ingest), name="telepty-bus-read"),
        asyncio.create_task(sub.dropped.wait(), name="telepty-bus-dropped"),
    ]
    if receive:
        tasks.append(asyncio.create_task(
            _pump(svc.bus, sub, sender, cursor, since, kinds), name="telepty-bus-pump"
        ))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, ConnectionError):
                log.info("bus subscriber went away: %s", exc)  # a peer hanging up is routine
            elif exc is not None:
                log.error("bus socket failed", exc_info=exc)
    finally:
        svc.bus.unsubscribe(sub)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sockets.discard(sub)
    if sub.drop_reason == SUBSCRIBER_OVERFLOW:
        await _close(request, ws, sender, CLOSE_OVERFLOW, SUBSCRIBER_OVERFLOW, control(
            "bus.error", error=SUBSCRIBER_OVERFLOW,
            detail=f"this subscriber fell {svc.bus.subscriber_queue} events behind and was "
                   f"disconnected; reconnect with since={cursor.sent} to resume",
            resume_since=cursor.sent,
        ))
    elif sub.drop_reason == BUS_CLOSED:
        resume = {"resume_since": cursor.sent} if receive else {}
        await _close(request, ws, sender, CLOSE_STOPPING, BUS_CLOSED, control(
            "bus.error", error=BUS_CLOSED, detail="the daemon is stopping" + (
                f"; reconnect with since={cursor.sent} to resume" if receive else ""), **resume,
        ))
    elif not ws.closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S)
    return ws


async def _close(
    request: web.Request, ws: web.WebSocketResponse, sender: _Sender, code: int, reason: str,
    frame: str,
) -> None:
    """Say why, then close; a peer too stuck to take even that is cut off at the transport."""
    if ws.closed:
        return
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await sender.send(frame)
            await ws.close(code=code, message=reason.encode())
    except Exception:
        if request.transport is not None:
            request.transport.abort()


async def _pump(
    bus: EventBus, sub: Subscription, sender: _Sender, cursor: _Cursor,
    since: int | None, kinds: tuple[str, ...],
) -> None:
    if since is None:
        start = await bus.events.last_seq()
    else:
        start = since
        first, _last, _count = await bus.events.bounds()
        if first > since + 1:
            await sender.send(control(
                "bus.gap", since=since, first_seq=first,
                detail=f"events {since + 1}..{first - 1} are past retention and were trimmed",
            ))
    cursor.sent = start
    async for text, seq in _replay(bus, cursor.sent, kinds):
        await sender.send_event(text, seq, cursor)
    bus.attach(sub)
    async for text, seq in _replay(bus, cursor.sent, kinds):
        await sender.send_event(text, seq, cursor)
    await sender.send(control("bus.live", last_seq=cursor.sent))
    while True:
        event = await sub.queue.get()
        if event.seq <= cursor.sent:
            continue  # already sent by the replay
        await sender.send_event(event.text, event.seq, cursor)


async def _replay(bus: EventBus, after: int, kinds: tuple[str, ...]) -> AsyncIterator[tuple[str, int]]:
    while True:
        page = await bus.events.since(after, REPLAY_PAGE, kinds)
        for env in page:
            after = env["seq"]
            yield dumps_event(env), after
        if len(page) < REPLAY_PAGE:
            return


async def _read(ws: web.WebSocketResponse, sender: _Sender, ingest: BusIngest) -> None:
    """Each text frame is one event to publish; each gets an ack or an error frame,
    and a bad one never closes the socket."""
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await sender.send(await _ingest_frame(ingest, msg.data))
        elif msg.type is WSMsgType.BINARY:
            await sender.send(control(
                "bus.error", error="invalid_frame", detail="send events as JSON text frames"
            ))
        else:
            return


async def _ingest_frame(ingest: BusIngest, text: str) -> str:
    message_id = None
    try:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("invalid_json", f"frame is not valid JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("message_id"), str):
            message_id = data["message_id"]
        receipt = await ingest.accept(data, transport="ws")
    except TeleptyError as exc:
        return control("bus.error", **exc.to_dict(), message_id=message_id)
    except Exception:
        log.exception("unexpected error publishing a bus frame")
        return control("bus.error", error="internal_error", message_id=message_id,
                       detail="the daemon hit an unexpected error; see its log")
    ack = receipt.to_public()
    ack["event_kind"] = ack.pop("kind")
    return control("bus.ack", **ack)


# -- wiring ---------------------------------------------------------------------------


def _transport_problem(app: web.Application) -> Any:
    def problem(session: Session) -> str | None:
        svc = app[SERVICES]
        if session.tmux_pane and not svc.tmux.server(session.tmux_socket).available():
            return TMUX_UNAVAILABLE
        return None

    return problem


async def _retention_loop(app: web.Application) -> None:
    """Trim the log by count and age, at start and then periodically."""
    svc = app[SERVICES]
    cfg = svc.config
    while True:
        try:
            cutoff = (
                to_iso(time.time() - cfg.bus_retention_seconds) if cfg.bus_retention_seconds > 0 else None
            )
            deleted = await svc.bus.events.trim(keep_newest=cfg.bus_retention_count, accepted_before=cutoff)
            if deleted:
                log.info("bus log trimmed: %d event(s) past retention", deleted)
        except Exception:
            log.exception("bus retention pass failed")
        await asyncio.sleep(cfg.bus_trim_interval)


def install(app: web.Application) -> None:
    """Routes, the auto-router, the retention task, and closing sockets on shutdown.

    Call after ``app[SERVICES]`` is set; the services' own lifecycle (opening the
    database) must already be in ``cleanup_ctx`` so it runs first.
    """
    svc = app[SERVICES]
    svc.bus.subscriber_queue = svc.config.bus_subscriber_queue
    router = TurnRouter(
        svc.bus, svc.deliveries, svc.registry, machine_id=svc.config.machine_id,
        transport_ready=_transport_problem(app), relay=svc.relay,
    )
    app[BUS_INGEST] = BusIngest(svc.bus, router, max_prompt_bytes=svc.config.max_prompt_bytes)
    app[BUS_SOCKETS] = set()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        retention = asyncio.create_task(_retention_loop(app), name="telepty-bus-retention")
        yield
        retention.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retention
        await router.close()

    async def on_shutdown(app: web.Application) -> None:
        # Subscribers are told and let go before the server waits on open handlers.
        svc.bus.close()
        for sub in list(app[BUS_SOCKETS]):
            sub.drop(BUS_CLOSED)  # sockets that never attached (publish-only) too

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    app.router.add_post("/api/bus/publish", publish)
    app.router.add_get("/api/bus/events", list_events)
    app.router.add_get("/api/bus", bus_socket)


def publish_site(runner: web.AppRunner, host: str, port: int) -> web.TCPSite:
    """The daemon's listening site: connections start on the fast publish path
    (``telepty.api.bus_fast``) and go to the app for everything else. Call after
    ``runner.setup()``."""
    app = runner.app
    svc = app[SERVICES]
    assert runner.server is not None, "runner.setup() first"
    fast = FastPublish(
        runner.server, app[BUS_INGEST], TrustPolicy.from_config(svc.config, svc.token),
        svc.config.max_body_bytes, hold_s=svc.bus.hold_s,
    )
    svc.bus.expect_from(fast)  # batches may wait a moment for its tight-loop publishers
    return FastPublishSite(runner, host, port, fast=fast, reuse_address=True)
