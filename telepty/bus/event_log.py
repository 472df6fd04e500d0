"""The seam between the bus and where its events are kept.

Two logs fit it: this home's SQLite table (``telepty.store.events.EventRepo``, the
default) and a fleet's NATS JetStream stream (``telepty.bus.nats_log.NatsEventLog``,
with ``TELEPTY_BUS_URL``). ``EventBus`` appends through it and the bus routes read
through it; neither knows which one it has.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from telepty.store.events import Appended


class EventLog(Protocol):
    # True when other daemons append to the same log: its events then reach this
    # daemon's subscribers through the log's own feed, in the log's order, not on commit.
    # (Read with getattr: a log without the attribute is not shared.)

    def append_batch(
        self, items: list[tuple[dict[str, Any], str]]
    ) -> asyncio.Future[list[Appended]] | asyncio.Future[list[Appended | BaseException]]:
        """Append ``(envelope, its JSON)`` pairs; one result per pair, in order (an
        exception for a pair a shared log refused on its own)."""
        ...

    async def since(
        self, seq: int, limit: int = 100, kinds: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]: ...

    async def by_message_id(self, message_id: str) -> dict[str, Any] | None: ...

    async def last_seq(self) -> int: ...

    async def bounds(self) -> tuple[int, int, int]: ...

    async def trim(self, *, keep_newest: int, accepted_before: str | None) -> int: ...
