"""Multicast and broadcast through the API: one delivery per target, checked up front, capped.

Real daemon app, real tmux panes running the fake agent. Asserted: what each agent
submitted, the delivery records, and the audit rows.
"""

from __future__ import annotations

import hashlib

import pytest

from telepty.api.keys import REGISTRY
from telepty.config import Config
from telepty.sessions.model import SessionState
from tests.helpers import wait_until
from tests.integration.identity_helpers import agent_panes, register_sender

pytestmark = pytest.mark.integration

HEADER = "x-telepty-session-token"
PROMPT = "status report, please: what are you working on?"


async def test_multicast_to_three_panes_makes_three_deliveries_that_all_land(client, session,  # type: ignore[no-untyped-def]
                                                                              tmp_path) -> None:
    panes = await agent_panes(client, session, tmp_path, ["a", "b", "c"])
    token = await register_sender(client, "orch")
    resp = await client.post("/api/sessions/multicast/inject",
                             json={"session_ids": ["a", "b", "c"], "prompt": PROMPT, "wait": True,
                                   "timeout": 20},
                             headers={HEADER: token})
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert out["count"] == 3 and out["summary"] == {"delivered": 3, "failed": 0, "pending": 0}
    assert [r["session_id"] for r in out["results"]] == ["a", "b", "c"]
    ids = {r["delivery_id"] for r in out["results"]}
    assert len(ids) == 3  # three records, not one
    for name, ap in panes.items():
        await wait_until(lambda ap=ap: ap.files.submissions() == [PROMPT], message=f"{name} got it once")
    records = [await (await client.get(f"/api/deliveries/{i}")).json() for i in ids]
    assert {(r["session_id"], r["status"], r["verified_sender"]) for r in records} == {
        ("a", "delivered", "orch"), ("b", "delivered", "orch"), ("c", "delivered", "orch")}
    rows = await (await client.get("/api/injects")).json()
    assert len(rows) == 3
    assert {r["delivery_id"] for r in rows} == ids
    assert {r["batch_id"] for r in rows} == {out["batch_id"]}
    assert {r["via"] for r in rows} == {"multicast"}
    assert {r["prompt_sha256"] for r in rows} == {hashlib.sha256(PROMPT.encode()).hexdigest()}
    assert all("prompt" not in r for r in rows)


async def test_multicast_with_an_unknown_target_sends_nothing(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    panes = await agent_panes(client, session, tmp_path, ["a"])
    resp = await client.post("/api/sessions/multicast/inject",
                             json={"session_ids": ["a", "ghost"], "prompt": PROMPT})
    assert resp.status == 404
    body = await resp.json()
    assert body["error"] == "session_not_found" and "ghost" in body["detail"]
    assert await (await client.get("/api/deliveries")).json() == []
    assert panes["a"].files.submissions() == []
    for bad in ({"prompt": PROMPT}, {"prompt": PROMPT, "session_ids": "a,b"},
                {"prompt": PROMPT, "session_ids": []}, {"prompt": PROMPT, "session_ids": ["a b"]},
                {"session_ids": ["a"]}):
        resp = await client.post("/api/sessions/multicast/inject", json=bad)
        assert resp.status == 400, bad
    assert await (await client.get("/api/deliveries")).json() == []


async def test_broadcast_excludes_the_sender_and_exited_sessions(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    panes = await agent_panes(client, session, tmp_path, ["a", "b", "gone"])
    await client.server.app[REGISTRY].set_state("gone", SessionState.EXITED)
    token = await register_sender(client, "me")
    resp = await client.post("/api/sessions/broadcast/inject",
                             json={"prompt": PROMPT, "wait": True, "timeout": 20}, headers={HEADER: token})
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert sorted(r["session_id"] for r in out["results"]) == ["a", "b"]
    assert out["excluded"] == [{"session_id": "me", "reason": "sender"}]
    for name in ("a", "b"):
        await wait_until(lambda n=name: panes[n].files.submissions() == [PROMPT], message=f"{name} got it")
    assert panes["gone"].files.submissions() == []
    deliveries = await (await client.get("/api/deliveries")).json()
    assert sorted(d["session_id"] for d in deliveries) == ["a", "b"]  # none for "me", none for "gone"
    rows = await (await client.get("/api/injects")).json()
    assert {r["via"] for r in rows} == {"broadcast"} and len(rows) == 2


async def test_fanout_beyond_the_cap_is_refused_and_sends_nothing(aiohttp_client, config: Config,  # type: ignore[no-untyped-def]
                                                                  session, tmp_path) -> None:
    from telepty.daemon import create_app

    client = await aiohttp_client(create_app(config.with_(fanout_max=2)))
    panes = await agent_panes(client, session, tmp_path, ["a", "b", "c"])
    resp = await client.post("/api/sessions/broadcast/inject", json={"prompt": PROMPT})
    assert resp.status == 400
    assert (await resp.json())["error"] == "fanout_too_large"
    resp = await client.post("/api/sessions/multicast/inject",
                             json={"session_ids": ["a", "b", "c"], "prompt": PROMPT})
    assert resp.status == 400
    assert (await resp.json())["error"] == "fanout_too_large"
    assert await (await client.get("/api/deliveries")).json() == []
    assert await (await client.get("/api/injects")).json() == []
    # Narrowed to the cap, it goes through.
    resp = await client.post("/api/sessions/broadcast/inject",
                             json={"prompt": PROMPT, "exclude": ["c"], "wait": True, "timeout": 20})
    assert resp.status == 200, await resp.text()
    for name in ("a", "b"):
        await wait_until(lambda n=name: panes[n].files.submissions() == [PROMPT], message=f"{name} got it")
    assert panes["c"].files.submissions() == []


async def test_a_repeated_fanout_with_one_idempotency_key_delivers_once(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    panes = await agent_panes(client, session, tmp_path, ["a", "b"])
    body = {"session_ids": ["a", "b"], "prompt": PROMPT, "wait": True, "timeout": 20}
    first = await (await client.post("/api/sessions/multicast/inject", json=body,
                                      headers={"Idempotency-Key": "k1"})).json()
    again = await (await client.post("/api/sessions/multicast/inject", json=body,
                                      headers={"Idempotency-Key": "k1"})).json()
    assert [r["delivery_id"] for r in first["results"]] == [r["delivery_id"] for r in again["results"]]
    for name in ("a", "b"):
        await wait_until(lambda n=name: panes[n].files.submissions() == [PROMPT], message=f"{name} got it")
    assert len(await (await client.get("/api/deliveries")).json()) == 2
    assert len(await (await client.get("/api/injects")).json()) == 2


async def test_broadcast_with_nobody_else_is_an_error(client) -> None:  # type: ignore[no-untyped-def]
    token = await register_sender(client, "alone")
    resp = await client.post("/api/sessions/broadcast/inject", json={"prompt": PROMPT},
                             headers={HEADER: token})
    assert resp.status == 404
    assert (await resp.json())["error"] == "no_targets"
