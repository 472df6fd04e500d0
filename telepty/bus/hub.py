"""The event bus core: append to the durable log first, then fan out.

Appending before fan-out is what lets a subscriber that reconnects with ``since``
miss nothing: whatever a live subscriber saw is already in the log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telepty.bus.envelope import make_event
from telepty.store.events import EventRepo

log = logging.getLogger("telepty.bus")

SUBSCRIBER_QUEUE = 1000


class Subscription:
    def __init__(self, kinds: frozenset[str]) -> None:
        self.kinds = kinds
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.overflowed = False

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds


class EventBus:
    def __init__(self, events: EventRepo, machine_id: str) -> None:
        self.events = events
        self.machine_id = machine_id
        self._subs: set[Subscription] = set()

    async def emit(self, kind: str, *, target: str | None = None, **fields: Any) -> int:
        """Record and fan out one event the daemon itself raises."""
        env = make_event(kind, source_host=self.machine_id, target=target, **fields)
        seq, _ = await self.publish(env)
        return seq

    async def publish(self, envelope: dict[str, Any]) -> tuple[int, bool]:
        seq, inserted = await self.events.append(envelope)
        if inserted:
            out = dict(envelope, seq=seq)
            for sub in list(self._subs):
                if not sub.wants(out["kind"]):
                    continue
                try:
                    sub.queue.put_nowait(out)
                except asyncio.QueueFull:
                    # A subscriber that cannot keep up is cut loose; it reconnects
                    # with ``since`` and replays from the log instead of stalling us.
                    sub.overflowed = True
                    self._subs.discard(sub)
                    log.warning("bus subscriber overflowed; disconnecting it")
        return seq, inserted

    def subscribe(self, kinds: frozenset[str] = frozenset()) -> Subscription:
        sub = Subscription(kinds)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def close(self) -> None:
        for sub in list(self._subs):
            sub.queue.put_nowait(None) if not sub.queue.full() else None
        self._subs.clear()
