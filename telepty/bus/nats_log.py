"""The bus log on NATS JetStream: one stream for every daemon of a fleet.

``NatsEventLog`` is what ``EventBus`` appends to and what the bus routes read (the same
methods as the SQLite ``EventRepo``), with the stream sequence as ``seq``: strictly
increasing across the whole fleet, never reused, so a cursor taken on one daemon means
the same on every other. The event's ``message_id`` is the JetStream message id, so a
republished event (a publisher retrying, a daemon resending after a reconnect) is
stored once within the stream's duplicate window, and its receipt carries the first
copy's seq with ``duplicate: true``.

Because other daemons append too, the log is *shared*: the bus does not hand its own
commits to subscribers (they would arrive out of order with everyone else's). Instead
``EventFeed`` reads the stream in order, every machine's events, and gives each to the
bus's subscribers; this daemon's own commits still reach its listeners at once.

Retention is the stream's own (``max_msgs``/``max_age`` set when the stream is made), so
``trim`` has nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson

from telepty.bus.hub import LoggedEvent
from telepty.bus.nats_link import DUPLICATE_WINDOW_S, NatsLink
from telepty.bus.nats_names import (
    EVENTS_ALL,
    EVENTS_STREAM,
    event_subject,
    events_filter,
)
from telepty.errors import ErrorCode, TeleptyError, TooLarge, Unavailable
from telepty.store.events import Appended, dumps_event

log = logging.getLogger("telepty.bus.nats")

BUS_UNAVAILABLE = ErrorCode.BUS_UNAVAILABLE
PUBLISH_DEADLINE_S = 10.0  # a publish not acknowledged by then fails (503): outlasts a server restart
ACK_TIMEOUT_S = 3.0  # one round of waiting for acknowledgements before sending again
HEADROOM = 1024  # headers and protocol around an event, within the server's max_payload
PAGE = 256
RECENT_IDS = 16384  # message ids this daemon appended, for by_message_id


class NatsEventLog:
    """The EventRepo interface over the fleet's JetStream stream."""

    shared = True  # other daemons append too: subscribers are fed by EventFeed

    def __init__(self, link: NatsLink, machine_id: str) -> None:
        self.link = link
        self.machine_id = machine_id
        self._recent: OrderedDict[str, int] = OrderedDict()

    # -- appending ---------------------------------------------------------------------

    def append_batch(
        self, items: list[tuple[dict[str, Any], str]]
    ) -> asyncio.Future[list[Appended | BaseException]]:
        """Publish each ``(envelope, its JSON)`` under ``telepty.events.<this machine>.<kind>``;
        the future resolves once every one is acknowledged by the stream (or has failed
        for good: too large for the server, or no acknowledgement within the deadline).

        An event that gets no acknowledgement is sent again with the same message id
        until the deadline, so a server restart in between stores it exactly once.
        """
        return asyncio.ensure_future(self._append(items))

    async def _append(self, items: list[tuple[dict[str, Any], str]]) -> list[Appended | BaseException]:
        results: list[Appended | BaseException | None] = [None] * len(items)
        todo = list(range(len(items)))
        give_up = time.monotonic() + PUBLISH_DEADLINE_S
        last_error = "no acknowledgement"
        while todo:
            if self.link.closed:
                last_error = "the daemon's NATS connection is closed (it is stopping)"
                break
            sent: dict[int, Any] = {}
            for i in todo:
                env, body = items[i]
                data = body.encode()
                if len(data) + HEADROOM > self.link.max_payload:
                    results[i] = TooLarge(ErrorCode.TOO_LARGE, (
                        f"the event is {len(data)} bytes of JSON; the NATS server takes messages up to "
                        f"{self.link.max_payload} bytes (its max_payload, see docs/fleet.md)"))
                    continue
                try:
                    sent[i] = await self.link.js.publish_async(
                        event_subject(self.machine_id, env["kind"]), data,
                        headers={"Nats-Msg-Id": env["message_id"]}, wait_stall=ACK_TIMEOUT_S,
                    )
                except Exception as exc:  # disconnected with a full buffer, stalled …
                    last_error = f"{type(exc).__name__}: {exc}"
            if sent:
                left = max(0.05, give_up - time.monotonic())
                await asyncio.wait(sent.values(), timeout=min(ACK_TIMEOUT_S, left))
            retry = []
            for i in todo:
                fut = sent.get(i)
                if fut is None:
                    if results[i] is None:
                        retry.append(i)
                    continue
                if not fut.done():
                    fut.cancel()
                    retry.append(i)
                    continue
                exc = fut.exception()
                if exc is None:
                    ack = fut.result()
                    results[i] = Appended(int(ack.seq), not ack.duplicate)
                    self._remember(items[i][0]["message_id"], int(ack.seq))
                elif isinstance(exc, self.link.errors.APIError):  # the stream itself said no
                    results[i] = Unavailable(BUS_UNAVAILABLE, f"the NATS stream refused the event: {exc}")
                else:
                    last_error = f"{type(exc).__name__}: {exc}"
                    retry.append(i)
            todo = retry
            if todo and time.monotonic() >= give_up:
                for i in todo:
                    results[i] = Unavailable(BUS_UNAVAILABLE, (
                        f"the NATS server did not acknowledge the event within {PUBLISH_DEADLINE_S:g} s "
                        f"({last_error}); publish it again with the same message_id (it is stored once)"))
                break
            if todo:
                await asyncio.sleep(0.1)  # the pause before sending the unacknowledged again
        return [r if r is not None else Unavailable(BUS_UNAVAILABLE, last_error) for r in results]

    async def append(self, envelope: dict[str, Any]) -> tuple[int, bool]:
        (result,) = await self.append_batch([(envelope, dumps_event(envelope))])
        if isinstance(result, BaseException):
            raise result
        return result.seq, result.inserted

    def _remember(self, message_id: str, seq: int) -> None:
        self._recent[message_id] = seq
        self._recent.move_to_end(message_id)
        while len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)

    # -- reading -----------------------------------------------------------------------

    async def since(self, seq: int, limit: int = 100, kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Every machine's events after ``seq``, oldest first, each with its ``seq``."""
        with unavailable_when_unreachable():
            return await read_since(self.link, seq, limit, kinds, machine_id=None)

    def of_machine(self, machine_id: str) -> MachineEvents:
        return MachineEvents(self.link, machine_id)

    async def by_message_id(self, message_id: str) -> dict[str, Any] | None:
        """An event this daemon appended lately (the auto-router looks up the turn_request
        it routed), else this machine's turn_requests are searched: the stream has no
        index by message id, and those are the events anyone looks up."""
        seq = self._recent.get(message_id)
        if seq is not None:
            try:
                msg = await self.link.js.get_msg(EVENTS_STREAM, seq)
            except self.link.errors.NotFoundError:
                return None
            env: dict[str, Any] = orjson.loads(msg.data)
            env["seq"] = seq
            return env
        async with contextlib.aclosing(scan(self.link, events_filter(
                machine_id=self.machine_id, kind="turn_request"), 0)) as found:
            async for s, _subject, data in found:
                env = orjson.loads(data)
                if env.get("message_id") == message_id:
                    env["seq"] = s
                    return env  # type: ignore[no-any-return]
        return None

    async def last_seq(self) -> int:
        with unavailable_when_unreachable():
            info = await self.link.js.stream_info(EVENTS_STREAM)
        return int(info.state.last_seq or 0)

    async def bounds(self) -> tuple[int, int, int]:
        """``(first_seq, last_seq, count)`` of what the stream holds (zeros if empty)."""
        with unavailable_when_unreachable():
            state = (await self.link.js.stream_info(EVENTS_STREAM)).state
        if not state.messages:
            return 0, 0, 0
        return int(state.first_seq), int(state.last_seq), int(state.messages)

    async def trim(self, *, keep_newest: int, accepted_before: str | None) -> int:
        return 0  # the stream's max_msgs / max_age do it on the server


@contextlib.contextmanager
def unavailable_when_unreachable() -> Iterator[None]:
    """A read the server did not answer is ``503 bus_unavailable``, not an internal error."""
    try:
        yield
    except TeleptyError:
        raise
    except Exception as exc:
        raise Unavailable(BUS_UNAVAILABLE,
                          f"the NATS server did not answer: {type(exc).__name__}: {exc}") from exc


class MachineEvents:
    """One machine's events only (what this daemon itself once said, e.g. session.idle)."""

    def __init__(self, link: NatsLink, machine_id: str) -> None:
        self.link = link
        self.machine_id = machine_id

    async def since(self, seq: int, limit: int = 100, kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        return await read_since(self.link, seq, limit, kinds, machine_id=self.machine_id)


async def read_since(
    link: NatsLink, seq: int, limit: int, kinds: tuple[str, ...], *, machine_id: str | None,
) -> list[dict[str, Any]]:
    """Events after ``seq``: one kind is selected by the server (its subject), several are
    picked here from everything (NATS 2.9 filters a consumer on one subject only)."""
    subject = events_filter(machine_id=machine_id, kind=kinds[0] if len(kinds) == 1 else None)
    wanted = frozenset(kinds)
    out: list[dict[str, Any]] = []
    async with contextlib.aclosing(scan(link, subject, seq, want=None if wanted else limit)) as found:
        async for s, _subject, data in found:
            env = orjson.loads(data)
            if wanted and env.get("kind") not in wanted:
                continue  # (an odd kind sharing a subject with the one asked for, or several asked)
            env["seq"] = s
            out.append(env)
            if len(out) >= limit:
                break
    return out


async def scan(
    link: NatsLink, subject: str, after: int, *, want: int | None = None,
) -> AsyncIterator[tuple[int, str, bytes]]:
    """``(seq, subject, data)`` of the stored events on ``subject`` after ``after``, as the
    stream held them when the scan began, through a throwaway consumer.

    Close it (``contextlib.aclosing``) when stopping early: that deletes the consumer
    (which the server would also drop by itself after a short idle time).
    """
    api = link.api
    js = link.js
    cfg = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(1, after + 1),
        ack_policy=api.AckPolicy.NONE, filter_subject=subject, inactive_threshold=30.0,
        mem_storage=True, num_replicas=1,
    )
    info = await js.add_consumer(EVENTS_STREAM, config=cfg)
    psub = None
    try:
        pending = int(info.num_pending or 0)
        if pending == 0:
            return
        psub = await js.pull_subscribe_bind(durable=info.name, stream=EVENTS_STREAM)
        given = 0
        while pending > 0:
            batch = min(pending, PAGE) if want is None else max(1, min(pending, PAGE, want - given))
            for msg in await psub.fetch(batch, timeout=5.0):
                meta = msg.metadata
                pending = int(meta.num_pending)
                given += 1
                yield int(meta.sequence.stream), msg.subject, msg.data
    finally:
        with contextlib.suppress(Exception):
            if psub is not None:
                await psub.unsubscribe()
            await js.delete_consumer(EVENTS_STREAM, info.name)


EventListener = Callable[[str, LoggedEvent], None]


class EventFeed:
    """Every machine's events, in stream order, to this daemon's bus subscribers.

    One ordered consumer from where the stream stood at start. The client recreates it
    after a reconnect from the last sequence it saw; on top of that a jump in sequence
    (a message the client dropped) is filled from the stream before going on, so a
    subscriber never sees a hole that the log does not have.
    """

    def __init__(self, link: NatsLink, deliver: Callable[[LoggedEvent], None]) -> None:
        self.link = link
        self.deliver = deliver
        self.listeners: list[EventListener] = []
        self.last = 0
        self._sub: Any = None

    async def start(self, after: int) -> None:
        api = self.link.api
        self.last = after
        self._sub = await self.link.js.subscribe(
            EVENTS_ALL, stream=EVENTS_STREAM, cb=self._on_msg, ordered_consumer=True,
            idle_heartbeat=1.0, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=after + 1),
        )

    async def _on_msg(self, msg: Any) -> None:
        try:
            seq = int(msg.metadata.sequence.stream)
            if seq <= self.last:
                return  # seen already (the consumer was recreated behind us)
            if seq > self.last + 1:
                await self._fill(seq)
            self._emit(seq, msg.subject, msg.data)
        except Exception:
            log.exception("nats feed: could not pass on an event")

    async def _fill(self, upto: int) -> None:
        async with contextlib.aclosing(scan(self.link, EVENTS_ALL, self.last)) as found:
            async for seq, subject, data in found:
                if seq >= upto:
                    break
                if seq > self.last:
                    self._emit(seq, subject, data)

    def _emit(self, seq: int, subject: str, data: bytes) -> None:
        self.last = seq
        event = LoggedEvent(orjson.loads(data), seq, data.decode())
        self.deliver(event)
        for listener in self.listeners:
            try:
                listener(subject, event)
            except Exception:
                log.exception("nats feed listener failed on seq=%d", seq)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


__all__ = ["DUPLICATE_WINDOW_S", "EventFeed", "MachineEvents", "NatsEventLog", "read_since", "scan"]
