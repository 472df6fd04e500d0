"""Threads: open, count the deliveries that carry the thread's id, close once, survive a restart."""

from __future__ import annotations

from typing import Any

import pytest

from telepty.api.keys import BUS
from tests.helpers import DaemonProcess
from tests.integration.test_handoffs import ENVELOPE, drain, logged_events


@pytest.fixture
def svc(client):  # type: ignore[no-untyped-def]
    return client.server.app


async def open_thread(client, **body: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.post("/api/threads", json={"topic": "refactor the router", **body})
    assert r.status == 201, await r.text()
    return await r.json()


async def inject(client, session: str, thread_id: str | None) -> None:  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {"prompt": "hello"}
    if thread_id is not None:
        body["thread_id"] = thread_id
    r = await client.post(f"/api/sessions/{session}/inject", json=body)
    assert r.status == 202, await r.text()


async def register(client, sid: str) -> None:  # type: ignore[no-untyped-def]
    r = await client.post("/api/sessions/register", json={"type": "wrapped", "session_id": sid})
    assert r.status == 201, await r.text()


async def test_open_count_close(client, svc) -> None:  # type: ignore[no-untyped-def]
    await register(client, "w1")
    sub = svc[BUS].subscribe()
    t = await open_thread(client, orchestrator_session_id="orch",
                          participant_session_ids=["w1", "w2@box", "w1"])
    tid = t["thread_id"]
    assert (t["status"], t["message_count"], t["participant_session_ids"], t["closed_at"]) == (
        "open", 0, ["w1", "w2@box"], None)

    other = (await open_thread(client, topic="other"))["thread_id"]
    for thread in (tid, tid, other, None, tid):
        await inject(client, "w1", thread)
    got = await (await client.get(f"/api/threads/{tid}")).json()
    assert got["message_count"] == 3
    listed = {x["thread_id"]: x["message_count"] for x in await (await client.get("/api/threads")).json()}
    assert listed == {tid: 3, other: 1}

    r = await client.post(f"/api/threads/{tid}/close")
    assert r.status == 200
    closed = await r.json()
    assert (closed["status"], closed["message_count"]) == ("closed", 3)
    assert closed["closed_at"] is not None

    r = await client.post(f"/api/threads/{tid}/close")
    assert r.status == 409 and (await r.json())["error"] == "illegal_transition"

    events = drain(sub, "thread.")
    assert [e["kind"] for e in events] == ["thread.opened", "thread.opened", "thread.closed"]
    opened, _, closing = events
    assert set(opened) == ENVELOPE | {
        "thread_id", "topic", "orchestrator_session_id", "participant_session_ids"}
    assert (opened["thread_id"], opened["topic"], opened["orchestrator_session_id"],
            opened["participant_session_ids"]) == (tid, "refactor the router", "orch", ["w1", "w2@box"])
    assert set(closing) == ENVELOPE | {"thread_id", "topic", "message_count"}
    assert (closing["thread_id"], closing["topic"], closing["message_count"]) == (
        tid, "refactor the router", 3)


async def test_status_filter_newest_first(client) -> None:  # type: ignore[no-untyped-def]
    a, b, c = [(await open_thread(client, topic=n))["thread_id"] for n in "abc"]
    assert (await client.post(f"/api/threads/{b}/close")).status == 200
    ids = lambda rows: [x["thread_id"] for x in rows]  # noqa: E731
    assert ids(await (await client.get("/api/threads")).json()) == [c, b, a]
    assert ids(await (await client.get("/api/threads?status=open")).json()) == [c, a]
    assert ids(await (await client.get("/api/threads?status=closed")).json()) == [b]
    for bad in ("status=gone", "limit=-1"):
        r = await client.get(f"/api/threads?{bad}")
        assert r.status == 400 and (await r.json())["error"] == "invalid_query"


async def test_a_chosen_id_counts_messages_sent_before_it_was_opened(client) -> None:  # type: ignore[no-untyped-def]
    await register(client, "w1")
    await inject(client, "w1", "deliberation-9")
    t = await open_thread(client, thread_id="deliberation-9")
    assert (t["thread_id"], t["message_count"]) == ("deliberation-9", 1)
    r = await client.post("/api/threads", json={"topic": "again", "thread_id": "deliberation-9"})
    assert r.status == 409 and (await r.json())["error"] == "thread_exists"


async def test_unknown_threads_are_404(client) -> None:  # type: ignore[no-untyped-def]
    for method, path in [("GET", "/api/threads/nope"), ("POST", "/api/threads/nope/close")]:
        r = await client.request(method, path)
        assert r.status == 404 and (await r.json())["error"] == "thread_not_found"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{nope", "invalid_json"),
        (b'"topic"', "invalid_json"),
        (b"{}", "missing_field"),
        (b'{"topic": 3}', "invalid_field"),
        (b'{"topic": "   "}', "invalid_field"),
        (b'{"topic": "t", "participant_session_ids": "w1"}', "invalid_field"),
        (b'{"topic": "t", "participant_session_ids": ["w1", 2]}', "invalid_field"),
        (b'{"topic": "t", "participant_session_ids": ["bad id"]}', "invalid_field"),
        (b'{"topic": "t", "orchestrator_session_id": false}', "invalid_field"),
        (b'{"topic": "t", "thread_id": "a/b c"}', "invalid_field"),
    ],
)
async def test_bad_bodies_are_400_and_open_nothing(client, svc, body: bytes, code: str) -> None:  # type: ignore[no-untyped-def]
    sub = svc[BUS].subscribe()
    r = await client.post("/api/threads", data=body, headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert (await r.json())["error"] == code
    assert await (await client.get("/api/threads")).json() == []
    assert drain(sub, "thread.") == []


async def test_a_malformed_close_body_leaves_the_thread_open(client) -> None:  # type: ignore[no-untyped-def]
    tid = (await open_thread(client))["thread_id"]
    r = await client.post(f"/api/threads/{tid}/close", data=b"{x",
                          headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert (await (await client.get(f"/api/threads/{tid}")).json())["status"] == "open"


def test_threads_survive_a_daemon_restart(daemon: DaemonProcess) -> None:
    assert daemon.request("POST", "/api/sessions/register", {"type": "wrapped", "session_id": "w1"})[0] == 201
    status, t = daemon.request("POST", "/api/threads", {"topic": "kept", "participant_session_ids": ["w1"]})
    assert status == 201
    tid = t["thread_id"]
    for _ in range(2):
        assert daemon.request("POST", "/api/sessions/w1/inject", {"prompt": "p", "thread_id": tid})[0] == 202
    status, gone = daemon.request("POST", "/api/threads", {"topic": "closed before restart"})
    assert daemon.request("POST", f"/api/threads/{gone['thread_id']}/close")[0] == 200
    daemon.stop()

    d2 = DaemonProcess(home=daemon.home, env=daemon.env).start()
    status, back = d2.request("GET", f"/api/threads/{tid}")
    assert status == 200
    assert (back["topic"], back["status"], back["participant_session_ids"], back["message_count"]) == (
        "kept", "open", ["w1"], 2)
    assert d2.request("GET", f"/api/threads/{gone['thread_id']}")[1]["status"] == "closed"
    assert d2.request("POST", f"/api/threads/{gone['thread_id']}/close")[0] == 409
    status, closed = d2.request("POST", f"/api/threads/{tid}/close")
    assert (status, closed["message_count"]) == (200, 2)
    d2.stop()

    logged = logged_events(daemon.home, "thread.")
    events = [(e["kind"], e["thread_id"], e.get("message_count")) for e in logged]
    assert events == [
        ("thread.opened", tid, None), ("thread.opened", gone["thread_id"], None),
        ("thread.closed", gone["thread_id"], 0), ("thread.closed", tid, 2),
    ]
