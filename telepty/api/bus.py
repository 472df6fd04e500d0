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

from telepty.api.body import MAX_BODY, json_object, json_response, query_int
from telepty.api.bus_fast import FastPublish, FastPublishSite
from telepty.api.keys import BUS, BUS_INGEST, BUS_SOCKETS, CONFIG, TRUST
from telepty.api.spec import Route, integer, limit, ok, query, ref, string
from telepty.bus.envelope import KIND_RE
from telepty.bus.hub import BUS_CLOSED, SUBSCRIBER_OVERFLOW, EventBus, Subscription
from telepty.bus.ingest import BusIngest
from telepty.clock import to_iso
from telepty.config import Config
from telepty.errors import BadRequest, ErrorCode, TeleptyError
from telepty.store.events import dumps_event

log = logging.getLogger("telepty.api.bus")

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
        raise BadRequest(ErrorCode.INVALID_QUERY, f"kinds lists at most {MAX_KINDS} kinds")
    bad = [k for k in kinds if not KIND_RE.match(k)]
    if bad:
        raise BadRequest(ErrorCode.INVALID_QUERY,
                         f"kinds has invalid kind names: {', '.join(map(repr, bad))}")
    return kinds


def parse_since(request: web.Request) -> int | None:
    raw = request.query.get("since")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(ErrorCode.INVALID_QUERY,
                         f"since must be a seq (an integer >= 0), got {raw!r}") from None
    if not 0 <= value <= MAX_SEQ:
        raise BadRequest(ErrorCode.INVALID_QUERY, f"since must be a seq from 0 to {MAX_SEQ}, got {value}")
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
    bus = request.app[BUS]
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
    bus = request.app[BUS]
    ingest = request.app[BUS_INGEST]
    since = parse_since(request)
    kinds = parse_kinds(request)
    receive = request.query.get("receive", "1") not in {"0", "false", "no"}
    # No permessage-deflate: it would compress every event once per subscriber, and
    # fan-out is built on serialising each event once for all of them.
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_BODY, compress=False)
    await ws.prepare(request)
    sender = _Sender(ws)
    sub = Subscription(frozenset(kinds), bus.subscriber_queue)
    sockets = request.app[BUS_SOCKETS]
    sockets.add(sub)
    cursor = _Cursor()
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(_read(ws, sender, ingest), name="telepty-bus-read"),
        asyncio.create_task(sub.dropped.wait(), name="telepty-bus-dropped"),
    ]
    if receive:
        tasks.append(asyncio.create_task(
            _pump(bus, sub, sender, cursor, since, kinds), name="telepty-bus-pump"
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
        bus.unsubscribe(sub)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sockets.discard(sub)
    if sub.drop_reason == SUBSCRIBER_OVERFLOW:
        await _close(request, ws, sender, CLOSE_OVERFLOW, SUBSCRIBER_OVERFLOW, control(
            "bus.error", error=SUBSCRIBER_OVERFLOW,
            detail=f"this subscriber fell {bus.subscriber_queue} events behind and was "
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
                "bus.error", error=ErrorCode.INVALID_FRAME, detail="send events as JSON text frames"
            ))
        else:
            return


async def _ingest_frame(ingest: BusIngest, text: str) -> str:
    message_id = None
    try:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(ErrorCode.INVALID_JSON, f"frame is not valid JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("message_id"), str):
            message_id = data["message_id"]
        receipt = await ingest.accept(data, transport="ws")
    except TeleptyError as exc:
        return control("bus.error", **exc.to_dict(), message_id=message_id)
    except Exception:
        log.exception("unexpected error publishing a bus frame")
        return control("bus.error", error=ErrorCode.INTERNAL_ERROR, message_id=message_id,
                       detail="the daemon hit an unexpected error; see its log")
    ack = receipt.to_public()
    ack["event_kind"] = ack.pop("kind")
    return control("bus.ack", **ack)


# -- wiring (telepty.daemon.create_app) --------------------------------------------------


async def retention_loop(bus: EventBus, cfg: Config) -> None:
    """Trim the log by count and age, at start and then periodically."""
    while True:
        try:
            cutoff = (
                to_iso(time.time() - cfg.bus_retention_seconds) if cfg.bus_retention_seconds > 0 else None
            )
            deleted = await bus.events.trim(keep_newest=cfg.bus_retention_count, accepted_before=cutoff)
            if deleted:
                log.info("bus log trimmed: %d event(s) past retention", deleted)
        except Exception:
            log.exception("bus retention pass failed")
        await asyncio.sleep(cfg.bus_trim_interval)


async def let_sockets_go(app: web.Application) -> None:
    """At shutdown: subscribers are told and let go before the server waits on open handlers."""
    app[BUS].close()
    for sub in list(app[BUS_SOCKETS]):
        sub.drop(BUS_CLOSED)  # sockets that never attached (publish-only) too


SINCE = query("since", integer(0, MAX_SEQ), "the last seq already seen")
KINDS = query("kinds", string(), f"comma-separated kinds to keep (at most {MAX_KINDS})")

ROUTES = (
    # The body is read by the envelope's own validator (telepty.bus.envelope), the one the
    # fast path uses too; the document describes it as BusEvent (telepty.api.answers).
    Route("POST", "/api/bus/publish", publish, "publishEvent",
          "Publish an event; a turn_request is routed into its target session", "bus",
          body=ref("BusEvent"), ok={202: ok("BusReceipt", "logged (and routed)")},
          errors={400: "invalid_event / missing_field / invalid_field / invalid_kind / reserved_kind / "
                       "conflicting_kind / invalid_target",
                  413: "too_large: the turn_request prompt is over the limit"}),
    Route("GET", "/api/bus/events", list_events, "listEvents", "Page through the durable event log", "bus",
          params=(SINCE, limit(100, 1000), KINDS), ok={200: ok("BusPage")}, errors={400: "invalid_query"}),
    Route("GET", "/api/bus", bus_socket, "busSocket",
          "WebSocket: replay from since, then every live event; frames sent are published", "bus",
          params=(SINCE, KINDS, query("receive", string(), "0, false or no: publish only")), websocket=True,
          errors={400: "invalid_query"}),
)


def publish_site(runner: web.AppRunner, host: str, port: int) -> web.TCPSite:
    """The daemon's listening site: connections start on the fast publish path
    (``telepty.api.bus_fast``) and go to the app for everything else. Call after
    ``runner.setup()``: the fast path exists only once the server does, so it is the
    one publisher the bus is told of afterwards (it may hold a batch for its tight-loop
    publishers)."""
    app = runner.app
    assert runner.server is not None, "runner.setup() first"
    bus = app[BUS]
    fast = FastPublish(runner.server, app[BUS_INGEST], app[TRUST], app[CONFIG].max_body_bytes,
                       hold_s=bus.hold_s)
    bus.expect_from(fast)
    return FastPublishSite(runner, host, port, fast=fast, reuse_address=True)
