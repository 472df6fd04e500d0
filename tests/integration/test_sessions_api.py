"""Sessions API against the real app (in-process aiohttp server, real SQLite)."""

from __future__ import annotations

import os
import sqlite3

import orjson
import pytest

from telepty.config import Config


async def register(client, **body):  # type: ignore[no-untyped-def]
    resp = await client.post("/api/sessions/register", json=body)
    return resp.status, await resp.json()


async def test_register_returns_full_record(client, config: Config) -> None:
    status, s = await register(
        client, session_id="claude-a", command="claude --resume", cwd="/work/myproj",
        pid=os.getpid(), tmux_pane="%3", tmux_socket="/tmp/tmux-0/default",
    )
    assert status == 201
    assert s["id"] == "claude-a"
    assert s["type"] == "wrapped"
    assert s["agent"] == "claude"
    assert s["state"] == "running"
    assert s["tmux_pane"] == "%3"
    assert s["locator"] == {"machine_id": "test-machine", "session_id": "claude-a",
                            "project_id": "myproj"}
    assert s["idle_seconds"] is not None and s["idle_seconds"] >= 0
    assert s["alias"] == "claude-a"


async def test_default_id_is_readable(client) -> None:
    status, s = await register(client, command="codex", cwd="/home/u/proj", pid=os.getpid())
    assert status == 201
    assert s["id"] == "codex-proj-1"
    status, s2 = await register(client, command="codex", cwd="/home/u/proj", pid=1)
    assert s2["id"] == "codex-proj-2"


async def test_get_by_id_and_alias_and_filters(client) -> None:
    await register(client, session_id="a1", command="claude", cwd="/x/p1", pid=os.getpid())
    await register(client, session_id="b1", command="codex", cwd="/x/p2", pid=os.getpid())
    await register(client, session_id="c1", type="pane", tmux_pane="%9", command="gemini",
                   cwd="/x/p2")
    resp = await client.get("/api/sessions/a1")
    assert resp.status == 200
    assert (await resp.json())["id"] == "a1"

    resp = await client.get("/api/sessions", params={"agent": "codex"})
    assert [s["id"] for s in await resp.json()] == ["b1"]
    resp = await client.get("/api/sessions", params={"project": "p2"})
    assert sorted(s["id"] for s in await resp.json()) == ["b1", "c1"]
    resp = await client.get("/api/sessions", params={"type": "pane"})
    assert [s["id"] for s in await resp.json()] == ["c1"]


async def test_live_clash_is_409_and_changes_nothing(client) -> None:
    await register(client, session_id="claude", command="claude", pid=os.getpid())
    status, body = await register(client, session_id="claude", command="claude", pid=1)
    assert status == 409
    assert body["error"] == "session_exists"
    resp = await client.get("/api/sessions")
    sessions = await resp.json()
    assert [(s["id"], s["pid"]) for s in sessions] == [("claude", os.getpid())]


async def test_same_owner_reregistering_is_not_a_clash(client) -> None:
    await register(client, session_id="w", command="claude", pid=os.getpid())
    status, body = await register(client, session_id="w", command="claude", pid=os.getpid())
    assert status == 201
    assert body["id"] == "w"


async def test_replace_records_event_and_alias_resolves_to_new(client, config: Config) -> None:
    await register(client, session_id="claude", command="claude", pid=os.getpid())
    status, new = await register(client, session_id="claude", command="claude", pid=1,
                                 replace=True)
    assert status == 201
    assert new["id"] == "claude-2"
    assert new["alias"] == "claude"
    old = await (await client.get("/api/sessions/claude-2")).json()
    assert old["state"] == "running"
    resolved = await (await client.get("/api/sessions/claude")).json()
    assert resolved["id"] == "claude-2"
    sessions = {s["id"]: s for s in await (await client.get("/api/sessions")).json()}
    assert sessions["claude"]["state"] == "exited"
    assert sessions["claude"]["meta"]["exit_reason"] == "replaced"

    conn = sqlite3.connect(config.db_path)
    rows = conn.execute("SELECT kind, envelope FROM events WHERE kind='session.replaced'").fetchall()
    assert len(rows) == 1
    env = orjson.loads(rows[0][1])
    assert (env["old_id"], env["new_id"], env["alias"]) == ("claude", "claude-2", "claude")
    assert env["source_host"] == "test-machine"


async def test_delete_is_exact_id_only(client) -> None:
    await register(client, session_id="claude", command="claude", pid=os.getpid())
    await register(client, session_id="claude", command="claude", pid=1, replace=True)
    resp = await client.delete("/api/sessions/nonexistent")
    assert resp.status == 404
    assert (await resp.json())["error"] == "session_not_found"
    # "claude" the alias points at claude-2, but DELETE acts on the exact id "claude".
    resp = await client.delete("/api/sessions/claude")
    assert resp.status == 200
    ids = [s["id"] for s in await (await client.get("/api/sessions")).json()]
    assert ids == ["claude-2"]


async def test_unknown_session_404(client) -> None:
    resp = await client.get("/api/sessions/nope")
    assert resp.status == 404
    assert await resp.json() == {"error": "session_not_found",
                                 "detail": "no session with id or alias 'nope'"}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1,2]", "invalid_json"),
        (b'"str"', "invalid_json"),
        (orjson.dumps({"session_id": "bad id!"}), "invalid_session_id"),
        (orjson.dumps({"session_id": "x" * 65}), "invalid_session_id"),
        (orjson.dumps({"session_id": 5}), "invalid_session_id"),
        (orjson.dumps({"pid": "12"}), "invalid_field"),
        (orjson.dumps({"pid": True}), "invalid_field"),
        (orjson.dumps({"pid": -4}), "invalid_field"),
        (orjson.dumps({"command": ["a"]}), "invalid_field"),
        (orjson.dumps({"cwd": 3}), "invalid_field"),
        (orjson.dumps({"type": "spawned"}), "invalid_field"),
        (orjson.dumps({"type": "pane"}), "missing_field"),
        (orjson.dumps({"tmux_pane": "3"}), "invalid_field"),
        (orjson.dumps({"tmux_pane": "%3; rm -rf /"}), "invalid_field"),
        (orjson.dumps({"agent": "skynet"}), "invalid_field"),
        (orjson.dumps({"replace": "yes"}), "invalid_field"),
        (orjson.dumps({"meta": []}), "invalid_field"),
    ],
)
async def test_bad_register_bodies_are_400_and_change_nothing(client, raw: bytes, code: str) -> None:
    resp = await client.post("/api/sessions/register", data=raw,
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert await (await client.get("/api/sessions")).json() == []


async def test_unknown_route_and_method_are_json(client) -> None:
    resp = await client.get("/api/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    resp = await client.put("/api/sessions/register")
    assert resp.status == 405
    assert (await resp.json())["error"] == "method_not_allowed"


async def test_oversized_body_is_413(client) -> None:
    resp = await client.post("/api/sessions/register", data=b"{" + b" " * (5 * 1024 * 1024) + b"}",
                             headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"


async def test_meta_and_health(client) -> None:
    resp = await client.get("/api/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok" and body["version"]
    meta = await (await client.get("/api/meta")).json()
    assert meta["machine_id"] == "test-machine"
    assert meta["pid"] == os.getpid()
    assert "sessions" in meta["capabilities"]
