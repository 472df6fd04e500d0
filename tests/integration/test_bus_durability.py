"""Group commit keeps the bus's promises on a real daemon process.

An accepted (2xx) event is on disk before its answer, so a ``kill -9`` in the middle of
a concurrent publishing storm loses none of them; seqs are strictly increasing; live
subscribers get every event once, in seq order, however the publishes interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from tests.helpers import DaemonProcess, wait_until
from tests.integration.bus_helpers import Frames

PUBLISHERS = 8


def whole_log(d: DaemonProcess, kind: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    since = 0
    while True:
        status, page = d.request("GET", f"/api/bus/events?since={since}&limit=1000&kinds={kind}")
        assert status == 200, page
        events += page["events"]
        since = page["next_since"]
        if not page["more"]:
            return events


async def publish_until_stopped(
    http: aiohttp.ClientSession, url: str, worker: int, kind: str,
    sent: set[str], accepted: dict[str, int], stop: asyncio.Event, limit: int,
) -> None:
    for i in range(limit):
        if stop.is_set():
            return
        mid = f"{kind}-{worker}-{i}"
        sent.add(mid)
        try:
            async with http.post(url, json={"kind": kind, "message_id": mid, "payload": {"w": worker}}) as r:
                body = await r.json()
        except (TimeoutError, aiohttp.ClientError):
            return  # the daemon is gone: whatever was not answered was not accepted
        assert r.status == 202, body
        accepted[mid] = body["seq"]


async def test_every_accepted_event_survives_kill_9_mid_storm(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory().start()
    kind = "storm"
    sent: set[str] = set()
    accepted: dict[str, int] = {}
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        workers = [
            asyncio.create_task(publish_until_stopped(
                http, d.url + "/api/bus/publish", w, kind, sent, accepted, stop, limit=5000))
            for w in range(PUBLISHERS)
        ]
        await wait_until(lambda: len(accepted) >= 600, timeout=30, message="600 accepted publishes")
        d.kill9()  # mid-storm: publishes are in flight on every connection
        stop.set()
        await asyncio.gather(*workers)
    assert d.proc is not None and d.proc.wait(10) == -9

    d.start()  # same home, same log
    logged = whole_log(d, kind)
    seqs = [e["seq"] for e in logged]
    assert seqs == sorted(set(seqs)), "seqs strictly increasing, none twice"
    by_id = {e["message_id"]: e["seq"] for e in logged}
    assert len(by_id) == len(logged), "one event per message_id"
    missing = {mid: seq for mid, seq in accepted.items() if by_id.get(mid) != seq}
    assert not missing, f"accepted but not logged with their seq: {missing}"
    assert set(by_id) <= sent, "nothing in the log that was never published"
    # Committed but not yet answered when the process died: at most one batch per
    # connection can be in that state, so the log has all accepted and very few more.
    assert len(logged) - len(accepted) <= PUBLISHERS
    # The seqs continue after the restart, past everything logged.
    status, receipt = d.request("POST", "/api/bus/publish", {"kind": kind, "message_id": "after"})
    assert status == 202 and receipt["seq"] > seqs[-1]


async def test_live_subscribers_get_every_concurrent_publish_once_in_order(
    daemon: DaemonProcess,
) -> None:
    kind = "fanin"
    per_worker = 150
    accepted: dict[str, int] = {}
    ws = "ws" + daemon.url[len("http"):] + f"/api/bus?kinds={kind}"
    async with aiohttp.ClientSession() as http:
        subscribers = [Frames(await http.ws_connect(ws)) for _ in range(3)]
        for s in subscribers:
            await s.wait_live()
        never = asyncio.Event()
        await asyncio.gather(*(
            publish_until_stopped(http, daemon.url + "/api/bus/publish", w, kind, set(), accepted,
                                  never, limit=per_worker)
            for w in range(PUBLISHERS)
        ))
        total = PUBLISHERS * per_worker
        assert len(accepted) == total
        # One more subscriber replays from the start while nothing is being published.
        late = Frames(await http.ws_connect(ws + "&since=0"))
        await late.wait_live()
        for s in [*subscribers, late]:
            await wait_until(lambda s=s: len(s.events) >= total, timeout=30, message="every event")
        expected = sorted(accepted.values())
        for s in [*subscribers, late]:
            assert s.seqs() == expected  # every accepted event, once, in seq order
            assert {e["message_id"]: e["seq"] for e in s.events} == accepted
        assert [e["seq"] for e in whole_log(daemon, kind)] == expected
        for s in [*subscribers, late]:
            with contextlib.suppress(Exception):
                await s.close()


def test_default_ids_are_time_ordered_unique_and_deduplicated_across_a_restart(
    daemon_factory,  # type: ignore[no-untyped-def]
) -> None:
    """The daemon's own ids are in time order (which keeps the log's id index compact),
    every one distinct, and de-duplicated like any other id after a kill -9 + restart —
    as are ids a publisher chose, however they are shaped."""
    d = daemon_factory().start()
    kind = "ordered"

    def publish(body: dict[str, Any]) -> dict[str, Any]:
        status, receipt = d.request("POST", "/api/bus/publish", body)
        assert status == 202, receipt
        return dict(receipt)

    made = [publish({"kind": kind, "payload": {"i": i}}) for i in range(300)]
    chosen = publish({"kind": kind, "message_id": "zzz-my-own-id"})
    ids = [r["message_id"] for r in made]
    assert len(set(ids)) == len(ids) and not any(r["duplicate"] for r in made)
    stamps = [int(m[len(kind) + 1:].replace("-", "")[:12], 16) for m in ids]  # UUIDv7 milliseconds
    assert stamps == sorted(stamps), "in the order the daemon made them"
    d.kill9()
    d.start()
    for before in (made[0], made[-1], chosen):
        again = publish({"kind": kind, "message_id": before["message_id"], "payload": {"again": 1}})
        assert (again["duplicate"], again["seq"]) == (True, before["seq"])
    after = publish({"kind": kind})
    assert not after["duplicate"] and after["message_id"] not in ids
    assert after["message_id"] > ids[-1] and after["seq"] > chosen["seq"]
    logged = whole_log(d, kind)
    assert [e["message_id"] for e in logged] == [*ids, "zzz-my-own-id", after["message_id"]]
    assert [e["seq"] for e in logged] == [*(r["seq"] for r in made), chosen["seq"], after["seq"]]
