"""Contract tests: the Node.js telepty CLI (0.1.96) against this daemon.

Each test sends exactly what that CLI sends for one of its commands (method, path,
body, and its headers: ``User-Agent: node`` from Node's fetch, and its own token from
``~/.telepty/config.json``, which is not ours) and asserts the fields it reads from
the answer, taken from its source (cli.js), then the outcome: the exact text that
reached a real program in a real PTY, the records and events that resulted.

The daemon is the real application in-process; the agents are tests/programs/
fake_agent.py in PTYs the daemon spawned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from telepty import __version__
from telepty.config import Config
from tests.helpers import client_final, wait_until
from tests.integration.agents import AgentFiles, agent_argv, agent_files

# What the Node.js CLI sends with every request (its token is its own uuid, not ours:
# loopback callers need none, and a wrong one is not fatal there, as with any client).
NODE = {"User-Agent": "node", "x-telepty-token": "0b6a29c4-6d3a-4f55-9a55-3f9d8e5b1c2e"}


async def node(client: Any, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    kw: dict[str, Any] = {"headers": {**NODE, **headers}}
    if body is not None:
        kw["json"] = body
    resp = await client.request(method, path, **kw)
    text = await resp.text()
    return resp.status, json.loads(text) if text else None


async def ours(client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    resp = await client.request(method, path, json=body) if body is not None else \
        await client.request(method, path)
    return resp.status, await resp.json()


async def spawn_agent(client: Any, tmp_path: Path, name: str, *, echo: bool = True) -> AgentFiles:
    files = agent_files(tmp_path, name)
    argv = agent_argv(files, echo=echo)
    status, body = await node(client, "POST", "/api/sessions/spawn", {
        "session_id": name, "command": argv[0], "args": argv[1:], "cwd": str(tmp_path), "cols": 100,
        "rows": 30, "type": "USER"})
    assert status == 201, body
    assert body["session_id"] == name  # what `spawn` prints and then attaches to

    async def ready() -> bool:
        _, screen = await node(client, "GET", f"/api/sessions/{name}/screen?lines=50")
        return "ready>" in (screen or {}).get("screen", "")

    await wait_until(ready, 10, message=f"agent {name} ready")
    return files


async def submitted(files: AgentFiles, expected: list[str], timeout: float = 10) -> None:
    await wait_until(lambda: files.submissions() == expected, timeout,
                     message=f"submissions {expected} (have {files.submissions()})")


async def final_of(client: Any, delivery_id: str) -> dict[str, Any]:
    return await client_final(client, delivery_id, timeout=15)


# -- list, session info, meta ------------------------------------------------------------


async def test_list_and_session_info_get_what_they_print(client: Any, tmp_path: Path) -> None:
    await spawn_agent(client, tmp_path, "a1")
    status, sessions = await node(client, "GET", "/api/sessions")
    assert status == 200
    s = next(x for x in sessions if x["id"] == "a1")
    # list: id, command, healthStatus (+healthReason), terminal, cwd, active_clients, createdAt
    assert (s["healthStatus"], s["healthReason"], s["terminal"]) == ("CONNECTED", "PTY_RUNNING", "daemon-pty")
    assert s["active_clients"] == 0 and s["cwd"] == str(tmp_path) and "fake_agent.py" in s["command"]
    datetime.fromisoformat(s["createdAt"])  # `new Date(s.createdAt)` must not be Invalid Date
    # session info: type, lastActivityAt, idleSeconds (a number), semantic
    status, info = await node(client, "GET", "/api/sessions/a1")
    assert status == 200 and info["type"] == "spawned" and isinstance(info["idleSeconds"], int)
    datetime.fromisoformat(info["lastActivityAt"])
    assert info["semantic"] is None and info["lastInjectReplyTo"] is None


async def test_meta_keeps_the_node_cli_from_restarting_this_daemon(client: Any) -> None:
    """The Node.js CLI replaces a local daemon whose meta.version is not its own (0.1.96)
    or that lacks a capability it needs (allow: wrapped-sessions)."""
    status, meta = await node(client, "GET", "/api/meta")
    assert status == 200 and meta["version"] == "0.1.96" and meta["implementation_version"] == __version__
    assert "wrapped-sessions" in meta["capabilities"] and meta["home_id"]
    _, mine = await ours(client, "GET", "/api/meta")
    assert mine["version"] == __version__ and "implementation_version" not in mine


# -- inject, reply, enter, submit, read-screen ------------------------------------------------


async def test_inject_from_and_reply_through_last_inject_reply_to(client: Any, tmp_path: Path) -> None:
    a = await spawn_agent(client, tmp_path, "ag-a")
    b = await spawn_agent(client, tmp_path, "ag-b")
    # `telepty inject --from ag-b ag-a "question"` (buildInjectRequestBody)
    status, body = await node(client, "POST", "/api/sessions/ag-a/inject",
                              {"prompt": "question", "no_enter": False, "from": "ag-b", "reply_to": "ag-b"})
    assert status == 202 and body["success"] is True and body["inject_id"] == body["delivery_id"]
    assert (await final_of(client, body["delivery_id"]))["status"] == "delivered"
    await submitted(a, ["question"])
    # `TELEPTY_SESSION_ID=ag-a telepty reply "answer"`: reads lastInjectReplyTo, then injects
    _, me = await node(client, "GET", "/api/sessions/ag-a")
    assert me["lastInjectReplyTo"] == "ag-b" and me["lastInjectFrom"] == "ag-b"
    status, body = await node(client, "POST", f"/api/sessions/{me['lastInjectReplyTo']}/inject",
                              {"prompt": "answer", "from": "ag-a", "reply_to": "ag-a"})
    assert status == 202
    await final_of(client, body["delivery_id"])
    await submitted(b, ["answer"])
    assert a.submissions() == ["question"]


async def test_enter_send_key_and_inject_submit_press_enter_once(client: Any, tmp_path: Path) -> None:
    a = await spawn_agent(client, tmp_path, "ag-e")
    # `telepty inject --submit ag-e "draft"`: no_enter, then POST /submit with its retry options
    status, body = await node(client, "POST", "/api/sessions/ag-e/inject",
                              {"prompt": "draft", "no_enter": True})
    assert status == 202
    assert (await final_of(client, body["delivery_id"]))["status"] == "delivered"
    assert a.submissions() == []  # pasted, not submitted
    status, sub = await node(client, "POST", "/api/sessions/ag-e/submit",
                             {"pre_delay_ms": 600, "retries": 2, "retry_delay_ms": 500})
    assert status == 200 and sub["strategy"] == "keys" and sub["attempts"] == 1, sub
    await submitted(a, ["draft"])
    # `telepty enter ag-e`: an empty prompt; `telepty send-key ag-e enter`: POST /submit, no body
    status, body = await node(client, "POST", "/api/sessions/ag-e/inject", {"prompt": "", "no_enter": False})
    assert status == 200 and body["kind"] == "keys" and body["keys"] == ["Enter"], body
    status, sub = await node(client, "POST", "/api/sessions/ag-e/submit")
    assert status == 200 and sub["status"] == "delivered"
    await submitted(a, ["draft", "", ""])
    await asyncio.sleep(0.3)  # nothing more may come: the old retries are not repeated
    assert a.submissions() == ["draft", "", ""]


async def test_an_empty_prompt_stays_an_error_for_everyone_else(client: Any, tmp_path: Path) -> None:
    a = await spawn_agent(client, tmp_path, "ag-x")
    status, body = await ours(client, "POST", "/api/sessions/ag-x/inject", {"prompt": "", "no_enter": False})
    assert status == 400 and body["error"] == "missing_field"
    status, body = await node(client, "POST", "/api/sessions/ag-x/inject", {"prompt": "", "no_enter": True})
    assert status == 400 and body["error"] == "missing_field"  # nothing to paste, and no Enter asked
    status, body = await node(client, "POST", "/api/sessions/ag-x/submit", {"retries": "many"})
    assert status == 400 and body["error"] == "invalid_field"
    _, records = await ours(client, "GET", "/api/deliveries?session=ag-x")
    assert records == [] and a.submissions() == []


async def test_read_screen_gets_screen(client: Any, tmp_path: Path) -> None:
    await spawn_agent(client, tmp_path, "ag-s")
    status, body = await node(client, "GET", "/api/sessions/ag-s/screen?lines=50")
    assert status == 200 and "ready>" in body["screen"] and body["screen"] == body["text"]


# -- status, status-report ------------------------------------------------------------------


async def test_status_report_is_applied_and_status_shows_it(client: Any, tmp_path: Path) -> None:
    await spawn_agent(client, tmp_path, "ag-r")
    # `TELEPTY_SESSION_ID=ag-r telepty status-report --phase implementing --task parser --needs-input --seq 3`
    status, body = await node(client, "POST", "/api/sessions/ag-r/state", {
        "phase": "implementing", "source": "self_report", "current_task": "parser", "needs_input": True,
        "seq": 3})
    assert status == 200 and body["semantic"]["phase"] == "implementing", body
    status, st = await node(client, "GET", "/api/sessions/ag-r/state")
    assert status == 200 and st["session_id"] == "ag-r"
    assert st["self_report"] == {"phase": "implementing", "current_task": "parser", "blocker": None,
                                 "needs_input": True, "thread_id": None, "source": "self_report", "seq": 3}
    assert st["auto"]["state"] in {"idle", "running", "unknown"} and "trigger" in st["auto"]["detail"]
    _, info = await node(client, "GET", "/api/sessions/ag-r")
    assert info["semantic"]["current_task"] == "parser" and info["lastStateReportAt"]
    _, page = await ours(client, "GET", "/api/bus/events?kinds=session_state_report")
    assert [(e["session_id"], e["phase"]) for e in page["events"]] == [("ag-r", "implementing")]


async def test_bad_state_reports_change_nothing(client: Any, tmp_path: Path) -> None:
    await spawn_agent(client, tmp_path, "ag-b2")
    await node(client, "POST", "/api/sessions/ag-b2/state", {"phase": "first"})
    for body, code in (({"current_task": "no phase"}, 400), ({"phase": "p", "seq": -4}, 400),
                       ({"phase": "p", "needs_input": "yes"}, 400)):
        status, answer = await node(client, "POST", "/api/sessions/ag-b2/state", body)
        assert status == code, answer
    status, answer = await node(client, "POST", "/api/sessions/nobody/state", {"phase": "p"})
    assert status == 404 and answer["error"] == "session_not_found"
    _, st = await node(client, "GET", "/api/sessions/ag-b2/state")
    assert st["self_report"]["phase"] == "first" and st["self_report"]["seq"] == 1
    _, page = await ours(client, "GET", "/api/bus/events?kinds=session_state_report")
    assert len(page["events"]) == 1


# -- multicast, broadcast ----------------------------------------------------------------------


async def test_multicast_and_broadcast_answer_results_successful(client: Any, tmp_path: Path) -> None:
    a = await spawn_agent(client, tmp_path, "m-a")
    b = await spawn_agent(client, tmp_path, "m-b")
    status, body = await node(client, "POST", "/api/sessions/multicast/inject",
                              {"session_ids": ["m-a", "m-b"], "prompt": "to both"})
    assert status == 202 and body["results"] == {"successful": ["m-a", "m-b"], "failed": []}, body
    await client_final(client, body["deliveries"][0]["delivery_id"])
    await submitted(a, ["to both"])
    await submitted(b, ["to both"])
    status, body = await node(client, "POST", "/api/sessions/broadcast/inject", {"prompt": "to all"})
    assert status == 202 and sorted(body["results"]["successful"]) == ["m-a", "m-b"]
    await submitted(a, ["to both", "to all"])
    await submitted(b, ["to both", "to all"])
    # everyone else keeps our shape: results is the list of records
    _, mine = await ours(client, "POST", "/api/sessions/multicast/inject",
                         {"session_ids": ["m-a"], "prompt": "ours"})
    assert isinstance(mine["results"], list) and "deliveries" not in mine


# -- rename, delete, clean ------------------------------------------------------------------


async def test_rename_by_patch(client: Any, tmp_path: Path) -> None:
    await spawn_agent(client, tmp_path, "old-name")
    status, body = await node(client, "PATCH", "/api/sessions/old-name", {})
    assert status == 400 and body["error"] == "missing_field"
    status, body = await node(client, "PATCH", "/api/sessions/old-name", {"new_id": "new-name"})
    assert status == 200 and (body["old_id"], body["new_id"]) == ("old-name", "new-name")
    assert (await node(client, "GET", "/api/sessions/new-name"))[0] == 200
    assert (await node(client, "GET", "/api/sessions/old-name"))[0] == 404


async def test_clean_sees_exited_as_stale_and_never_a_waiting_wrapper(client: Any, tmp_path: Path) -> None:
    """The Node.js CLI's `clean` deletes what says STALE or DISCONNECTED, one by one."""
    status, _ = await node(client, "POST", "/api/sessions/spawn",
                           {"session_id": "done", "command": "true", "args": [], "cwd": str(tmp_path)})
    assert status == 201
    status, _ = await node(client, "POST", "/api/sessions/register",
                           {"session_id": "away", "command": "claude", "cwd": str(tmp_path), "backend": "pty",
                            "term_program": None, "term": "xterm"})
    assert status == 201

    async def health() -> dict[str, str]:
        _, sessions = await node(client, "GET", "/api/sessions")
        return {s["id"]: s["healthStatus"] for s in sessions}

    await wait_until(lambda: _has(health, {"done": "STALE"}), 10, message="exited session is STALE")
    assert (await health())["away"] == "RECONNECTING"
    ghosts = [sid for sid, h in (await health()).items() if h in ("STALE", "DISCONNECTED")]
    assert ghosts == ["done"]
    for sid in ghosts:
        assert (await node(client, "DELETE", f"/api/sessions/{sid}"))[0] == 200
    assert set(await health()) == {"away"}


async def _has(get: Any, expected: dict[str, str]) -> bool:
    have = await get()
    return all(have.get(k) == v for k, v in expected.items())


# -- spawn's attach: the old terminal socket -----------------------------------------------------


async def test_spawn_then_attach_over_the_old_socket(client: Any, tmp_path: Path) -> None:
    status, body = await node(client, "POST", "/api/sessions/spawn", {
        "session_id": "sh", "command": "bash", "args": ["--norc", "--noprofile", "-i"], "cwd": str(tmp_path),
        "cols": 80, "rows": 24, "type": "USER"})
    assert status == 201 and body["session_id"] == "sh"
    ws = await client.ws_connect(f"/api/sessions/{body['session_id']}?token={NODE['x-telepty-token']}")
    seen: list[str] = []

    async def pump() -> None:
        async for msg in ws:
            frame = json.loads(msg.data)
            assert frame["type"] == "output"
            seen.append(frame["data"])

    task = asyncio.ensure_future(pump())
    await ws.send_str(json.dumps({"type": "resize", "cols": 90, "rows": 20}))
    await ws.send_str(json.dumps({"type": "input", "data": "echo attached-$((6*7)); stty size\r"}))
    await wait_until(lambda: "attached-42" in "".join(seen) and "20 90" in "".join(seen), 10,
                     message="the echo and the new size through the socket")
    _, info = await node(client, "GET", "/api/sessions/sh")
    assert info["active_clients"] == 1  # attach keeps a session only while someone is attached
    await ws.close()
    await task
    await wait_until(lambda: _clients(client, "sh", 0), 5, message="detached")


async def _clients(client: Any, sid: str, n: int) -> bool:
    _, info = await node(client, "GET", f"/api/sessions/{sid}")
    return bool(info["active_clients"] == n)


async def test_the_old_socket_refuses_what_it_cannot_serve(client: Any, tmp_path: Path) -> None:
    for path, code in (("/api/sessions/nobody?owner=1", 404), ("/api/sessions/nobody", 404),
                       ("/api/sessions/bad%20id?owner=1", 400)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await client.ws_connect(path)
        assert exc.value.status == code, path
    await spawn_agent(client, tmp_path, "spawned-one")
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:  # only a wrapped session takes a wrapper
        await client.ws_connect("/api/sessions/spawned-one?owner=1")
    assert exc.value.status == 409


# -- handoff, deliberate --------------------------------------------------------------------------


async def test_handoff_drop_list_claim_status_get(client: Any) -> None:
    status, body = await node(client, "POST", "/api/handoff", {"deliberation_id": None})
    assert status == 400  # no synthesis: nothing is created
    assert (await node(client, "GET", "/api/handoff"))[1] == []
    synthesis = {"summary": "split the parser", "tasks": [{"task": "lexer", "files": ["lex.py"]}]}
    status, body = await node(client, "POST", "/api/handoff", {
        "deliberation_id": "delib-1", "source_session_id": "orch", "synthesis": synthesis,
        "auto_execute": False})
    assert status == 201 and body["status"] == "pending"
    hid = body["handoff_id"]
    status, listed = await node(client, "GET", "/api/handoff?status=pending")
    assert [(h["id"], h["status"], h["task_count"], h["deliberation_id"]) for h in listed] == [
        (hid, "pending", 1, "delib-1")]
    datetime.fromisoformat(listed[0]["created_at"])
    status, body = await node(client, "POST", f"/api/handoff/{hid}/claim", {"agent_session_id": "worker"})
    assert status == 200 and body["status"] == "claimed"
    status, body = await node(client, "POST", f"/api/handoff/{hid}/claim", {"agent_session_id": "late"})
    assert status == 409
    status, body = await node(client, "PATCH", f"/api/handoff/{hid}",
                              {"status": "executing", "message": "go"})
    assert status == 200 and body["status"] == "executing"
    status, body = await node(client, "PATCH", f"/api/handoff/{hid}", {"status": "failed", "message": "no"})
    assert status == 409 and body["error"] == "illegal_transition"
    status, h = await node(client, "GET", f"/api/handoff/{hid}")
    assert (h["id"], h["status"], h["claimed_by"], h["deliberation_id"]) == (
        hid, "executing", "worker", "delib-1")
    assert h["synthesis"] == synthesis and h["progress"] == []  # handoff get prints synthesis
    _, mine = await ours(client, "GET", f"/api/handoffs/{hid}")
    assert mine["status"] == "executing" and mine["tasks"] == synthesis["tasks"]
    _, page = await ours(client, "GET",
                         "/api/bus/events?kinds=handoff.created,handoff.claimed,handoff.executing")
    assert [e["kind"] for e in page["events"]] == ["handoff.created", "handoff.claimed", "handoff.executing"]


async def test_deliberate_opens_lists_and_ends_a_thread(client: Any) -> None:
    status, body = await node(client, "POST", "/api/threads", {
        "topic": "API shape", "orchestrator_session_id": "orch", "participant_session_ids": ["a", "b"],
        "context": None})
    assert status == 201
    tid = body["thread_id"]
    _, listed = await node(client, "GET", "/api/threads")
    assert [(t["id"], t["participant_count"], t["message_count"], t["topic"]) for t in listed] == [
        (tid, 2, 0, "API shape")]
    _, one = await node(client, "GET", f"/api/threads/{tid}")
    assert one["participant_session_ids"] == ["a", "b"] and one["orchestrator_session_id"] == "orch"
    for _ in range(2):  # `deliberate end`, twice: the second changes nothing and is no error
        status, body = await node(client, "PATCH", f"/api/threads/{tid}", {"status": "closed"})
        assert status == 200 and body["status"] == "closed"
    status, body = await node(client, "PATCH", f"/api/threads/{tid}", {"status": "active"})
    assert status == 400
    _, page = await ours(client, "GET", "/api/bus/events?kinds=thread.closed")
    assert len(page["events"]) == 1


# -- our security stays -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PATCH", "/api/sessions/x", {"new_id": "y"}),
    ("POST", "/api/sessions/x/submit", {}),
    ("POST", "/api/sessions/x/state", {"phase": "p"}),
    ("GET", "/api/sessions/x/state", None),
    ("POST", "/api/handoff", {"synthesis": {}}),
    ("PATCH", "/api/threads/t", {"status": "closed"}),
    ("GET", "/api/meta", None),
])
async def test_browsers_are_refused_and_no_cors(client: Any, method: str, path: str, body: Any) -> None:
    """The Node.js daemon answered every loopback caller with CORS *: any web page could
    drive the agents. Its routes here refuse a browser Origin like every other route."""
    resp = await client.request(method, path, json=body, headers={**NODE, "Origin": "https://evil.example"})
    assert resp.status == 403 and (await resp.json())["error"] == "origin_forbidden"
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_the_old_socket_is_authenticated_too(client: Any) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await client.ws_connect("/api/sessions/x?owner=1", headers={"Origin": "https://evil.example"})
    assert exc.value.status == 403


@pytest.fixture
def strict_config(config: Config) -> Config:
    return dataclasses.replace(config, require_token=True)


async def test_strict_mode_wants_our_token_from_the_node_cli_too(
    aiohttp_client: Any, strict_config: Config,
) -> None:
    from telepty.daemon import create_app

    strict = await aiohttp_client(create_app(strict_config))
    status, body = await node(strict, "GET", "/api/sessions")
    assert status == 401 and body["error"] == "token_required"
    token = (strict_config.home / "token").read_text().strip()
    status, _ = await node(strict, "GET", "/api/sessions", **{"x-telepty-token": token})
    assert status == 200  # its authToken set to ours (~/.telepty/config.json) works
