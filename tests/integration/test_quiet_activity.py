"""The quiet guard reads what the terminal did: idle terminals pay no quiet window, busy
ones are served the moment their output stops (not at the next slot of the schedule).

Real tmux panes (output watched through tmux's ``%output``) and a real spawned PTY; the
program's own log says what it received and when, and when it stopped printing.
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

import pytest

from telepty.config import Config
from tests.helpers import client_final, client_finals, wait_until, wait_until_sync
from tests.integration.agents import AgentFiles, agent_argv, agent_files, start_agent_pane
from tests.integration.test_wrap_cli import pane_launcher

QUIET_MS = 600
# One slot, far longer than any wait below: a delivery that waits for it fails the test.
LONG_SLOT = (60.0,)


@pytest.fixture
async def slow_client(aiohttp_client, config: Config):  # type: ignore[no-untyped-def]
    from telepty.daemon import create_app

    return await aiohttp_client(create_app(config.with_(quiet_ms=QUIET_MS, retry_schedule=LONG_SLOT)))


async def register_pane(client: Any, pane_id: str, socket_path: str, sid: str) -> None:
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": sid, "tmux_pane": pane_id, "tmux_socket": socket_path,
        "command": "fake_agent", "agent": "other"})
    assert resp.status == 201, await resp.text()


async def spawn(client: Any, files: AgentFiles, sid: str, *, busy: bool = False) -> None:
    argv = agent_argv(files, busy=busy)
    resp = await client.post("/api/sessions/spawn", json={
        "session_id": sid, "command": argv[0], "args": argv[1:], "cwd": str(files.out.parent)})
    assert resp.status == 201, await resp.text()


async def explain(client: Any, sid: str) -> dict[str, Any]:
    resp = await client.get(f"/api/sessions/{sid}/explain")
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def quiet_now(client: Any, sid: str) -> bool:
    """The daemon's own view: this terminal has printed nothing for a quiet window."""
    return bool((await explain(client, sid))["output"]["quiet"])


async def inject(client: Any, sid: str, prompt: str) -> str:
    resp = await client.post(f"/api/sessions/{sid}/inject", json={"prompt": prompt})
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["delivery_id"])


@pytest.mark.parametrize("kind", ["pane", "pty"])
async def test_prompts_into_an_idle_terminal_go_at_once(slow_client, session, tmp_path: Path,
                                                        kind: str) -> None:
    if kind == "pane":
        ap = start_agent_pane(session, tmp_path)
        files = ap.files
        await wait_until(lambda: "ready>" in ap.screen(), message="agent ready")
        await register_pane(slow_client, ap.pane_id, ap.socket_path, "t1")
    else:
        files = agent_files(tmp_path)
        await spawn(slow_client, files, "t1")
    # An idle terminal: nothing printed for a whole quiet window.
    await wait_until(lambda: quiet_now(slow_client, "t1"), 10, message="the terminal to be idle")

    prompts = [f"prompt {i}: idle, back to back" for i in range(5)]
    ids = [await inject(slow_client, "t1", p) for p in prompts]
    records = await client_finals(slow_client, ids, timeout=20)
    await wait_until(lambda: files.submissions() == prompts, message="five exact submissions")
    for rec in records:
        assert (rec["status"], rec["attempts"]) == ("delivered", 1), rec
        guard = rec["evidence"]["quiet_guard"]
        # The guard knew at once: no waiting, although each prompt's echo was the last
        # thing the terminal printed (that is ours, not the terminal "printing").
        assert guard["quiet"] is True and guard["waited_ms"] == 0, guard
        assert guard["quiet_for_ms"] >= QUIET_MS


@pytest.mark.parametrize("kind", ["pane", "pty"])
async def test_a_busy_terminal_is_served_when_its_output_stops(slow_client, session, tmp_path: Path,
                                                               kind: str) -> None:
    if kind == "pane":
        ap = start_agent_pane(session, tmp_path, busy=True)
        files = ap.files
        await wait_until(lambda: "working" in ap.screen(), message="agent printing")
        await register_pane(slow_client, ap.pane_id, ap.socket_path, "t1")
    else:
        files = agent_files(tmp_path)
        await spawn(slow_client, files, "t1", busy=True)
    did = await inject(slow_client, "t1", "after the work")

    async def waiting() -> dict[str, Any] | None:
        rec = (await (await slow_client.get(f"/api/deliveries/{did}")).json())
        return rec if rec["status"] == "retrying" else None

    rec = await wait_until(waiting, 10, message="the delivery to wait for the busy terminal")
    assert rec["reason"] == "busy" and rec["evidence"]["quiet_guard"]["quiet"] is False
    assert files.submissions() == []

    files.stop.touch()  # the work ends: the ticker stops
    final = await client_final(slow_client, did, timeout=15)  # the slot is 60 s
    assert (final["status"], final["attempts"]) == ("delivered", 1), final
    await wait_until(lambda: files.submissions() == ["after the work"], message="the submission")
    [ended] = [r for r in files.records() if r.get("event") == "busy_ended"]
    [sub] = [r for r in files.records() if "text" in r]
    # Nothing was pasted while it printed: the quiet window passed after its last output.
    assert sub["t"] >= ended["t"] + QUIET_MS / 1000.0


async def test_explain_and_list_see_a_pane_that_keeps_printing(slow_client, session) -> None:
    # A pane whose screen looks idle (a shell line) but prints every 0.2 s.
    script = "while :; do printf '.'; sleep 0.2; done"
    window = session.new_window(window_name="ticker", window_shell=f"sh -c {shlex.quote(script)}")
    pane = window.active_pane
    sock = session.server.cmd("display-message", "-p", "#{socket_path}").stdout[0]
    await register_pane(slow_client, pane.pane_id, sock, "tick")

    async def printing() -> dict[str, Any] | None:
        e = await explain(slow_client, "tick")
        return e if e["output"]["quiet"] is False else None

    e = await wait_until(printing, 10, message="explain to see the output")
    assert e["verdict"] == "busy" and "printing" in e["why"]
    assert e["output"]["idle_ms"] < QUIET_MS

    async def listed_idle() -> float:
        resp = await slow_client.get("/api/sessions/tick")
        return float((await resp.json())["idle_seconds"])

    # list's idle clock follows the pane's output (the liveness pass starts the watch).
    await wait_until(lambda: _below(listed_idle(), 1.5), 10, message="list to see the output")


async def _below(value: Any, limit: float) -> bool:
    return float(await value) < limit


async def test_without_control_mode_the_guard_watches_the_screen(session, tmp_path: Path) -> None:
    """No ``%output`` (control mode off): the old two-captures guard still holds."""
    from telepty.delivery.transports.tmux import PasteBufferTransport
    from telepty.tmux import TmuxServer

    ap = start_agent_pane(session, tmp_path)
    await wait_until(lambda: "ready>" in ap.screen(), message="agent ready")
    async with TmuxServer(socket_path=ap.socket_path, use_control=False) as srv:
        t = PasteBufferTransport(srv, ap.pane_id)
        await t.check_ready()
        assert t.activity is None
        started = asyncio.get_running_loop().time()
        assert await t.is_quiet(300) is True
        assert asyncio.get_running_loop().time() - started >= 0.3  # it had to look twice
        assert t.guard == {"quiet_ms": 300, "quiet": True, "by": "screen"}


def test_a_wrapped_terminal_idle_then_busy(daemon_factory, session, tmp_path: Path, home: Path) -> None:  # type: ignore[no-untyped-def]
    """``telepty wrap`` outside tmux: the guard reads the output the wrapper mirrors."""
    d = daemon_factory(TELEPTY_QUIET_MS=str(QUIET_MS), TELEPTY_RETRY_SCHEDULE="60").start()
    launch = pane_launcher(session, tmp_path, home)
    files = agent_files(tmp_path)
    launch("wrap", "--id", "w1", "--", *agent_argv(files, busy=True), in_tmux=False)

    def record(did: str) -> dict[str, Any]:
        return d.delivery(did)

    def inject_sync(prompt: str) -> str:
        status, body = d.request("POST", "/api/sessions/w1/inject", {"prompt": prompt})
        assert status == 202, body
        return str(body["delivery_id"])

    wait_until_sync(lambda: d.request("GET", "/api/sessions/w1")[0] == 200, 15, message="wrapper registered")
    busy = inject_sync("after the work")
    wait_until_sync(lambda: record(busy)["status"] == "retrying", 10, message="waiting on the busy agent")
    assert record(busy)["reason"] == "busy"
    files.stop.touch()
    final = d.final(busy, timeout=15)  # the slot is 60 s
    assert (final["status"], final["attempts"]) == ("delivered", 1), final

    def quiet() -> bool:
        status, body = d.request("GET", "/api/sessions/w1/explain")
        return status == 200 and body["output"]["quiet"] is True

    wait_until_sync(quiet, 10, message="the wrapped agent to be idle")
    prompts = [f"wrapped {i}" for i in range(4)]
    records = d.finals([inject_sync(p) for p in prompts], timeout=20)
    for rec in records:
        assert (rec["status"], rec["attempts"]) == ("delivered", 1), rec
        assert rec["evidence"]["quiet_guard"]["waited_ms"] == 0, rec["evidence"]
    wait_until_sync(lambda: files.submissions() == ["after the work", *prompts], message="all submitted")
