"""The Node.js CLI's ``telepty allow`` wrapper against this daemon: its protocol, and
prompts typed through it by the delivery engine.

The wrapper is rebuilt in tests/integration/node_clients.py from what the old CLI does;
its child is tests/programs/fake_agent.py in a real PTY, whose log says exactly what
was submitted.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import client_final, wait_until
from tests.integration.agents import AgentFiles, agent_argv, agent_files
from tests.integration.node_clients import NODE_HEADERS, NodeAllowWrapper
from tests.integration.standins import PROGRAMS


async def allow(client: Any, tmp_path: Path, name: str, **kw: Any) -> tuple[NodeAllowWrapper, AgentFiles]:
    files = agent_files(tmp_path, name)
    w = await NodeAllowWrapper(client, name, agent_argv(files, echo=True), str(tmp_path), **kw).start()
    await wait_until(lambda: _linked(client, name), 10, message=f"{name} linked and ready")
    return w, files


async def _linked(client: Any, sid: str) -> bool:
    resp = await client.get(f"/api/sessions/{sid}/screen")
    if resp.status != 200:
        return False
    info = await (await client.get(f"/api/sessions/{sid}")).json()
    return info["healthStatus"] == "CONNECTED" and "ready>" in (await resp.json())["text"]


async def inject(client: Any, sid: str, prompt: str) -> dict[str, Any]:
    resp = await client.post(f"/api/sessions/{sid}/inject", json={"prompt": prompt})
    assert resp.status == 202, await resp.text()
    return await client_final(client, (await resp.json())["delivery_id"], timeout=20)


async def test_prompts_reach_the_agent_through_the_old_wrapper(client: Any, tmp_path: Path) -> None:
    w, files = await allow(client, tmp_path, "wr")
    try:
        texts = ["first prompt", "two lines\nsecond line", "third — ünïcode ✓"]
        for text in texts:
            d = await inject(client, "wr", text)
            assert d["status"] == "delivered", d
            assert d["evidence"]["transport"] == "wrapper"
        await wait_until(lambda: files.submissions() == texts, 10, message="all three submitted")
        # the multi-line prompt went in as one bracketed paste (the app enabled it), then one Enter
        injects = [f["data"] for f in w.frames_in if f["type"] == "inject"]
        assert "\x1b[200~two lines\nsecond line\x1b[201~" in injects
        assert injects.count("\r") == len(texts)
        info = await (await client.get("/api/sessions/wr")).json()
        assert (info["type"], info["healthStatus"], info["healthReason"]) == (
            "wrapped", "CONNECTED", "OWNER_CONNECTED")
    finally:
        await w.close()


async def test_an_agent_whose_prompt_the_old_wrapper_misses(client: Any, tmp_path: Path) -> None:
    """That wrapper writes text only once it sees its child's prompt (for `codex` it looks
    for ❯ or > at the end of an output chunk; Codex shows ›), else five seconds later.
    The engine must wait for that before it looks for the paste and presses Enter: a
    Codex-like stand-in (the daemon reads its screen with the codex profile) gets each
    prompt once, whole."""
    out = tmp_path / "codex.jsonl"
    codex = tmp_path / "codex"  # the command the user typed: `telepty allow codex`
    codex.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {PROGRAMS / 'standin_paste_burst.py'} "
                     f"--out {shlex.quote(str(out))} --burst-ms 20\n")
    codex.chmod(0o755)
    codex_prompt = re.compile(r"[❯>]\s*$")
    w = await NodeAllowWrapper(client, "wc", [str(codex)], str(tmp_path), prompt=codex_prompt).start()
    try:
        await wait_until(lambda: _health(client, "wc", "CONNECTED"), 10, message="linked")
        for text in ("held back", "two\nlines"):
            d = await inject(client, "wc", text)
            assert (d["status"], d["confirmed"]) == ("delivered", "screen"), d
        submitted = [json.loads(line)["text"] for line in out.read_text().splitlines() if '"n"' in line]
        assert submitted == ["held back", "two\nlines"]
        # `telepty status`: no pid to find the agent under, so the screen says it: idle
        state = await (await client.get("/api/sessions/wc/state", headers=NODE_HEADERS)).json()
        assert (state["auto"]["state"], state["auto"]["detail"]["trigger"]) == ("idle", "idle"), state
    finally:
        await w.close()


async def test_a_prompt_waits_for_the_wrapper_to_come_back(client: Any, tmp_path: Path) -> None:
    w, files = await allow(client, tmp_path, "wb")
    try:
        await w.drop_socket()
        await wait_until(lambda: _health(client, "wb", "RECONNECTING"), 5, message="wrapper away")
        resp = await client.post("/api/sessions/wb/inject", json={"prompt": "while away"})
        delivery_id = (await resp.json())["delivery_id"]
        await wait_until(lambda: _status_is(client, delivery_id, "retrying"), 5, message="waits, retryable")
        # the old wrapper reconnects: register again (the daemon kept the session), then the socket
        status, _ = await w.register()
        assert status == 201
        await w.connect()
        d = await client_final(client, delivery_id, timeout=20)
        assert d["status"] == "delivered", d
        await wait_until(lambda: files.submissions() == ["while away"], 10, message="delivered after return")
    finally:
        await w.close()


async def _health(client: Any, sid: str, expected: str) -> bool:
    return bool((await (await client.get(f"/api/sessions/{sid}")).json())["healthStatus"] == expected)


async def _status_is(client: Any, delivery_id: str, status: str) -> bool:
    return bool((await (await client.get(f"/api/deliveries/{delivery_id}")).json())["status"] == status)


async def test_a_second_owner_cannot_take_a_connected_session(client: Any, tmp_path: Path) -> None:
    w, _ = await allow(client, tmp_path, "wo")
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await client.ws_connect("/api/sessions/wo?owner=1", headers={"User-Agent": "node"})
        assert exc.value.status == 409
        # and registering the id again is refused while it is live: the old allow exits on that
        status, body = await w.register()
        assert status == 409 and body["error"] == "session_exists"
    finally:
        await w.close()


async def test_a_viewer_of_a_wrapped_session(client: Any, tmp_path: Path) -> None:
    w, files = await allow(client, tmp_path, "wv")
    try:
        ws = await client.ws_connect("/api/sessions/wv", headers=NODE_HEADERS)
        seen: list[str] = []

        async def pump() -> None:
            async for msg in ws:
                seen.append(json.loads(msg.data)["data"])

        task = asyncio.ensure_future(pump())
        await wait_until(lambda: "ready>" in "".join(seen), 5, message="the scrollback first")
        await ws.send_str(json.dumps({"type": "input", "data": "typed by a viewer\r"}))
        await ws.send_str(json.dumps({"type": "resize", "cols": 88, "rows": 22}))
        await wait_until(lambda: files.submissions() == ["typed by a viewer"], 10, message="viewer input")
        await wait_until(lambda: "submitted 1" in "".join(seen), 5, message="live output to the viewer")
        assert {"type": "resize", "cols": 88, "rows": 22} in w.frames_in
        assert (await (await client.get("/api/sessions/wv")).json())["active_clients"] == 1
        await ws.close()
        await task
    finally:
        await w.close()


async def test_the_child_dying_ends_the_session(client: Any, tmp_path: Path) -> None:
    w, _ = await allow(client, tmp_path, "wd")
    try:
        resp = await client.post("/api/sessions/wd/keys", json={"keys": ["C-d"], "wait": True})
        assert resp.status == 200, await resp.text()
        # session_died, then its DELETE on the way out
        await wait_until(lambda: _gone(client, "wd"), 10, message="session gone")
    finally:
        await w.close()


async def _gone(client: Any, sid: str) -> bool:
    return bool((await client.get(f"/api/sessions/{sid}")).status == 404)


async def test_session_died_marks_the_session_exited(client: Any, tmp_path: Path) -> None:
    w, _ = await allow(client, tmp_path, "wx")
    try:
        assert w.ws is not None
        await w.ws.send_str(json.dumps({"type": "session_died", "session_id": "wx", "exitCode": 3,
                                        "signal": None, "willRestart": False}))
        await wait_until(lambda: _health(client, "wx", "STALE"), 5, message="exited")
        info = await (await client.get("/api/sessions/wx")).json()
        assert (info["state"], info["exit_code"]) == ("exited", 3)
    finally:
        await w.close()
