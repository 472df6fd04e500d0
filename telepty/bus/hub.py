"""The event bus core: append to the durable log first, then fan out.

Appending before fan-out is what lets a subscriber that reconnects with ``since``
miss nothing: whatever a live subscriber saw is already in the log.

Publishes are group-committed: everything published during one turn of the event loop
goes in as one transaction, queued behind the previous one without waiting for it, and
each batch is fanned out in ``seq`` order once it has committed. So subscribers always
see seqs ascending (a cursor can trust "everything up to here"), publishers pay one
commit per batch instead of one each, and nobody is answered before their event is on
disk.

A batch may be held back briefly (at most ``HOLD_S``) while publishers that publish in
a tight loop (answered a moment ago, and back within ``HOLD_S`` last time) have not yet
published again; the moment the last of them does, the batch commits, with theirs in
it. This is PostgreSQL's ``commit_delay`` with ``commit_siblings``: on a small machine a
commit costs as much as several events, so four publishers in lockstep share one commit
instead of trickling in as two or three. A lone publisher never waits for itself.

Publishers never wait on subscribers: fan-out is a ``put_nowait`` into each
subscriber's bounded queue, and a subscriber whose queue is full is cut loose with a
reason rather than slowing anyone else down. It can come back with ``since``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, TypeVar, overload

from telepty.bus.envelope import make_event
from telepty.bus.event_log import EventLog
from telepty.errors import ErrorCode
from telepty.store.events import Appended, dumps_event

log = logging.getLogger("telepty.bus")

SUBSCRIBER_QUEUE = 1000
MAX_BATCH = 512
HOLD_S = 0.0005  # longest a batch waits for publishers in a tight loop
IN_FLIGHT = 1  # batches queued on the database at once

SUBSCRIBER_OVERFLOW = ErrorCode.SUBSCRIBER_OVERFLOW
BUS_CLOSED = ErrorCode.DAEMON_STOPPING


class LoggedEvent(dict[str, Any]):
    """An event as it left the log: the envelope with its ``seq`` (a plain mapping, as
    subscribers always got), plus its JSON for the wire, made once for every subscriber
    — fan-out to fifty sockets must not mean fifty serialisations.

    The JSON is the logged text with ``seq`` spliced in as the last field, byte for
    byte what serialising the mapping would give, without serialising again; and only
    made when something asks (an event nobody subscribed to never needs it).
    """

    __slots__ = ("_body", "_text")

    def __init__(self, envelope: dict[str, Any], seq: int, body: str) -> None:
        super().__init__(envelope)
        self["seq"] = seq
        self._body = body
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = f'{self._body[:-1]},"seq":{self["seq"]}}}'
        return self._text

    @property
    def seq(self) -> int:
        return int(self["seq"])

    @property
    def kind(self) -> str:
        return str(self["kind"])

    @property
    def envelope(self) -> dict[str, Any]:
        return self


Listener = Callable[[LoggedEvent], None]
T = TypeVar("T")


class CommitWaiter(Protocol):
    """Whoever published an event and is told, by a plain call, how its commit went.

    Called in the batch's order, from inside the flush that committed it: a publisher
    that answers from here (the HTTP fast path) answers in the same turn of the loop as
    the commit, not one turn later as a future's callbacks would. Except when a
    subscriber wanted one of the batch's events: subscribers' sockets are written by
    tasks on the loop's next turn, and then the publishers are told on that turn too,
    after them, so that answering a publisher never delays the event on its way out.
    """

    def committed(self, seq: int, inserted: bool) -> None: ...

    def failed(self, exc: BaseException) -> None: ...


class ExpectedPublishers(Protocol):
    """Who the bus may hold a batch for: publishers in a tight loop that have been
    answered and have not published again yet (the HTTP fast path knows its own)."""

    def any_expected(self) -> bool: ...

    def missed(self) -> None:
        """The hold ran out before they came: stop expecting them until they are quick
        again."""


class _FutureWaiter:
    """A ``CommitWaiter`` resolving a future, with ``into(seq, inserted)`` (None: the pair)."""

    __slots__ = ("fut", "into")

    def __init__(self, fut: asyncio.Future[Any], into: Callable[[int, bool], Any] | None) -> None:
        self.fut = fut
        self.into = into

    def committed(self, seq: int, inserted: bool) -> None:
        if not self.fut.done():  # the awaiting task may have been cancelled
            self.fut.set_result((seq, inserted) if self.into is None else self.into(seq, inserted))

    def failed(self, exc: BaseException) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


class Subscription:
    """One subscriber's bounded queue of live events.

    ``dropped`` is set when the bus lets go of it (overflow, or the daemon stopping),
    with ``drop_reason`` saying which; a consumer watches it alongside the queue,
    because a full queue is exactly when it is too busy to look.
    """

    def __init__(self, kinds: frozenset[str] = frozenset(), maxsize: int = SUBSCRIBER_QUEUE) -> None:
        self.kinds = kinds
        self.queue: asyncio.Queue[LoggedEvent] = asyncio.Queue(max(1, maxsize))
        self.dropped = asyncio.Event()
        self.drop_reason: str | None = None

    @property
    def overflowed(self) -> bool:
        return self.drop_reason == SUBSCRIBER_OVERFLOW

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds

    def drop(self, reason: str) -> None:
        if self.drop_reason is None:
            self.drop_reason = reason
            self.dropped.set()


class EventBus:
    def __init__(
        self, events: EventLog, machine_id: str, *, subscriber_queue: int = SUBSCRIBER_QUEUE,
        hold_s: float = HOLD_S,
    ) -> None:
        self.events = events
        self.hold_s = hold_s
        # A log other daemons append to as well (NATS JetStream) hands every machine's
        # events to subscribers itself, in its own order, through ``deliver``; our own
        # commits then go to the listeners only, or subscribers would see them twice.
        self._commits_to_subscribers = not getattr(events, "shared", False)
        self.machine_id = machine_id
        self.subscriber_queue = subscriber_queue
        self._subs: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self._pending: list[tuple[dict[str, Any], CommitWaiter]] = []
        self._flush_handle: asyncio.Handle | None = None  # the flush to come, or the hold's end
        self._holding = False
        self._flushing = False
        self._expected: ExpectedPublishers | None = None
        self._in_flight = 0
        self._closed = False
        # Counters for /metrics: events accepted into the log, events handed to
        # subscribers, and subscribers cut loose for falling behind.
        self.events_in = 0
        self.events_out = 0
        self.subscribers_dropped = 0

    # -- publishing --------------------------------------------------------------------

    async def emit(self, kind: str, *, target: str | None = None, **fields: Any) -> int:
        """Record and fan out one event the daemon itself raises; returns its seq."""
        env = make_event(kind, source_host=self.machine_id, target=target, **fields)
        seq, _ = await self.publish(env)
        return seq

    async def publish(self, envelope: dict[str, Any]) -> tuple[int, bool]:
        """Append a complete envelope, then fan it out; returns ``(seq, inserted)``.

        A ``message_id`` already in the log is not appended or fanned out again: the
        first event's seq comes back with ``inserted`` False.
        """
        return await self.publish_soon(envelope)

    @overload
    def publish_soon(self, envelope: dict[str, Any]) -> asyncio.Future[tuple[int, bool]]: ...

    @overload
    def publish_soon(self, envelope: dict[str, Any], into: Callable[[int, bool], T]) -> asyncio.Future[T]: ...

    def publish_soon(self, envelope: dict[str, Any], into: Callable[[int, bool], Any] | None = None) -> Any:
        """``publish`` without a coroutine: the future resolves once the event has
        committed (and has been fanned out), with ``(seq, inserted)`` or, given
        ``into``, with ``into(seq, inserted)`` (one future per event, not two)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.publish_then(envelope, _FutureWaiter(fut, into))
        return fut

    def publish_then(self, envelope: dict[str, Any], waiter: CommitWaiter) -> None:
        """``publish`` for callers that answer from a callback: ``waiter`` hears how the
        commit went, from inside the flush that made it (see ``CommitWaiter``)."""
        self._pending.append((envelope, waiter))
        self._schedule_flush()

    def expect_from(self, publishers: ExpectedPublishers) -> None:
        """Hold batches (at most ``hold_s``) for the publishers ``publishers`` expects."""
        self._expected = publishers

    def expected_gone(self) -> None:
        """Nobody is expected any more (they left): a held batch goes now."""
        if self._holding:
            self._cancel_flush()
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _schedule_flush(self) -> None:
        if self._flushing or self._in_flight >= IN_FLIGHT:
            return  # the flush under way, or the commit in flight, takes what is pending
        expected = self._expected
        if expected is not None and expected.any_expected():
            if self._flush_handle is None:
                self._holding = True
                self._flush_handle = asyncio.get_running_loop().call_later(self.hold_s, self._hold_over)
            return
        if self._holding:  # the last one it was held for has published: commit it now
            self._flush()
        elif self._flush_handle is None:
            # Everything published during this turn of the loop goes in one transaction.
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _hold_over(self) -> None:
        self._flush_handle = None
        if self._expected is not None:
            self._expected.missed()
        self._flush()

    def _cancel_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._holding = False

    def _flush(self) -> None:
        """Queue what is pending as one transaction (up to ``MAX_BATCH`` events).

        At most ``IN_FLIGHT`` batches wait on the database at once; what is published
        meanwhile waits here and goes in with the next. That is the group commit: the
        busier the bus, the more events share a commit. Batches commit in the order
        they were queued and each is fanned out when it has committed, so subscribers
        see seqs ascending. A callback rather than a task, so a publisher cancelled
        mid-await cannot strand the batch it happened to be carrying. Not re-entered:
        what is published while it answers (a pipelined request) is taken by its loop.
        """
        self._cancel_flush()
        self._flushing = True
        try:
            while self._pending and self._in_flight < IN_FLIGHT:
                self._commit_next_batch()
        finally:
            self._flushing = False

    def _commit_next_batch(self) -> None:
        batch = self._pending[:MAX_BATCH]
        del self._pending[:MAX_BATCH]
        rows: list[tuple[dict[str, Any], str]] = []
        waiting: list[CommitWaiter] = []
        for env, waiter in batch:
            try:
                rows.append((env, dumps_event(env)))
            except Exception as exc:  # an envelope that cannot be JSON at all
                _tell_failed(waiter, exc)
                continue
            waiting.append(waiter)
        if not rows:
            return
        try:
            committed = self.events.append_batch(rows)
        except Exception as exc:  # the database is closed
            self._failed(rows, waiting, exc)
            return
        self._in_flight += 1
        if committed.done():  # committed right here (the database was idle)
            self._committed(rows, waiting, committed)
        else:
            committed.add_done_callback(partial(self._committed, rows, waiting))

    def _committed(
        self, rows: list[tuple[dict[str, Any], str]], waiting: list[CommitWaiter],
        committed: asyncio.Future[list[Appended]] | asyncio.Future[list[Appended | BaseException]],
    ) -> None:
        self._in_flight -= 1
        exc = committed.exception()
        if exc is not None:
            self._failed(rows, waiting, exc)
        else:
            results: list[Appended | BaseException] = list(committed.result())
            subscribed = False
            for (env, body), result in zip(rows, results, strict=True):
                if isinstance(result, BaseException):  # a shared log refused this one event
                    continue  # (its publisher is told so with the others)
                if result.inserted:
                    self.events_in += 1
                    subscribed |= self._fan_out(result.seq, env, body)
            if subscribed:
                # Subscribers first: their sockets are written by tasks that run on the
                # loop's next turn, and the publishers' answers wait for it behind them
                # (answering first would put a publisher's wake-up in the event's way).
                asyncio.get_running_loop().call_soon(_tell_committed, waiting, results)
            else:
                _tell_committed(waiting, results)
        if self._pending and not self._flushing:  # (a flush under way takes the rest itself)
            self._flush()

    def _failed(
        self, rows: list[tuple[dict[str, Any], str]], waiting: list[CommitWaiter], exc: BaseException,
    ) -> None:
        log.error("could not append %d event(s) to the log", len(rows), exc_info=exc)
        for waiter in waiting:
            _tell_failed(waiter, exc)

    def _fan_out(self, seq: int, envelope: dict[str, Any], body: str) -> bool:
        """Hand the event to listeners and subscribers; True if a subscriber wanted it."""
        kind = envelope["kind"]
        feeding = self._subs and self._commits_to_subscribers
        wanting = [s for s in self._subs if s.wants(kind)] if feeding else []
        if not wanting and not self._listeners:
            return False
        event = LoggedEvent(envelope, seq, body)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("bus listener failed on %s seq=%d", kind, seq)
        self._to_subscribers(event, wanting)
        return bool(wanting)

    def deliver(self, event: LoggedEvent) -> None:
        """An event read back from a shared log (any machine's, in the log's order) to
        this daemon's subscribers (``telepty.bus.nats_log.EventFeed``)."""
        if self._subs:
            kind = event.kind
            self._to_subscribers(event, [s for s in self._subs if s.wants(kind)])

    def _to_subscribers(self, event: LoggedEvent, wanting: list[Subscription]) -> None:
        seq = event.seq
        for sub in wanting:
            try:
                sub.queue.put_nowait(event)
                self.events_out += 1
            except asyncio.QueueFull:
                # Cut loose instead of stalling everyone; it resumes with ``since``.
                self._subs.discard(sub)
                self.subscribers_dropped += 1
                sub.drop(SUBSCRIBER_OVERFLOW)
                log.warning("bus subscriber overflowed at seq=%d; disconnecting it", seq)

    # -- subscribing -------------------------------------------------------------------

    def subscribe(self, kinds: frozenset[str] = frozenset()) -> Subscription:
        sub = Subscription(kinds, self.subscriber_queue)
        self.attach(sub)
        return sub

    def attach(self, sub: Subscription) -> None:
        """Start feeding a subscription built earlier (the bus socket builds one before
        replaying the log, and attaches it only once it has caught up)."""
        if self._closed:
            sub.drop(BUS_CLOSED)
            return
        self._subs.add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def stats(self) -> dict[str, int]:
        """For /metrics (counters since this daemon started)."""
        return {
            "events_in": self.events_in,
            "events_out": self.events_out,
            "subscribers": len(self._subs),
            "subscribers_dropped": self.subscribers_dropped,
        }

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` synchronously with every new event, before subscribers get it.

        For the daemon's own reactions to its events (the auto-router's
        ``message_routed``); a listener must not block and should hand real work to a task.
        """
        self._listeners.append(listener)

    def close(self) -> None:
        """Let every subscriber go (the daemon is stopping); publishing still logs."""
        self._closed = True
        for sub in list(self._subs):
            sub.drop(BUS_CLOSED)
        self._subs.clear()


def _tell_committed(waiting: list[CommitWaiter], results: list[Appended | BaseException]) -> None:
    for waiter, result in zip(waiting, results, strict=True):
        if isinstance(result, BaseException):
            _tell_failed(waiter, result)
            continue
        try:
            waiter.committed(result.seq, result.inserted)
        except Exception as waiter_failed:  # never strands the rest of the batch
            _tell_failed(waiter, waiter_failed)


def _tell_failed(waiter: CommitWaiter, exc: BaseException) -> None:
    try:
        waiter.failed(exc)
    except Exception:
        log.exception("a publisher failed while being told its event was not logged")
