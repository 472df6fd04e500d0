"""Spawned sessions: a real PTY owned by the daemon, attached over real WebSockets."""

from __future__ import annotations

import json
import os

import aiohttp
import psutil
import pytest

from tests.helpers import wait_until


async def spawn(client, **body):  # type: ignore[no-untyped-def]
    resp = await client.post("/api/sessions/spawn", json=body)
    return resp.status, await resp.json()


class Collector:
    """Reads an attach socket in the background, keeping every byte it saw."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.data = b""
        self.control: list[dict] = []  # type: ignore[type-arg]

    async def pump(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                self.data += msg.data
            elif msg.type is aiohttp.WSMsgType.TEXT:
                self.control.append(json.loads(msg.data))


async def attach(client, session_id: str, **params):  # type: ignore[no-untyped-def]
    import asyncio

    ws = await client.ws_connect(f"/api/sessions/{session_id}/attach", params=params)
    col = Collector(ws)
    col.task = asyncio.ensure_future(col.pump())  # type: ignore[attr-defined]
    return col


async def test_spawn_attach_two_clients_replay_resize_detach(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    status, s = await spawn(client, session_id="sh1", command="bash",
                            args=["--norc", "--noprofile", "-i"], cwd=str(tmp_path),
                            cols=100, rows=30, env={"PS1": "$ "})
    assert status == 201, s
    assert (s["type"], s["state"], s["cwd"]) == ("spawned", "running", str(tmp_path))
    assert psutil.pid_exists(s["pid"])

    a = await attach(client, "sh1")
    b = await attach(client, "sh1")
    await wait_until(lambda: b"$ " in a.data and b"$ " in b.data, message="prompt on both")
    await a.ws.send_bytes(b"echo hello-$((6*7))\n")
    await wait_until(lambda: b"hello-42" in a.data and b"hello-42" in b.data, message="echo")
    detail = await (await client.get("/api/sessions/sh1")).json()
    assert detail["clients"] == 2

    # resize from B reaches the PTY
    await b.ws.send_str(json.dumps({"type": "resize", "cols": 77, "rows": 22}))
    await b.ws.send_bytes(b"stty size\n")
    await wait_until(lambda: b"22 77" in a.data, message="new size")

    # A detaches; the session keeps running and B keeps working
    await a.ws.close()
    await b.ws.send_bytes(b"echo still-$((1+1))\n")
    await wait_until(lambda: b"still-2" in b.data, message="B still live")
    assert b"still-2" not in a.data
    s = await (await client.get("/api/sessions/sh1")).json()
    assert s["state"] == "running"
    await wait_until(lambda: _clients(client, "sh1", 1), message="client count back to 1")

    # a late client gets the replay of what happened before it came
    c = await attach(client, "sh1")
    await wait_until(lambda: b"hello-42" in c.data and b"still-2" in c.data, message="replay")
    await b.ws.close()
    await c.ws.close()


async def _clients(client, sid: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return (await (await client.get(f"/api/sessions/{sid}")).json())["clients"] == n


async def test_exit_code_recorded_and_attach_told(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    status, _ = await spawn(client, session_id="ex7", command="sh", args=["-c", "read x; exit 7"],
                            cwd=str(tmp_path))
    assert status == 201
    a = await attach(client, "ex7")
    await a.ws.send_bytes(b"go\n")

    async def exited() -> bool:
        body = await (await client.get("/api/sessions/ex7")).json()
        return body["state"] == "exited" and body["exit_code"] == 7

    await wait_until(exited, message="exit code 7")
    await wait_until(lambda: {"type": "exit", "code": 7} in a.control, message="exit frame")


async def test_delete_kills_process_and_forgets_session(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    status, s = await spawn(client, session_id="k1", command="sleep 300", cwd=str(tmp_path))
    assert status == 201
    pid = s["pid"]
    resp = await client.delete("/api/sessions/k1")
    assert resp.status == 200
    await wait_until(lambda: not psutil.pid_exists(pid) or
                     psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, message="process gone")
    assert (await client.get("/api/sessions/k1")).status == 404


async def test_nested_agent_env_is_stripped(client, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CLAUDECODE", "1")
    monkeypatch.setenv("CODEX_CI", "1")
    status, _ = await spawn(
        client, session_id="envchk", cwd=str(tmp_path), command="sh",
        args=["-c", 'echo "[${CLAUDECODE-unset}][${CODEX_CI-unset}][$TELEPTY_SESSION_ID]"; read x'],
    )
    assert status == 201
    a = await attach(client, "envchk")
    await wait_until(lambda: b"[unset][unset][envchk]" in a.data, message="clean env")
    await a.ws.close()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "missing_field"),
        ({"command": 5}, 400, "invalid_field"),
        ({"command": "sh", "args": "x"}, 400, "invalid_field"),
        ({"command": "sh", "args": [1]}, 400, "invalid_field"),
        ({"command": "sh", "env": {"A": 1}}, 400, "invalid_field"),
        ({"command": "sh", "cwd": "/definitely/not/here"}, 400, "invalid_cwd"),
        ({"command": "/no/such/program-xyz"}, 400, "spawn_failed"),
        ({"command": "sh", "session_id": "bad id"}, 400, "invalid_session_id"),
        ({"command": "sh", "cols": 0}, 400, "invalid_field"),
        ({"command": "sh 'unterminated"}, 400, "invalid_field"),
    ],
)
async def test_bad_spawn_requests(client, body, status, code) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/api/sessions/spawn", json=body)
    assert resp.status == status
    assert (await resp.json())["error"] == code
    assert await (await client.get("/api/sessions")).json() == []


async def test_duplicate_spawn_id_is_409(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert (await spawn(client, session_id="dup", command="sleep 30", cwd=str(tmp_path)))[0] == 201
    status, body = await spawn(client, session_id="dup", command="sleep 30", cwd=str(tmp_path))
    assert status == 409 and body["error"] == "session_exists"
    await client.delete("/api/sessions/dup")


async def test_attach_errors(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/sessions/ghost/attach")
    assert resp.status == 404
    await client.post("/api/sessions/register", json={"session_id": "w1", "command": "claude",
                                                       "pid": os.getpid()})
    resp = await client.get("/api/sessions/w1/attach")
    assert resp.status == 400
    assert (await resp.json())["error"] == "not_attachable"
