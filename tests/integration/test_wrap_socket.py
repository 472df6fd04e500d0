"""The wrapper control socket, driven by a scripted wrapper over a real WebSocket.

(The real ``telepty wrap`` is exercised end to end in test_wrap_cli.py.)
"""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3

import orjson

from telepty.config import Config
from tests.helpers import wait_until


async def hello(client, **fields):  # type: ignore[no-untyped-def]
    ws = await client.ws_connect("/api/wrap")
    await ws.send_json({"type": "hello", "command": "claude", "cwd": "/p/proj", "pid": os.getpid(),
                        **fields})
    return ws, await ws.receive_json(timeout=5)


async def state(client, sid: str) -> dict:  # type: ignore[type-arg, no-untyped-def]
    return await (await client.get(f"/api/sessions/{sid}")).json()


async def test_hello_registers_wrapped_session(client) -> None:  # type: ignore[no-untyped-def]
    ws, welcome = await hello(client, session_id="wr1", tmux_pane="%4", tmux_socket="/tmp/x")
    assert welcome["type"] == "welcome" and welcome["session_id"] == "wr1"
    s = await state(client, "wr1")
    assert (s["type"], s["state"], s["agent"], s["tmux_pane"]) == ("wrapped", "running", "claude", "%4")
    await ws.close()
    await wait_until(lambda: _is(client, "wr1", "disconnected"), message="disconnected")


async def _is(client, sid: str, want: str) -> bool:  # type: ignore[no-untyped-def]
    return (await state(client, sid))["state"] == want


async def test_default_id_from_command_and_cwd(client) -> None:  # type: ignore[no-untyped-def]
    ws, welcome = await hello(client)
    assert welcome["session_id"] == "claude-proj-1"
    await ws.close()


async def test_output_mirror_feeds_screen(client) -> None:  # type: ignore[no-untyped-def]
    ws, _ = await hello(client, session_id="wr2")
    await ws.send_bytes(b"\x1b[1mhello\x1b[0m world\r\nsecond line\r\n")

    async def shown() -> bool:
        body = await (await client.get("/api/sessions/wr2/screen")).json()
        return "hello world\nsecond line" in body["text"]

    await wait_until(shown, message="mirrored output on screen")
    await ws.close()


async def test_second_live_registration_refused_then_replace_detaches_first(client) -> None:  # type: ignore[no-untyped-def]
    ws1, w1 = await hello(client, session_id="dupw")
    assert w1["type"] == "welcome"
    ws2, err = await hello(client, session_id="dupw", pid=1)
    assert err == {"type": "error", "error": "session_exists", "detail": err["detail"]}
    await ws2.receive(timeout=5)  # the close
    assert ws2.closed
    assert (await state(client, "dupw"))["pid"] == os.getpid()

    ws3, w3 = await hello(client, session_id="dupw", pid=1, replace=True)
    assert w3["session_id"] == "dupw-2"
    told = await ws1.receive_json(timeout=5)
    assert told == {"type": "detach", "reason": "replaced"}
    assert (await state(client, "dupw"))["id"] == "dupw-2"  # the alias follows the new owner
    await ws3.close()


async def test_exit_marks_exited_with_code(client) -> None:  # type: ignore[no-untyped-def]
    ws, _ = await hello(client, session_id="wr3")
    await ws.send_json({"type": "exit", "code": 3})
    await ws.close()

    async def exited() -> bool:
        s = await state(client, "wr3")
        return s["state"] == "exited" and s["exit_code"] == 3

    await wait_until(exited, message="exited 3")


async def test_stalled_mirror_is_reported(client, config: Config) -> None:  # type: ignore[no-untyped-def]
    ws, _ = await hello(client, session_id="wr4")
    await ws.send_bytes(b"abc")
    await ws.send_json({"type": "heartbeat", "bytes_out": 3, "bytes_mirrored": 3, "idle_ms": 10})
    for _ in range(2):  # the wrapper claims bytes that never arrived
        await ws.send_json({"type": "heartbeat", "bytes_out": 900, "bytes_mirrored": 900,
                            "idle_ms": 5000})

    def stalled_events() -> list:  # type: ignore[type-arg]
        conn = sqlite3.connect(config.db_path)
        try:
            return conn.execute("SELECT envelope FROM events WHERE kind='session_upstream_stalled'"
                                ).fetchall()
        finally:
            conn.close()

    rows = await wait_until(stalled_events, message="stall event")
    env = orjson.loads(rows[0][0])
    assert env["session_id"] == "wr4" and env["bytes_received"] == 3
    await ws.close()


async def test_daemon_requests_reach_wrapper(client) -> None:  # type: ignore[no-untyped-def]
    from telepty.api.keys import TERMINALS

    ws, _ = await hello(client, session_id="wr5")
    svc = client.server.app
    link = svc[TERMINALS].links["wr5"]

    pasted: list[dict] = []  # type: ignore[type-arg]

    async def fake_wrapper() -> None:
        async for msg in ws:
            req = orjson.loads(msg.data)
            if req["type"] == "paste":
                pasted.append(req)
                await ws.send_json({"type": "result", "id": req["id"], "ok": True, "bracketed": True})

    task = asyncio.ensure_future(fake_wrapper())
    reply = await link.paste("héllo\n".encode())
    assert reply.ok is True and reply.bracketed is True
    # What reached the wrapper: the prompt, and nothing telling it to submit (a scripted
    # hello names no protocol, so it is asked as an older wrapper is: no_enter).
    assert [(base64.b64decode(p["data"]).decode(), p.get("no_enter"), "submit" in p) for p in pasted] == [
        ("héllo\n", True, False)]
    await ws.close()
    task.cancel()


async def test_bad_hello_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    for frame in ('{"type": "nope"}', "not json", '{"type": "hello", "pid": "x"}',
                  '{"type": "hello", "session_id": "bad id"}'):
        ws = await client.ws_connect("/api/wrap")
        await ws.send_str(frame)
        msg = await ws.receive_json(timeout=5)
        assert msg["type"] == "error", frame
        await ws.close()
    assert await (await client.get("/api/sessions")).json() == []


async def test_replacement_keeps_its_alias_when_it_reconnects(client) -> None:  # type: ignore[no-untyped-def]
    ws1, _ = await hello(client, session_id="al")
    ws2, w2 = await hello(client, session_id="al", pid=1, replace=True)
    assert w2["session_id"] == "al-2"
    await ws2.close()
    await wait_until(lambda: _is(client, "al-2", "disconnected"), message="disconnected")
    ws3, w3 = await hello(client, session_id="al-2", pid=1)
    assert w3["session_id"] == "al-2"
    s = await state(client, "al")  # the alias still reaches the replacement
    assert (s["id"], s["alias"], s["state"]) == ("al-2", "al", "running")
    await ws3.close()
    await ws1.close()
