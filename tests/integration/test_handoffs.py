"""Handoffs: the created → claimed → executing → completed path, its 409s, its events,
and its rows surviving a daemon restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from telepty.api.keys import BUS
from tests.helpers import DaemonProcess

EVENT_FIELDS = {"handoff_id", "source_session_id", "deliberation_id", "auto_execute", "task_count"}
ENVELOPE = {"version", "message_id", "kind", "type", "source", "source_host", "target", "ts", "seq"}


def drain(sub: Any, prefix: str = "handoff.") -> list[dict[str, Any]]:
    """Events already fanned out to ``sub``; emits finish before the HTTP answer, so no waiting."""
    out = []
    while not sub.queue.empty():
        env = sub.queue.get_nowait().envelope
        if env["kind"].startswith(prefix):
            out.append(env)
    return out


@pytest.fixture
def svc(client):  # type: ignore[no-untyped-def]
    return client.server.app


async def create(client, **body: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.post("/api/handoffs", json={"tasks": ["a"], **body})
    assert r.status == 201, await r.text()
    return await r.json()


async def test_the_legal_path_publishes_each_step(client, svc) -> None:  # type: ignore[no-untyped-def]
    sub = svc[BUS].subscribe()
    h = await create(client, source_session_id="orch-1", deliberation_id="delib:42", auto_execute=True,
                     tasks=[{"title": "write tests"}, {"title": "fix"}], payload={"repo": "x"})
    hid = h["handoff_id"]
    assert (h["status"], h["task_count"], h["tasks"], h["payload"], h["claimed_by"]) == (
        "created", 2, [{"title": "write tests"}, {"title": "fix"}], {"repo": "x"}, None)

    r = await client.post(f"/api/handoffs/{hid}/claim", json={"claimed_by": "codex-1"})
    assert r.status == 200
    claimed = await r.json()
    assert (claimed["status"], claimed["claimed_by"]) == ("claimed", "codex-1")
    assert claimed["claimed_at"] is not None

    r = await client.post(f"/api/handoffs/{hid}/executing")
    assert r.status == 200 and (await r.json())["status"] == "executing"
    r = await client.post(f"/api/handoffs/{hid}/complete", json={"result": {"ok": True}})
    done = await r.json()
    assert r.status == 200
    assert (done["status"], done["result"], done["claimed_by"]) == ("completed", {"ok": True}, "codex-1")
    assert done["created_at"] <= done["claimed_at"] <= done["executing_at"] <= done["completed_at"]

    events = drain(sub)
    assert [e["kind"] for e in events] == [
        "handoff.created", "handoff.claimed", "handoff.executing", "handoff.completed"]
    for e in events:
        assert set(e) == ENVELOPE | EVENT_FIELDS
        assert {k: e[k] for k in EVENT_FIELDS} == {
            "handoff_id": hid, "source_session_id": "orch-1", "deliberation_id": "delib:42",
            "auto_execute": True, "task_count": 2}
        assert e["type"] == e["kind"] and e["source_host"] == "test-machine"
    assert (await (await client.get(f"/api/handoffs/{hid}")).json()) == done


@pytest.mark.parametrize(
    ("steps", "illegal"),
    [
        ([], "executing"),
        ([], "complete"),
        (["claim"], "claim"),
        (["claim"], "complete"),
        (["claim", "executing"], "claim"),
        (["claim", "executing"], "executing"),
        (["claim", "executing", "complete"], "complete"),
        (["claim", "executing", "complete"], "claim"),
    ],
)
async def test_illegal_transitions_are_409_and_change_nothing(  # type: ignore[no-untyped-def]
    client, svc, steps: list[str], illegal: str
) -> None:
    hid = (await create(client))["handoff_id"]
    for step in steps:
        r = await client.post(f"/api/handoffs/{hid}/{step}", json={"claimed_by": "a"})
        assert r.status == 200
    before = await (await client.get(f"/api/handoffs/{hid}")).json()
    sub = svc[BUS].subscribe()
    r = await client.post(f"/api/handoffs/{hid}/{illegal}", json={"claimed_by": "intruder"})
    assert r.status == 409
    body = await r.json()
    assert body["error"] == "illegal_transition" and before["status"] in body["detail"]
    assert await (await client.get(f"/api/handoffs/{hid}")).json() == before
    assert drain(sub) == []


async def test_racing_claims_have_exactly_one_winner(client, svc) -> None:  # type: ignore[no-untyped-def]
    hid = (await create(client))["handoff_id"]
    sub = svc[BUS].subscribe()
    responses = await asyncio.gather(*[
        client.post(f"/api/handoffs/{hid}/claim", json={"claimed_by": f"agent-{i}"}) for i in range(10)])
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] + [409] * 9
    [winner] = [await r.json() for r in responses if r.status == 200]
    assert (await (await client.get(f"/api/handoffs/{hid}")).json())["claimed_by"] == winner["claimed_by"]
    assert [e["kind"] for e in drain(sub)] == ["handoff.claimed"]


async def test_unknown_handoffs_are_404(client) -> None:  # type: ignore[no-untyped-def]
    for method, path in [("GET", "/api/handoffs/nope"), ("POST", "/api/handoffs/nope/claim"),
                         ("POST", "/api/handoffs/nope/executing"), ("POST", "/api/handoffs/nope/complete")]:
        r = await client.request(method, path, json={"claimed_by": "a"})
        assert r.status == 404, path
        assert (await r.json())["error"] == "handoff_not_found"
    hid = (await create(client))["handoff_id"]
    r = await client.post(f"/api/handoffs/{hid}/explode")
    assert r.status == 404 and (await r.json())["error"] == "not_found"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b"{}", "missing_field"),
        (b'{"tasks": "one"}', "invalid_field"),
        (b'{"task_count": -1}', "invalid_field"),
        (b'{"task_count": true}', "invalid_field"),
        (b'{"task_count": 1.5}', "invalid_field"),
        (b'{"tasks": [1, 2], "task_count": 3}', "invalid_field"),
        (b'{"tasks": [], "auto_execute": "yes"}', "invalid_field"),
        (b'{"tasks": [], "payload": [1]}', "invalid_field"),
        (b'{"tasks": [], "source_session_id": "has spaces"}', "invalid_field"),
        (b'{"tasks": [], "deliberation_id": 7}', "invalid_field"),
        (b'{"tasks": [], "handoff_id": ""}', "invalid_field"),
    ],
)
async def test_bad_create_bodies_are_400_and_store_nothing(  # type: ignore[no-untyped-def]
    client, svc, body: bytes, code: str
) -> None:
    sub = svc[BUS].subscribe()
    r = await client.post("/api/handoffs", data=body, headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert (await r.json())["error"] == code
    assert await (await client.get("/api/handoffs")).json() == []
    assert drain(sub) == []


async def test_claim_needs_a_claimer_and_bad_bodies_change_nothing(client) -> None:  # type: ignore[no-untyped-def]
    hid = (await create(client))["handoff_id"]
    for body in [None, {}, {"claimed_by": 5}, {"claimed_by": "two words"}]:
        r = await client.post(f"/api/handoffs/{hid}/claim", json=body)
        assert r.status == 400, body
    r = await client.post(f"/api/handoffs/{hid}/claim", data=b"{oops",
                          headers={"Content-Type": "application/json"})
    assert r.status == 400 and (await r.json())["error"] == "invalid_json"
    assert (await (await client.get(f"/api/handoffs/{hid}")).json())["status"] == "created"


async def test_task_count_alone_and_chosen_ids(client) -> None:  # type: ignore[no-untyped-def]
    h = await create(client, tasks=None, task_count=4, handoff_id="delib-7.handoff-1")
    assert (h["handoff_id"], h["task_count"], h["tasks"]) == ("delib-7.handoff-1", 4, [])
    r = await client.post("/api/handoffs", json={"task_count": 1, "handoff_id": "delib-7.handoff-1"})
    assert r.status == 409 and (await r.json())["error"] == "handoff_exists"


async def test_list_filters_by_status_newest_first(client) -> None:  # type: ignore[no-untyped-def]
    ids = [(await create(client))["handoff_id"] for _ in range(3)]
    await client.post(f"/api/handoffs/{ids[1]}/claim", json={"claimed_by": "x"})
    every = await (await client.get("/api/handoffs")).json()
    assert [h["handoff_id"] for h in every] == ids[::-1]
    created = await (await client.get("/api/handoffs?status=created")).json()
    assert [h["handoff_id"] for h in created] == [ids[2], ids[0]]
    claimed = await (await client.get("/api/handoffs?status=claimed")).json()
    assert [h["handoff_id"] for h in claimed] == [ids[1]]
    assert len(await (await client.get("/api/handoffs?limit=1")).json()) == 1
    for bad in ("status=done", "limit=0", "limit=x"):
        r = await client.get(f"/api/handoffs?{bad}")
        assert r.status == 400 and (await r.json())["error"] == "invalid_query"


def logged_events(home: Path, prefix: str) -> list[dict[str, Any]]:
    """The durable log as the stopped daemon left it."""
    import orjson

    conn = sqlite3.connect(f"file:{home / 'telepty.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT envelope FROM events WHERE kind LIKE ? ORDER BY seq", (prefix + "%",))
        return [orjson.loads(r[0]) for r in rows]
    finally:
        conn.close()


def test_handoffs_survive_a_daemon_restart(daemon: DaemonProcess) -> None:
    status, h = daemon.request("POST", "/api/handoffs", {"tasks": ["a", "b"], "deliberation_id": "d1"})
    assert status == 201
    hid = h["handoff_id"]
    assert daemon.request("POST", f"/api/handoffs/{hid}/claim", {"claimed_by": "gemini-2"})[0] == 200
    status, other = daemon.request("POST", "/api/handoffs", {"task_count": 0})
    assert status == 201
    daemon.stop()

    d2 = DaemonProcess(home=daemon.home, env=daemon.env).start()
    status, back = d2.request("GET", f"/api/handoffs/{hid}")
    assert status == 200
    assert (back["status"], back["claimed_by"], back["tasks"], back["deliberation_id"]) == (
        "claimed", "gemini-2", ["a", "b"], "d1")
    assert [x["handoff_id"] for x in d2.request("GET", "/api/handoffs")[1]] == [other["handoff_id"], hid]
    # the state machine carries on where the last daemon left it
    assert d2.request("POST", f"/api/handoffs/{hid}/claim", {"claimed_by": "late"})[0] == 409
    assert d2.request("POST", f"/api/handoffs/{hid}/executing")[0] == 200
    assert d2.request("POST", f"/api/handoffs/{hid}/complete")[0] == 200
    d2.stop()

    events = [(e["kind"], e["handoff_id"]) for e in logged_events(daemon.home, "handoff.")]
    assert events == [
        ("handoff.created", hid), ("handoff.claimed", hid), ("handoff.created", other["handoff_id"]),
        ("handoff.executing", hid), ("handoff.completed", hid),
    ]
