"""The bus over HTTP and WebSocket, in-process: ingest, validation, replay, retention,
slow-subscriber isolation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from telepty.api.keys import BUS
from telepty.config import Config
from tests.helpers import wait_until
from tests.integration.bus_helpers import Frames


async def publish(client, body: Any) -> tuple[int, dict[str, Any]]:  # type: ignore[no-untyped-def]
    resp = await client.post("/api/bus/publish", json=body)
    return resp.status, await resp.json()


async def log(client, since: int = 0, **query: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/bus/events", params={"since": since, "limit": 1000, **query})
    assert resp.status == 200
    return await resp.json()


async def subscribe(client, query: str = "") -> Frames:  # type: ignore[no-untyped-def]
    return Frames(await client.ws_connect("/api/bus" + query))


# -- ingest -------------------------------------------------------------------------------


async def test_http_publish_is_logged_then_fanned_out_with_the_same_seq(client) -> None:  # type: ignore[no-untyped-def]
    sub = await subscribe(client)
    await sub.wait_live()
    status, receipt = await publish(client, {"kind": "build.done", "payload": {"ok": True},
                                             "trace": ["x"]})
    assert status == 202
    assert receipt == {"ok": True, "seq": 1, "message_id": receipt["message_id"],
                       "kind": "build.done", "duplicate": False}
    (event,) = (await log(client))["events"]
    assert event["seq"] == 1 and event["message_id"] == receipt["message_id"]
    assert event["version"] == 2 and event["kind"] == event["type"] == "build.done"
    assert event["source"] == "bus:http" and event["source_host"] == "test-machine"
    assert event["target"] is None and event["payload"] == {"ok": True} and event["trace"] == ["x"]
    await wait_until(lambda: sub.events, message="live event")
    assert sub.events == [event]
    await sub.close()


async def test_legacy_type_is_accepted_and_kind_is_canonical(client) -> None:  # type: ignore[no-untyped-def]
    status, receipt = await publish(client, {"type": "legacy.ping", "message_id": "lp-1"})
    assert status == 202 and receipt["kind"] == "legacy.ping"
    (event,) = (await log(client))["events"]
    assert (event["kind"], event["type"], event["message_id"]) == ("legacy.ping", "legacy.ping", "lp-1")


async def test_ws_publish_acks_every_frame_and_bad_frames_keep_the_socket_open(client) -> None:  # type: ignore[no-untyped-def]
    ws = await client.ws_connect("/api/bus?receive=0")
    frames = Frames(ws)
    bad = [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_event"),
        ('{"payload": {}}', "missing_field"),
        ('{"kind": "a", "type": "b"}', "conflicting_kind"),
        ('{"kind": "inject_written"}', "reserved_kind"),
        ('{"kind": "x", "payload": [1]}', "invalid_field"),
        ('{"kind": "turn_request", "target": "p1", "payload": {"prompt": "hi", '
         '"prompt_sha1": "0000000000000000000000000000000000000000"}}', "prompt_sha1_mismatch"),
    ]
    for text, _ in bad:
        await ws.send_str(text)
    await ws.send_bytes(b"\x00binary")
    await ws.send_json({"kind": "ok.one", "message_id": "ok-1"})
    await ws.send_json({"kind": "ok.one", "message_id": "ok-1"})
    await frames.wait_for("bus.ack", 2)
    errors = frames.of("bus.error")
    assert [e["error"] for e in errors] == [code for _, code in bad] + ["invalid_frame"]
    assert all(e["detail"] for e in errors)
    acks = frames.of("bus.ack")
    assert [(a["seq"], a["message_id"], a["event_kind"], a["duplicate"]) for a in acks] == [
        (1, "ok-1", "ok.one", False), (1, "ok-1", "ok.one", True)]
    assert not ws.closed
    assert [e["message_id"] for e in (await log(client))["events"]] == ["ok-1"]  # only the good one
    assert frames.events == []  # receive=0: acks only
    await frames.close()


BAD_BODIES: list[tuple[Any, int, str]] = [
    (b"{nope", 400, "invalid_json"),
    (b"[1]", 400, "invalid_json"),
    (b'"str"', 400, "invalid_json"),
    (b"", 400, "missing_field"),
    (b"{}", 400, "missing_field"),
    (b'{"kind": 1}', 400, "invalid_field"),
    (b'{"kind": "bad kind"}', 400, "invalid_kind"),
    (b'{"kind": "a", "type": "b"}', 400, "conflicting_kind"),
    (b'{"kind": "bus.ack"}', 400, "reserved_kind"),
    (b'{"kind": "message_routed"}', 400, "reserved_kind"),
    (b'{"kind": "a", "target": 5}', 400, "invalid_field"),
    (b'{"kind": "a", "payload": "x"}', 400, "invalid_field"),
    (b'{"kind": "a", "ts": "noon"}', 400, "invalid_field"),
    (b'{"kind": "a", "message_id": "a b"}', 400, "invalid_field"),
    (b'{"kind": "turn_request", "payload": {"prompt": "x"}}', 400, "missing_field"),
    (b'{"kind": "turn_request", "target": "p1"}', 400, "missing_field"),
    (b'{"kind": "turn_request", "target": "p 1", "payload": {"prompt": "x"}}', 400, "invalid_target"),
    (b'{"kind": "turn_request", "target": "p1", "payload": {"prompt": "a\\u001bb"}}', 400,
     "invalid_prompt"),
    (b'{"kind": "turn_request", "target": "p1", "payload": {"prompt": "x", "prompt_sha1": "zz"}}',
     400, "invalid_field"),
]


@pytest.mark.parametrize(("raw", "status", "code"), BAD_BODIES,
                         ids=[f"{i}-{c}" for i, (_, _, c) in enumerate(BAD_BODIES)])
async def test_bad_publish_bodies_change_nothing(client, raw: bytes, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/api/bus/publish", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == status
    body = await resp.json()
    assert body["error"] == code and body["detail"]
    page = await log(client)
    assert page["events"] == [] and page["last_seq"] == 0
    assert (await client.get("/api/deliveries")).status == 200
    assert await (await client.get("/api/deliveries")).json() == []


async def test_an_oversized_body_is_413(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/api/bus/publish", data=b'{"kind":"a","pad":"' + b"x" * (5 << 20) + b'"}',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await log(client))["last_seq"] == 0


@pytest.mark.parametrize("query", ["?since=-1", "?since=abc", "?kinds=bad%20kind", "?kinds=" + ",".join(
    f"k{i}" for i in range(65))])
async def test_bad_socket_queries_are_refused_before_the_upgrade(client, query: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/bus" + query)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_query"


@pytest.mark.parametrize("query", ["since=x", "limit=0", "limit=1001", "kinds=a%20b"])
async def test_bad_event_page_queries_are_400(client, query: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/bus/events?" + query)
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_query"


# -- the durable log: paging, replay, the seam --------------------------------------------


async def test_events_page_through_the_log(client) -> None:  # type: ignore[no-untyped-def]
    for i in range(25):
        await publish(client, {"kind": "a" if i % 2 else "b", "payload": {"n": i}})
    page = await (await client.get("/api/bus/events", params={"since": 0, "limit": 10})).json()
    assert [e["seq"] for e in page["events"]] == list(range(1, 11))
    assert (page["next_since"], page["first_seq"], page["last_seq"], page["retained"], page["more"]) == (
        10, 1, 25, 25, True)
    seen: list[int] = []
    since = 0
    while True:
        page = await (await client.get("/api/bus/events", params={"since": since, "limit": 7})).json()
        seen += [e["seq"] for e in page["events"]]
        since = page["next_since"]
        if not page["more"]:
            break
    assert seen == list(range(1, 26))
    only_a = await log(client, kinds="a")
    assert [e["payload"]["n"] for e in only_a["events"]] == list(range(1, 25, 2))


async def test_replay_then_live_has_no_gap_and_no_duplicate_at_the_seam(client) -> None:  # type: ignore[no-untyped-def]
    """1200 events in the log (several replay pages), and publishers still going while the
    subscriber replays: it must get every seq after ``since`` exactly once, in order."""
    bus = client.server.app[BUS]
    for i in range(1200):
        await bus.emit("seam.test", n=i)
    stop = asyncio.Event()

    async def keep_publishing() -> int:
        n = 0
        while not stop.is_set():
            await publish(client, {"kind": "seam.test", "payload": {"live": n}})
            n += 1
        return n

    publishers = [asyncio.create_task(keep_publishing()) for _ in range(3)]
    await wait_until(lambda: bus.events_in > 1230, message="live publishing under way")
    sub = await subscribe(client, "?since=100")
    live_at = (await sub.wait_live())["last_seq"]
    await wait_until(lambda: bus.events_in > live_at + 200, 20, message="more live events after the seam")
    stop.set()
    await asyncio.gather(*publishers)
    last = (await log(client, since=0))["last_seq"]
    await wait_until(lambda: sub.seqs() and sub.seqs()[-1] == last, 10, message="caught up")
    assert sub.seqs() == list(range(101, last + 1))
    assert 1200 <= live_at < last - 200  # the seam really was crossed with events in flight
    await sub.close()


async def test_kinds_filter_applies_to_replay_and_live(client) -> None:  # type: ignore[no-untyped-def]
    for kind in ("a", "b", "a"):
        await publish(client, {"kind": kind})
    sub = await subscribe(client, "?since=0&kinds=a,c")
    await sub.wait_live()
    for kind in ("b", "c", "a"):
        await publish(client, {"kind": kind})
    await wait_until(lambda: len(sub.events) == 4, message="filtered events")
    assert [(e["seq"], e["kind"]) for e in sub.events] == [(1, "a"), (3, "a"), (5, "c"), (6, "a")]
    await sub.close()


async def test_live_only_socket_starts_from_now(client) -> None:  # type: ignore[no-untyped-def]
    await publish(client, {"kind": "old"})
    sub = await subscribe(client)
    assert (await sub.wait_live())["last_seq"] == 1
    await publish(client, {"kind": "new"})
    await wait_until(lambda: sub.events, message="live event")
    assert [(e["seq"], e["kind"]) for e in sub.events] == [(2, "new")]
    await sub.close()


# -- retention ------------------------------------------------------------------------------


async def test_retention_trims_by_count_and_a_late_subscriber_is_told_of_the_gap(
    aiohttp_client, config: Config,  # type: ignore[no-untyped-def]
) -> None:
    from telepty.daemon import create_app

    client = await aiohttp_client(create_app(config.with_(bus_retention_count=5, bus_trim_interval=0.05)))
    for i in range(20):
        await publish(client, {"kind": "r", "payload": {"n": i}})

    async def trimmed() -> bool:
        return (await log(client))["first_seq"] == 16

    await wait_until(trimmed, message="log trimmed to the newest 5")
    page = await log(client)
    assert [e["seq"] for e in page["events"]] == [16, 17, 18, 19, 20] and page["retained"] == 5
    sub = await subscribe(client, "?since=3")
    await sub.wait_live()
    (gap,) = sub.of("bus.gap")
    assert (gap["since"], gap["first_seq"]) == (3, 16) and "4..15" in gap["detail"]
    assert sub.seqs() == [16, 17, 18, 19, 20]
    assert (await publish(client, {"kind": "r"}))[1]["seq"] == 21  # seqs never reused
    await sub.close()


async def test_retention_trims_by_age(aiohttp_client, config: Config) -> None:  # type: ignore[no-untyped-def]
    from telepty.daemon import create_app

    app = create_app(config.with_(bus_retention_seconds=0.3, bus_trim_interval=0.05))
    client = await aiohttp_client(app)
    await publish(client, {"kind": "aged"})

    async def gone() -> bool:
        return (await log(client))["retained"] == 0

    await wait_until(gone, message="event aged out")
    assert (await publish(client, {"kind": "fresh"}))[1]["seq"] == 2


# -- slow subscribers ---------------------------------------------------------------------


async def test_a_slow_subscriber_is_disconnected_with_a_reason_and_resumes_from_the_log(
    aiohttp_client, config: Config,  # type: ignore[no-untyped-def]
) -> None:
    from telepty.daemon import create_app

    app = create_app(config.with_(bus_subscriber_queue=4))
    client = await aiohttp_client(app)
    bus = app[BUS]
    fast = await subscribe(client)
    await fast.wait_live()
    # The slow one never reads until it has been cut loose: aiohttp stops reading the socket,
    # the kernel buffers fill, the daemon's writes block, and its 4-slot queue overflows.
    slow = await client.ws_connect("/api/bus")
    await wait_until(lambda: bus.subscriber_count == 2, message="both attached")
    slow_frames: list[dict[str, Any]] = []

    async def read_slow_once_dropped() -> None:
        await wait_until(lambda: bus.subscribers_dropped == 1, 30, message="slow subscriber dropped")
        async for msg in slow:
            slow_frames.append(msg.json())

    slow_reader = asyncio.create_task(read_slow_once_dropped())
    pad = "x" * (256 * 1024)
    n = 80
    worst = 0.0
    for i in range(n):
        t0 = time.monotonic()
        await bus.emit("big", n=i, pad=pad)
        worst = max(worst, time.monotonic() - t0)
    assert worst < 0.5  # publishing never waited on the stuck subscriber
    await wait_until(lambda: len(fast.events) == n, 30, message="fast subscriber got everything")
    assert fast.seqs() == list(range(1, n + 1)) and fast.of("bus.error") == []
    await asyncio.wait_for(slow_reader, 10)
    assert slow.close_code == 4429
    *events, error = slow_frames[1:]  # [0] is bus.live
    assert slow_frames[0]["kind"] == "bus.live"
    got = [e["seq"] for e in events]
    assert got == list(range(1, len(got) + 1)) and len(got) < n
    assert error["kind"] == "bus.error" and error["error"] == "subscriber_overflow"
    assert error["resume_since"] == (got[-1] if got else 0)
    assert "since=" in error["detail"]
    # It comes back with since and misses nothing.
    again = await subscribe(client, f"?since={error['resume_since']}")
    await wait_until(lambda: again.seqs()[-1:] == [n], 30, message="resumed to the end")
    assert got + again.seqs() == list(range(1, n + 1))
    await again.close()
    await fast.close()


async def test_shutdown_tells_subscribers_where_to_resume(aiohttp_client, config: Config) -> None:  # type: ignore[no-untyped-def]
    from telepty.daemon import create_app

    app = create_app(config)
    client = await aiohttp_client(app)
    sub = await subscribe(client, "?since=0")
    publisher = await client.ws_connect("/api/bus?receive=0")
    await publish(client, {"kind": "x"})
    await wait_until(lambda: sub.seqs() == [1], message="event")
    t0 = time.monotonic()
    await client.server.close()  # runs on_shutdown and cleanup like a daemon stop
    assert time.monotonic() - t0 < 5  # open sockets do not hold the stop up
    await wait_until(lambda: sub.closed_with is not None, message="socket closed")
    (err,) = sub.of("bus.error")
    assert (err["error"], err["resume_since"], sub.closed_with) == ("daemon_stopping", 1, 1001)
    told = await publisher.receive(timeout=5)
    assert told.json()["error"] == "daemon_stopping" and "resume_since" not in told.json()
    closing = await publisher.receive(timeout=5)
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001)
