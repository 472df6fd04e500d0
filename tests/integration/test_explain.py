"""``GET /api/sessions/{id}/explain``: what the daemon sees on a real screen, and why."""

from __future__ import annotations

from typing import Any

from telepty.config import Config
from tests.helpers import wait_until
from tests.integration.standins import launch_from_shell, register, start_shell, start_standin


async def explain(client: Any, sid: str, **params: Any) -> dict[str, Any]:
    resp = await client.get(f"/api/sessions/{sid}/explain", params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def explain_once_quiet(client: Any, sid: str, **params: Any) -> dict[str, Any]:
    """Explain once the screen has stopped changing: a pane that just drew is still
    "printing" for a quiet window, and explain says busy then, as the engine would."""

    async def quiet() -> dict[str, Any] | None:
        e = await explain(client, sid, **params)
        return e if e["output"]["quiet"] else None

    return await wait_until(quiet, 5, message=f"{sid} to stop printing")  # type: ignore[no-any-return]


async def test_explain_verdicts_on_a_live_screen(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    busy, ask = tmp_path / "busy", tmp_path / "ask"
    sp = start_standin(session, tmp_path, "standin_dialog.py", agent="claude",
                       args=["--busy-file", str(busy), "--dialog-file", str(ask)])
    await sp.ready()
    await register(client, sp, "ex")

    e = await explain_once_quiet(client, "ex", lines=8)
    assert (e["verdict"], e["agent"], e["agent_detected"], e["agent_present"]) == ("idle", "claude", "claude",
                                                                                  True)
    assert e["output"]["quiet"] is True and e["output"]["quiet_for_ms"] >= 200
    assert e["profile"]["name"] == "claude" and e["transport"] == "paste_buffer"
    assert e["pattern"] in e["profile"]["idle_patterns"] and 'Try "refactor' in e["line"]
    assert len(e["lines"]) <= 8 and e["pending"] == [] and e["pane_in_mode"] is False

    sp.pane.send_keys("typed by hand", enter=False)
    await wait_until(lambda: "> typed by hand" in sp.screen(), message="typed text")
    e = await explain(client, "ex")
    assert e["verdict"] == "composer-has-text" and e["composer"]["text"] == "typed by hand"

    busy.touch()
    await wait_until(lambda: "esc to interrupt" in sp.screen(), message="busy line")
    e = await explain(client, "ex")
    assert e["verdict"] == "busy" and e["pattern"] == r"(?i)\besc to interrupt\b"
    busy.unlink()

    ask.touch()
    await wait_until(lambda: "Do you want to proceed?" in sp.screen(), message="dialog")
    e = await explain(client, "ex")
    assert e["verdict"] == "blocked" and "proceed" in e["why"]

    # Looking changes nothing: a pane in copy mode stays in it.
    session.server.cmd("copy-mode", "-t", sp.pane_id)
    e = await explain(client, "ex")
    assert e["pane_in_mode"] is True
    assert session.server.cmd("display-message", "-p", "-t", sp.pane_id, "#{pane_in_mode}").stdout == ["1"]


async def test_explain_agent_exited_and_unknown_screens(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    shell = start_shell(session, tmp_path)
    await wait_until(lambda: shell.screen().rstrip().endswith("$"), message="shell prompt")
    await register(client, shell, "sh", agent="codex")
    e = await explain(client, "sh")
    assert e["verdict"] == "agent-exited" and e["agent_present"] is False and e["agent_detected"] is None

    exit_file = tmp_path / "bye"
    launch_from_shell(shell, "standin_exit.py", ["--exit-file", str(exit_file)])
    await shell.ready()
    e = await explain_once_quiet(client, "sh")
    assert (e["verdict"], e["agent_detected"]) == ("idle", "codex")
    assert e["line"] == "› Ask Codex to do anything"

    exit_file.touch()
    await wait_until(lambda: shell.screen().rstrip().endswith("$"), message="back at the shell")
    e = await explain(client, "sh")
    assert e["verdict"] == "agent-exited"

    # An "other" session running a plain shell: the default profile reads nothing.
    await register(client, shell, "plain", agent="other")
    e = await explain_once_quiet(client, "plain")
    assert (e["verdict"], e["pattern"], e["profile"]["name"]) == ("unknown", None, "default")


async def test_explain_errors(client, config: Config) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/sessions/nobody/explain")
    assert resp.status == 404 and (await resp.json())["error"] == "session_not_found"
    await client.post("/api/sessions/register", json={"session_id": "w", "command": "claude"})
    resp = await client.get("/api/sessions/w/explain")  # a wrapper that is not connected
    assert resp.status == 409 and (await resp.json())["error"] == "session_disconnected"
