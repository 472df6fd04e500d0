"""The bus over a log other daemons append to (NATS): the seam in ``EventBus``.

A fake shared log stands in for JetStream (pure logic): seqs are the log's, and one
event of a batch can be refused on its own (too large for the server).
"""

from __future__ import annotations

import asyncio
from typing import Any

from telepty.bus.hub import EventBus, LoggedEvent
from telepty.errors import TooLarge
from telepty.store.events import Appended


class SharedLog:
    shared = True

    def __init__(self) -> None:
        self.seq = 100  # other machines have appended before us

    def append_batch(self, items: list[tuple[dict[str, Any], str]]) -> asyncio.Future[list[Any]]:
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        out: list[Any] = []
        for env, _body in items:
            if env.get("big"):
                out.append(TooLarge("too_large", "over max_payload"))
            else:
                self.seq += 1
                out.append(Appended(self.seq, True))
        fut.set_result(out)
        return fut


async def test_subscribers_get_the_log_feed_and_listeners_get_own_commits() -> None:
    bus = EventBus(SharedLog(), "a")  # type: ignore[arg-type]
    sub = bus.subscribe()
    heard: list[int] = []
    bus.add_listener(lambda e: heard.append(e.seq))
    assert await bus.emit("mine") == 101
    assert heard == [101] and sub.queue.empty()  # not fanned out on commit: the feed brings it
    theirs = LoggedEvent({"kind": "other", "message_id": "x"}, 99, '{"kind":"other","message_id":"x"}')
    bus.deliver(theirs)
    bus.deliver(LoggedEvent({"kind": "mine"}, 101, '{"kind":"mine"}'))
    assert [sub.queue.get_nowait().seq for _ in range(2)] == [99, 101]
    assert heard == [101]  # another machine's event is not this daemon's to react to


async def test_one_refused_event_fails_only_its_publisher() -> None:
    bus = EventBus(SharedLog(), "a")  # type: ignore[arg-type]
    results = await asyncio.gather(bus.emit("ok1"), bus.emit("huge", big=True), bus.emit("ok2"),
                                   return_exceptions=True)
    assert results[0] == 101 and results[2] == 102
    assert isinstance(results[1], TooLarge)
