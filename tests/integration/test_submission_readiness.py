"""Readiness and confirmation against real panes and PTYs: copy mode, busy screens,
unreadable screens, text left in the composer, idempotent repeats, the PTY path."""

from __future__ import annotations

import asyncio
import shlex
import sys
from typing import Any

from telepty.config import Config
from tests.helpers import client_final, wait_until
from tests.integration.agents import FAKE_AGENT, agent_files
from tests.integration.standins import (
    PROGRAMS,
    delivery,
    inject,
    keys,
    register,
    start_standin,
    write_profiles,
)

PROFILES = "[codex]\nsettle_ms = 120\nconfirm_ms = 400\n[claude]\nsettle_ms = 150\nconfirm_ms = 400\n"


async def app_client(aiohttp_client: Any, config: Config, **changes: Any) -> Any:
    from telepty.daemon import create_app

    write_profiles(config.home, PROFILES)
    cfg = config.with_(**{"settle_ms": None, "quiet_ms": 30, "retry_schedule": (0.05,) * 20,
                          "retry_jitter": 0.0, **changes})
    return await aiohttp_client(create_app(cfg))


async def test_copy_mode_is_left_with_tmux_and_the_prompt_submitted(aiohttp_client, config: Config,
                                                                    session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sp = start_standin(session, tmp_path, "standin_paste_burst.py", agent="codex")
    await sp.ready()
    client = await app_client(aiohttp_client, config)
    await register(client, sp, "cm")
    session.server.cmd("copy-mode", "-t", sp.pane_id)
    in_mode = session.server.cmd("display-message", "-p", "-t", sp.pane_id, "#{pane_in_mode}").stdout
    assert in_mode == ["1"]
    status, body = await inject(client, "cm", prompt="while the pane was in copy mode", wait=True)
    assert status == 200 and body["status"] == "delivered", body
    assert body["evidence"]["left_copy_mode"] is True and body["confirmed"] == "screen"
    assert sp.submissions() == ["while the pane was in copy mode"]
    assert session.server.cmd("display-message", "-p", "-t", sp.pane_id, "#{pane_in_mode}").stdout == ["0"]


async def test_busy_pattern_waits_with_the_pattern_recorded(aiohttp_client, config: Config, session,
                                                            tmp_path) -> None:  # type: ignore[no-untyped-def]
    busy = tmp_path / "busy"
    busy.touch()
    sp = start_standin(session, tmp_path, "standin_paste_burst.py", agent="codex",
                       args=["--busy-file", str(busy)])
    await wait_until(lambda: "esc to interrupt" in sp.screen(), message="busy screen")
    # audit_content: the record keeps the screen line the busy pattern matched.
    client = await app_client(aiohttp_client, config, retry_schedule=(0.1,) * 100, audit_content=True)
    await register(client, sp, "busy")
    _, body = await inject(client, "busy", prompt="when you are done")
    did = body["delivery_id"]

    async def waiting() -> dict[str, Any] | None:
        d = await delivery(client, did)
        return d if d["status"] == "retrying" and d["attempts"] >= 2 else None

    d = await wait_until(waiting, message="retrying on the busy pattern")
    # The static busy line passes the screen-diff guard; the busy pattern is what holds it.
    assert d["reason"] == "busy" and d["evidence"]["pattern"] == r"(?i)\besc to interrupt\b"
    assert "esc to interrupt" in d["evidence"]["screen"]["line"]
    assert sp.log()[-1]["event"] == "started"  # nothing reached it
    busy.unlink()
    d = await client_final(client, did)
    assert d["status"] == "delivered" and sp.submissions() == ["when you are done"]


async def test_an_unreadable_screen_is_unknown_not_busy_and_gets_nothing(aiohttp_client, config: Config,
                                                                        session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A codex session whose screen matches none of the codex patterns (here: the plain
    fake agent, run as "codex"): nothing is pasted, the reason says why, and it ends."""
    files = agent_files(tmp_path)
    argv = [sys.executable, FAKE_AGENT, "--out", str(files.out), "--raw-out", str(files.raw)]
    window = session.new_window(window_name="odd",
                                window_shell=f"bash -c {shlex.quote('exec -a codex ' + shlex.join(argv))}")
    pane = window.active_pane
    await wait_until(lambda: "ready>" in "\n".join(pane.capture_pane()), message="fake agent up")
    client = await app_client(aiohttp_client, config, retry_schedule=(0.05, 0.05))
    sock = session.server.cmd("display-message", "-p", "#{socket_path}").stdout[0]
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": "odd", "tmux_pane": pane.pane_id, "tmux_socket": sock,
        "agent": "codex"})
    assert resp.status == 201
    status, body = await inject(client, "odd", prompt="hello?", wait=True, timeout=10)
    assert status == 422 and body["reason"] == "retry_exhausted", body
    assert "screen_unknown" in body["detail"]
    assert files.raw_bytes() == b""
    resp = await client.get("/api/sessions/odd/explain")
    e = await resp.json()
    assert e["verdict"] == "unknown" and e["pattern"] is None and e["agent_detected"] == "codex"


async def test_text_left_in_the_composer_blocks_until_cleared_with_keys(aiohttp_client, config: Config,
                                                                       session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sp = start_standin(session, tmp_path, "standin_paste_burst.py", agent="codex")
    await sp.ready()
    client = await app_client(aiohttp_client, config, retry_schedule=(30.0, 30.0))
    await register(client, sp, "typed")
    sp.pane.send_keys("half typed by a person", enter=False)
    await wait_until(lambda: "› half typed" in sp.screen(), message="someone's text in the composer")
    _, body = await inject(client, "typed", prompt="the real prompt")
    did = body["delivery_id"]
    await wait_until(lambda: _reason_is(client, did, "composer_has_text"), message="waiting on the text")
    d = await delivery(client, did)
    assert "half typed by a person" in d["detail"]
    # C-u clears the line; keys go ahead of the waiting prompt, which then goes at once
    # (not 30 s later).
    status, k = await keys(client, "typed", "C-u", wait=True)
    assert status == 200 and k["status"] == "delivered", k
    d = await client_final(client, did, timeout=10)
    assert d["status"] == "delivered" and sp.submissions() == ["the real prompt"]


async def _reason_is(client: Any, did: str, reason: str) -> bool:
    d = await delivery(client, did)
    return d["status"] == "retrying" and d["reason"] == reason


async def test_idempotent_repeat_is_one_delivery_and_one_submission(aiohttp_client, config: Config,
                                                                    session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sp = start_standin(session, tmp_path, "standin_render_settle.py", agent="claude")
    await sp.ready()
    client = await app_client(aiohttp_client, config)
    await register(client, sp, "idem")
    headers = {"Idempotency-Key": "turn-42"}
    first = await asyncio.gather(*(inject(client, "idem", headers=headers, prompt="exactly once")
                                   for _ in range(5)))
    ids = {body["delivery_id"] for _, body in first}
    assert len(ids) == 1
    [did] = ids
    assert (await client_final(client, did))["status"] == "delivered"
    status, again = await inject(client, "idem", headers=headers, prompt="exactly once", wait=True)
    assert status == 200 and again["delivery_id"] == did and again["status"] == "delivered"
    await asyncio.sleep(0.3)  # a second paste, had there been one, would have landed by now
    assert sp.submissions() == ["exactly once"]
    listed = await (await client.get("/api/deliveries", params={"session": "idem"})).json()
    assert len(listed) == 1


async def test_spawned_pty_standins_are_confirmed_from_the_pty_output(aiohttp_client, config: Config,
                                                                      tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No tmux here: the screen is the PTY's output through telepty's terminal emulator."""
    client = await app_client(aiohttp_client, config)
    out = tmp_path / "pty.jsonl"
    cmd = (f"exec -a codex {shlex.quote(sys.executable)} {PROGRAMS / 'standin_paste_burst.py'} "
           f"--out {out} --burst-ms 80")
    resp = await client.post("/api/sessions/spawn", json={
        "session_id": "pty1", "command": "bash", "args": ["-c", cmd], "cwd": str(tmp_path),
        "agent": "codex", "cols": 100, "rows": 30})
    assert resp.status == 201, await resp.text()

    async def ready() -> bool:
        r = await client.get("/api/sessions/pty1/explain")
        return r.status == 200 and (await r.json())["verdict"] == "idle"

    await wait_until(ready, 10, message="spawned stand-in idle")
    texts = [f"pty prompt {i}: naïve 日本語 {'x' * (i * 7)}" for i in range(30)]
    ids = [(await inject(client, "pty1", prompt=t))[1]["delivery_id"] for t in texts]
    records = [await client_final(client, did) for did in ids]
    for r in records:
        assert (r["status"], r["confirmed"]) == ("delivered", "screen"), r
        assert r["evidence"]["transport"] == "pty" and r["evidence"]["paste_seen"] == "text"
    import json

    submitted = [json.loads(line)["text"] for line in out.read_text().splitlines() if '"n"' in line]
    assert submitted == texts
