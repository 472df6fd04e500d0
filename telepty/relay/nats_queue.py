"""``id@host`` delivery through a fleet's NATS JetStream work queues.

Every daemon on a NATS bus owns one work queue (stream ``telepty-work-<machine>``, see
``telepty.bus.nats_names``) that only it consumes. A prompt for ``s@B`` is still a relay
delivery on the sender A (a pseudo-session with its own record, per-target FIFO, retry,
events: ``telepty.relay.service``); its one attempt puts a work item on B's queue and
then follows B's ``relay.status`` events on the fleet's event stream until B reports a
final outcome, which it mirrors. So:

- B down: the item waits in B's queue; A's record says ``delivering`` at stage
  ``forward`` with ``evidence.relay.remote_status: queued`` all along, and B delivers
  it once when it comes back.
- B takes an item, makes a local delivery keyed ``relay:A:<A's delivery id>`` (the key
  the HTTP relay uses too), and acknowledges the item only once that delivery is final
  and its outcome is on the event stream. B killed meanwhile: the item is handed out
  again, the key finds the delivery B's restart already resumed, nothing is typed twice.
- A killed meanwhile: A's restart resumes the record (stage ``forward`` is safe to
  repeat), sends the item again (same message id: stored once) and reads B's statuses
  from the cursor it recorded before sending, so an outcome B reported while A was down
  is found.

A host with no work queue on the server is no machine of this fleet: it goes to the HTTP
relay as before (peers.json, ``ip[:port]``, Tailscale).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from telepty.bus.hub import LoggedEvent
from telepty.bus.nats_link import ACK_WAIT_S, NatsLink
from telepty.bus.nats_log import BUS_UNAVAILABLE, HEADROOM, MachineEvents
from telepty.bus.nats_names import (
    WORKER,
    machine_of_subject,
    work_stream,
    work_subject,
)
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.intake import Intake, Submission
from telepty.delivery.model import STAGE_CHECK_READY, STAGE_FORWARD, Delivery, DeliveryError, Origin
from telepty.delivery.request import parse_inject
from telepty.delivery.transports.base import DeliveryOutcome, StageCallback
from telepty.errors import TeleptyError, Unavailable

log = logging.getLogger("telepty.relay.nats")

RELAY_STATUS = "relay.status"
FINAL_STATUSES = frozenset({"delivered", "failed", "cancelled"})
ITEM_VERSION = 1
KEEPALIVE_S = ACK_WAIT_S / 3  # "still working on it" to the server, well inside its ack wait
CATCH_UP_PAGE = 500


# -- the sender's side -----------------------------------------------------------------------


@dataclass
class _Waiter:
    host: str  # lower-cased machine id the item went to
    info: dict[str, Any]  # the record's evidence["relay"], updated as statuses arrive
    final: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class FleetQueue:
    """Which hosts are machines of the fleet, and forwarding to their work queues."""

    def __init__(self, link: NatsLink, machine_id: str, last_seq: Callable[[], Awaitable[int]]) -> None:
        self.link = link
        self.machine_id = machine_id
        self.last_seq = last_seq  # the event stream's tail: where to read statuses from
        self._known: set[str] = set()
        self._waiting: dict[str, _Waiter] = {}  # our delivery id → its waiter

    async def knows(self, host: str) -> bool:
        """Whether ``host`` is a machine of the fleet (its daemon has made its work queue)."""
        h = host.lower()
        if h in self._known:
            return True
        try:
            info = await self.link.stream_info(work_stream(h))
        except Exception as exc:
            raise Unavailable(BUS_UNAVAILABLE, f"cannot ask the NATS server whether {host!r} is a "
                              f"machine of the fleet: {type(exc).__name__}: {exc}") from None
        if info is None:
            return False
        self._known.add(h)
        return True

    def forwarder(self, http: Any) -> QueuedForwarder:
        return QueuedForwarder(self, http)

    # -- statuses from the event stream ---------------------------------------------------

    def on_event(self, subject: str, event: LoggedEvent) -> None:
        """The event feed's listener: a status about one of our forwarded deliveries."""
        if event.kind == RELAY_STATUS:
            self._apply(machine_of_subject(subject), event)

    def _apply(self, sender: str, env: dict[str, Any]) -> None:
        if str(env.get("request_host", "")).lower() != self.machine_id.lower():
            return
        waiter = self._waiting.get(str(env.get("request_delivery_id")))
        if waiter is None or sender.lower() != waiter.host or waiter.final.done():
            return  # not ours, or not from the machine we sent it to
        status = env.get("status")
        waiter.info.update(
            remote_status=status, remote_delivery_id=env.get("delivery_id"),
            remote_session_id=env.get("session_id"), remote_attempts=env.get("attempts"),
            remote_reason=env.get("reason"),
        )
        if status in FINAL_STATUSES:
            waiter.final.set_result(dict(env))

    async def _catch_up(self, waiter: _Waiter, after: int) -> None:
        """Statuses already on the stream (reported while we were not listening)."""
        events = MachineEvents(self.link, waiter.host)
        while not waiter.final.done():
            page = await events.since(after, CATCH_UP_PAGE, (RELAY_STATUS,))
            for env in page:
                after = int(env["seq"])
                self._apply(str(env.get("source_host", "")), env)
            if len(page) < CATCH_UP_PAGE:
                return

    # -- one attempt ------------------------------------------------------------------------

    async def forward(self, http: Any, d: Delivery, on_stage: StageCallback) -> DeliveryOutcome:
        host = http.host.lower()
        prior = d.evidence.get("relay") if isinstance(d.evidence, dict) else None
        try:
            resumed = isinstance(prior, dict) and prior.get("via") == "nats"
            if resumed and isinstance(prior.get("events_since"), int):  # type: ignore[union-attr]
                cursor = int(prior["events_since"])  # resumed: statuses may have come meanwhile
            else:
                cursor = await self.last_seq()
        except Exception as exc:
            raise DeliveryError(BUS_UNAVAILABLE, f"cannot read the NATS event stream: {exc}",
                                stage=STAGE_FORWARD, retryable=True) from None
        hop = http.relay.hop_for(d)
        info: dict[str, Any] = {"via": "nats", "peer": http.host, "stream": work_stream(host), "hop": hop,
                                "remote_session": http.remote_session, "events_since": cursor,
                                "remote_status": "queued"}
        evidence = {"relay": info}
        d.evidence = evidence  # persisted with the forward stage: a restart resumes from here
        await on_stage(STAGE_FORWARD)
        item = orjson.dumps({
            "v": ITEM_VERSION, "origin": self.machine_id, "delivery_id": d.id,
            "session": http.remote_session, "hop": hop, "request": http.forward_body(d, d.no_enter),
        })
        if len(item) + HEADROOM > self.link.max_payload:
            raise DeliveryError("too_large", f"the prompt is too large for the NATS server ({len(item)} "
                                f"bytes of work item, max_payload {self.link.max_payload}; docs/fleet.md)",
                                stage=STAGE_FORWARD, evidence=evidence)
        waiter = _Waiter(host, info)
        self._waiting[d.id] = waiter
        try:
            try:
                ack = await self.link.js.publish(
                    work_subject(host), item, timeout=5.0, stream=work_stream(host),
                    headers={"Nats-Msg-Id": f"{self.machine_id}:{d.id}"},
                )
            except Exception as exc:
                # Stored or not, sending it again is safe: the server keeps one per message id
                # within its window, and B's delivery key keeps one after that.
                raise DeliveryError(BUS_UNAVAILABLE, f"could not queue the prompt for {http.host} on NATS: "
                                    f"{type(exc).__name__}: {exc}", stage=STAGE_FORWARD, retryable=True,
                                    evidence=evidence) from None
            info["work_seq"] = int(ack.seq)
            log.info("queued delivery %s for %s (work seq %s)", d.id, http.session.id, ack.seq)
            await self._catch_up(waiter, cursor)
            final = await waiter.final
        finally:
            self._waiting.pop(d.id, None)
        return self._mirror(http, d, final, evidence)

    def _mirror(self, http: Any, d: Delivery, final: dict[str, Any],
                evidence: dict[str, Any]) -> DeliveryOutcome:
        info = evidence["relay"]
        info["machine_id"] = final.get("source_host")
        info["remote_confirmed"] = final.get("confirmed")
        if final.get("status") == "delivered":
            http.relay.note_written_on(d.id, str(final.get("source_host") or http.host))
            return DeliveryOutcome(confirmed=str(final.get("confirmed") or "unverified"), detail=evidence)
        reason = str(final.get("reason") or final.get("status") or "failed")
        raise DeliveryError(reason, f"on peer {http.host}: {final.get('detail') or reason}",
                            stage=STAGE_FORWARD, evidence=evidence)


class QueuedForwarder:
    """A relay pseudo-session's way out: the fleet's work queue when the host is a machine
    of the fleet, else the HTTP relay (``PeerForwarder``) it wraps."""

    def __init__(self, queue: FleetQueue, http: Any) -> None:
        self.queue = queue
        self.http = http
        self.via_queue = False

    async def reachable(self) -> None:
        try:
            self.via_queue = await self.queue.knows(self.http.host)
        except TeleptyError as exc:
            raise DeliveryError(exc.code, exc.detail, stage=STAGE_CHECK_READY, retryable=True) from None
        if not self.via_queue:
            await self.http.reachable()

    async def forward(self, d: Delivery, on_stage: StageCallback) -> DeliveryOutcome:
        if self.via_queue:
            return await self.queue.forward(self.http, d, on_stage)
        return await self.http.forward(d, on_stage)


# -- the target's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkItem:
    origin: str  # the sender's machine id
    delivery_id: str  # the sender's record
    session: str  # the session (id or alias) on this machine
    hop: int
    request: dict[str, Any]  # an inject body

    @classmethod
    def parse(cls, data: bytes) -> WorkItem:
        raw = orjson.loads(data)
        if not isinstance(raw, dict) or raw.get("v") != ITEM_VERSION:
            raise ValueError("not a telepty work item (version 1)")
        fields = {k: raw.get(k) for k in ("origin", "delivery_id", "session")}
        named = all(isinstance(v, str) and v for v in fields.values())
        if not named or not isinstance(raw.get("request"), dict):
            raise ValueError("a work item needs origin, delivery_id, session and request")
        hop = raw.get("hop")
        return cls(**fields, hop=hop if isinstance(hop, int) else 1, request=raw["request"])  # type: ignore[arg-type]

    @property
    def key(self) -> str:
        return f"relay:{self.origin}:{self.delivery_id}"


Emit = Callable[..., Awaitable[Any]]


class WorkQueueWorker:
    """Takes this machine's work items, delivers them, reports, then acknowledges."""

    def __init__(self, link: NatsLink, machine_id: str, intake: Intake, engine: DeliveryEngine, emit: Emit, *,
                 max_prompt_bytes: int) -> None:
        self.link = link
        self.machine_id = machine_id
        self.intake = intake
        self.engine = engine
        self.emit = emit
        self.max_prompt_bytes = max_prompt_bytes
        self._psub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._following: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        stream = work_stream(self.machine_id)
        self._psub = await self.link.js.pull_subscribe_bind(durable=WORKER, stream=stream)
        self._task = asyncio.create_task(self._run(), name="telepty-nats-worker")

    async def _run(self) -> None:
        while not self._stopping:
            try:
                msgs = await self._psub.fetch(16, timeout=5.0)
            except TimeoutError:
                continue  # nothing queued: ask again
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server is away; the client reconnects by itself
                log.info("nats worker: fetch failed: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)  # the pause before asking a server that just failed
                continue
            for msg in msgs:  # in order: submitting one by one keeps each session's FIFO
                await self._take(msg)

    async def _take(self, msg: Any) -> None:
        try:
            item = WorkItem.parse(msg.data)
        except ValueError as exc:
            log.warning("nats worker: dropping a malformed work item: %s", exc)
            with contextlib.suppress(Exception):
                await msg.term()
            return
        try:
            req = parse_inject(item.request, max_prompt_bytes=self.max_prompt_bytes)
            d = (await self.intake.accept(Submission(
                target=item.session, origin=Origin.API, request=req, daemon_key=item.key, hop=item.hop,
            ))).delivery
        except TeleptyError as exc:  # no such session, bad request …: final, nothing was made
            try:
                await self._report(item, None, status="failed", reason=exc.code, detail=exc.detail)
                await msg.ack()
            except Exception:
                log.exception("nats worker: could not report %s; it will be handed out again", item.key)
            return
        log.info("nats worker: took %s from %s as delivery %s", item.key, item.origin, d.id)
        task = asyncio.create_task(self._follow(item, d, msg), name=f"telepty-nats-follow:{d.id}")
        self._following.add(task)
        task.add_done_callback(self._following.discard)

    async def _follow(self, item: WorkItem, d: Delivery, msg: Any) -> None:
        """Report each status change of ``d``; once final, report that and acknowledge."""
        try:
            await self._report_until_final(item, d, msg)
        except asyncio.CancelledError:
            raise
        except Exception:  # unacknowledged, so the item comes back and this starts over
            log.exception("nats worker: following %s failed", d.id)

    async def _report_until_final(self, item: WorkItem, d: Delivery, msg: Any) -> None:
        seen: tuple[Any, ...] | None = None
        while not d.final:
            now = (str(d.status), d.attempts, d.reason)
            if now != seen:
                with contextlib.suppress(Exception):  # a lost intermediate status only delays the view
                    await self._report(item, d)
                seen = now
            d = await self.engine.wait(d.id, KEEPALIVE_S)
            if self._stopping:
                return  # not acknowledged: handed out again to the next daemon here
            with contextlib.suppress(Exception):
                await msg.in_progress()
        while not self._stopping:
            try:
                await self._report(item, d)
                await msg.ack()
                return
            except Exception as exc:
                log.info("nats worker: could not report %s yet: %s", d.id, exc)
                await asyncio.sleep(1.0)  # the pause before trying a server that just failed

    async def _report(self, item: WorkItem, d: Delivery | None, **over: Any) -> None:
        fields: dict[str, Any] = {
            "request_host": item.origin, "request_delivery_id": item.delivery_id,
            "delivery_id": None, "session_id": None, "status": None, "reason": None, "detail": None,
            "attempts": 0, "confirmed": None,
        }
        if d is not None:
            fields.update(delivery_id=d.id, session_id=d.session_id, status=str(d.status), reason=d.reason,
                          detail=d.detail, attempts=d.attempts, confirmed=d.confirmed)
        fields.update(over)
        await self.emit(RELAY_STATUS, target=f"{item.session}", **fields)

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._task, *self._following) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._psub is not None:
            with contextlib.suppress(Exception):
                await self._psub.unsubscribe()
