"""The bus core against a real SQLite log: order, idempotency, isolation, retention."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from telepty.bus.hub import BUS_CLOSED, SUBSCRIBER_OVERFLOW, EventBus, LoggedEvent
from telepty.clock import to_iso
from telepty.store.db import Database
from telepty.store.events import EventRepo, dumps_event
from tests.helpers import count_commits


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EventBus]:
    db = Database(tmp_path / "t.db")
    await db.open()
    yield EventBus(EventRepo(db), "m1", subscriber_queue=8)
    await db.close()


def drain(q: asyncio.Queue[LoggedEvent]) -> list[LoggedEvent]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


async def test_concurrent_publishers_get_distinct_ascending_seqs(bus: EventBus) -> None:
    sub = bus.subscribe()
    bus.subscriber_queue = 10_000
    big = bus.subscribe()
    seqs = await asyncio.gather(*(bus.emit("tick", n=i) for i in range(300)))
    assert sorted(seqs) == list(range(1, 301))
    seen = drain(big.queue)
    assert [e.seq for e in seen] == list(range(1, 301))  # strictly ascending, no gaps
    assert {e.envelope["n"] for e in seen} == set(range(300))
    assert sub.overflowed and sub.drop_reason == SUBSCRIBER_OVERFLOW  # 8 slots, 300 events
    logged = await bus.events.since(0, 1000)
    assert [e["seq"] for e in logged] == list(range(1, 301))


async def test_the_log_has_the_event_before_any_subscriber_does(bus: EventBus) -> None:
    seen_in_log: list[bool] = []

    def listener(event: LoggedEvent) -> None:
        conn = sqlite3.connect(bus.events.db.path)
        try:
            row = conn.execute("SELECT seq FROM events WHERE seq = ?", (event.seq,)).fetchone()
        finally:
            conn.close()
        seen_in_log.append(row is not None)

    bus.add_listener(listener)
    await bus.emit("a")
    await bus.emit("b")
    assert seen_in_log == [True, True]


async def test_a_repeated_message_id_is_logged_and_fanned_out_once(bus: EventBus) -> None:
    sub = bus.subscribe()
    env = {"version": 2, "message_id": "m-1", "kind": "k", "type": "k", "source": "t",
           "source_host": "m1", "target": None, "ts": "2026-01-01T00:00:00.000Z"}
    results = await asyncio.gather(*(bus.publish(dict(env)) for _ in range(5)))
    assert results[0] == (1, True)
    assert results[1:] == [(1, False)] * 4
    assert [e.seq for e in drain(sub.queue)] == [1]
    assert (await bus.events.bounds()) == (1, 1, 1)


async def test_one_batch_mixing_new_repeated_and_logged_ids_keeps_order(bus: EventBus) -> None:
    """A batch is one multi-row INSERT: each id gets its own answer, in publish order."""
    def env(mid: str) -> dict[str, object]:
        return {"version": 2, "message_id": mid, "kind": "k", "type": "k", "source": "t",
                "source_host": "m1", "target": None, "ts": "2026-01-01T00:00:00.000Z"}

    assert await bus.publish(env("old")) == (1, True)
    sub = bus.subscribe()
    results = await asyncio.gather(*(bus.publish(env(m)) for m in ("a", "old", "b", "a", "c")))
    (a, new_a), (old, new_old), (b, new_b), (a2, new_a2), (c, new_c) = results
    assert (new_a, new_old, new_b, new_a2, new_c) == (True, False, True, False, True)
    assert (old, a2) == (1, a)  # a repeat answers with the first copy's seq
    assert 1 < a < b < c  # (SQLite's AUTOINCREMENT may skip the seq a refused row drew)
    assert [(e.seq, e["message_id"]) for e in drain(sub.queue)] == [(a, "a"), (b, "b"), (c, "c")]
    assert [e["message_id"] for e in await bus.events.since(0, 10)] == ["old", "a", "b", "c"]


async def test_a_subscriber_gets_the_logged_json_with_its_seq(bus: EventBus) -> None:
    sub = bus.subscribe()
    await bus.emit("k", note="é \u2028 \"q\"", n=1.5, deep={"x": [1, None]})
    (event,) = drain(sub.queue)
    assert event.text == dumps_event(dict(event))  # spliced, yet what serialising gives
    assert orjson.loads(event.text)["seq"] == event.seq == 1
    (logged,) = await bus.events.since(0, 1)
    assert logged == dict(event)


async def test_publishes_in_one_turn_of_the_loop_share_one_commit(bus: EventBus) -> None:
    commits = count_commits(bus)
    seqs = await asyncio.gather(*(bus.emit("g", n=i) for i in range(20)))
    assert seqs == list(range(1, 21))
    assert commits == [20]


class Answers:
    """A ``CommitWaiter`` recording what it was told, and when."""

    def __init__(self, log: list[tuple[str, object]], name: str, *, explode: bool = False) -> None:
        self.log, self.name, self.explode = log, name, explode

    def committed(self, seq: int, inserted: bool) -> None:
        self.log.append((self.name, (seq, inserted)))
        if self.explode:
            raise RuntimeError("the publisher's own answer failed")

    def failed(self, exc: BaseException) -> None:
        self.log.append((self.name, exc))


def envelope(mid: str) -> dict[str, object]:
    return {"version": 2, "message_id": mid, "kind": "k", "type": "k", "source": "t",
            "source_host": "m1", "target": None, "ts": "2026-01-01T00:00:00.000Z"}


async def test_publish_then_answers_inside_the_commit_in_publish_order(bus: EventBus) -> None:
    told: list[tuple[str, object]] = []
    fanned: list[tuple[str, int]] = []
    bus.add_listener(lambda e: fanned.append(("fanned", e.seq)))
    for mid in ("a", "b", "a"):
        bus.publish_then(envelope(mid), Answers(told, mid))
    assert told == []  # nothing before the commit
    await asyncio.sleep(0)  # one turn of the loop: the flush, the commit, the answers
    assert told == [("a", (1, True)), ("b", (2, True)), ("a", (1, False))]
    assert fanned == [("fanned", 1), ("fanned", 2)]  # each fanned out before it was answered
    assert [e["message_id"] for e in await bus.events.since(0, 10)] == ["a", "b"]


async def test_with_a_subscriber_the_answers_wait_one_turn_behind_it(bus: EventBus) -> None:
    """The subscriber's socket is written by a task on the next turn: the publisher is
    told on that turn too, after it, so answering never delays the event."""
    sub = bus.subscribe(frozenset({"k"}))
    order: list[tuple[str, object]] = []

    async def subscriber() -> None:
        event = await sub.queue.get()
        order.append(("subscriber", event.seq))

    task = asyncio.create_task(subscriber())
    await asyncio.sleep(0)  # (waiting on its queue)
    bus.publish_then(envelope("a"), Answers(order, "publisher"))
    await asyncio.sleep(0)  # the flush: committed and fanned out, nobody told yet
    assert order == []
    await asyncio.sleep(0)
    assert order == [("subscriber", 1), ("publisher", (1, True))]
    await task


async def test_a_publisher_whose_answer_fails_strands_nobody(bus: EventBus) -> None:
    told: list[tuple[str, object]] = []
    bus.publish_then(envelope("x"), Answers(told, "x", explode=True))
    bus.publish_then(envelope("y"), Answers(told, "y"))
    await asyncio.sleep(0)
    assert [name for name, _ in told] == ["x", "x", "y"]
    assert told[0] == ("x", (1, True)) and isinstance(told[1][1], RuntimeError)
    assert told[2] == ("y", (2, True))


async def test_publish_then_on_a_closed_log_says_so(bus: EventBus) -> None:
    told: list[tuple[str, object]] = []
    await bus.events.db.close()
    bus.publish_then(envelope("z"), Answers(told, "z"))
    await asyncio.sleep(0)
    assert len(told) == 1 and isinstance(told[0][1], RuntimeError)
    await bus.events.db.open()  # (for the fixture's close)


class Expecting:
    """An ``ExpectedPublishers`` whose expectations the test sets."""

    def __init__(self) -> None:
        self.expected = 0
        self.misses = 0

    def any_expected(self) -> bool:
        return self.expected > 0

    def missed(self) -> None:
        self.misses += 1
        self.expected = 0


async def test_a_batch_waits_for_expected_publishers_then_commits_with_them(bus: EventBus) -> None:
    commits = count_commits(bus)
    expecting = Expecting()
    bus.expect_from(expecting)
    told: list[tuple[str, object]] = []
    expecting.expected = 2
    bus.publish_then(envelope("a"), Answers(told, "a"))
    bus.publish_then(envelope("b"), Answers(told, "b"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert told == [] and commits == []  # held for the two still expected
    expecting.expected = 0  # the last of them publishes: the batch goes at once, with it
    bus.publish_then(envelope("c"), Answers(told, "c"))
    assert told == [("a", (1, True)), ("b", (2, True)), ("c", (3, True))]
    assert commits == [3] and expecting.misses == 0


async def test_a_hold_ends_when_the_expected_publishers_do_not_come(bus: EventBus) -> None:
    commits = count_commits(bus)
    expecting = Expecting()
    bus.expect_from(expecting)
    expecting.expected = 1
    async with asyncio.timeout(10):  # (the hold is HOLD_S; the deadline is for a stuck one)
        seq, inserted = await bus.publish(envelope("alone"))
    assert (seq, inserted, commits, expecting.misses) == (1, True, [1], 1)
    assert await bus.publish(envelope("next")) == (2, True)  # nobody expected now: no hold
    assert expecting.misses == 1


async def test_when_the_expected_leave_a_held_batch_goes(bus: EventBus) -> None:
    expecting = Expecting()
    bus.expect_from(expecting)
    expecting.expected = 1
    told: list[tuple[str, object]] = []
    bus.publish_then(envelope("a"), Answers(told, "a"))
    await asyncio.sleep(0)
    assert told == []
    expecting.expected = 0
    bus.expected_gone()
    await asyncio.sleep(0)
    assert told == [("a", (1, True))] and expecting.misses == 0


async def test_kinds_filter_what_a_subscriber_gets(bus: EventBus) -> None:
    only_b = bus.subscribe(frozenset({"b"}))
    for kind in ("a", "b", "c", "b"):
        await bus.emit(kind)
    assert [(e.seq, e.kind) for e in drain(only_b.queue)] == [(2, "b"), (4, "b")]


async def test_a_slow_subscriber_is_cut_loose_without_slowing_anyone(bus: EventBus) -> None:
    slow = bus.subscribe()  # never read: 8 slots
    bus.subscriber_queue = 1000
    fast = bus.subscribe()
    got: list[int] = []

    async def read_fast() -> None:
        while len(got) < 50:
            got.append((await fast.queue.get()).seq)

    reader = asyncio.create_task(read_fast())
    t0 = time.monotonic()
    for i in range(50):
        await bus.emit("e", n=i)
    await asyncio.wait_for(reader, 5)
    assert got == list(range(1, 51))
    assert slow.dropped.is_set() and slow.drop_reason == SUBSCRIBER_OVERFLOW
    assert slow.queue.qsize() == 8  # what it had when it was cut loose: seqs 1..8
    assert [e.seq for e in drain(slow.queue)] == list(range(1, 9))
    assert bus.subscriber_count == 1 and bus.stats()["subscribers_dropped"] == 1
    assert time.monotonic() - t0 < 5


async def test_close_lets_every_subscriber_go_and_refuses_new_ones(bus: EventBus) -> None:
    a = bus.subscribe()
    bus.close()
    assert a.drop_reason == BUS_CLOSED
    late = bus.subscribe()
    assert late.drop_reason == BUS_CLOSED and bus.subscriber_count == 0
    assert await bus.emit("still.logged") == 1  # the log keeps working while the daemon stops


async def test_an_unserialisable_field_becomes_text_instead_of_losing_the_event(bus: EventBus) -> None:
    seq = await bus.emit("odd", where=Path("/tmp/x"), when={1: "non-str key"})
    (env,) = await bus.events.since(seq - 1, 1)
    assert env["where"] == "/tmp/x" and env["when"] == {"1": "non-str key"}


async def test_a_failing_listener_does_not_stop_fan_out(bus: EventBus) -> None:
    def broken(_e: LoggedEvent) -> None:
        raise RuntimeError("boom")

    bus.add_listener(broken)
    sub = bus.subscribe()
    await bus.emit("a")
    assert [e.kind for e in drain(sub.queue)] == ["a"]


# -- retention --------------------------------------------------------------------


async def test_trim_keeps_the_newest_n(bus: EventBus) -> None:
    for i in range(10):
        await bus.emit("e", n=i)
    assert await bus.events.trim(keep_newest=3, accepted_before=None) == 7
    assert [e["seq"] for e in await bus.events.since(0, 100)] == [8, 9, 10]
    assert await bus.events.trim(keep_newest=3, accepted_before=None) == 0
    assert await bus.emit("after") == 11  # seqs never go back, even after a trim


async def test_trim_by_age_uses_when_the_daemon_accepted_the_event(bus: EventBus) -> None:
    # A publisher's ts far in the past does not make the event old for retention.
    env = {"version": 2, "message_id": "old-ts", "kind": "k", "type": "k", "source": "t",
           "source_host": "m1", "target": None, "ts": "1999-01-01T00:00:00Z"}
    await bus.publish(env)

    def backdate(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO events (message_id, kind, ts, envelope) VALUES "
                     "('aged', 'k', ?, '{\"kind\":\"k\",\"message_id\":\"aged\"}')",
                     (to_iso(time.time() - 3600),))

    await bus.events.db.run(backdate)
    cutoff = to_iso(time.time() - 60)
    assert await bus.events.trim(keep_newest=0, accepted_before=cutoff) == 1
    assert [e["message_id"] for e in await bus.events.since(0, 10)] == ["old-ts"]
    assert (await bus.events.by_message_id("aged")) is None
