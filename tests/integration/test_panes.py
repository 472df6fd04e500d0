"""tmux pane sessions: discovery, registration, and noticing a pane's death."""

from __future__ import annotations

import json

from tests.helpers import DaemonProcess, daemon_env, run_cli, wait_until_sync


def _socket(session) -> str:  # type: ignore[no-untyped-def]
    return session.server.cmd("display-message", "-p", "#{socket_path}").stdout[0]


def test_panes_lists_agent_panes_and_registration(daemon: DaemonProcess, session) -> None:  # type: ignore[no-untyped-def]
    sock = _socket(session)
    agent_pane = session.new_window(window_name="cl", window_shell="exec -a claude sleep 300").active_pane
    plain_pane = session.active_window.active_pane

    def listed() -> list[dict] | None:  # type: ignore[type-arg]
        r = daemon.cli("panes", "--socket", sock, "--json")
        rows = json.loads(r.stdout) if r.returncode == 0 else []
        return rows if any(x["pane"] == agent_pane.pane_id for x in rows) else None

    rows = wait_until_sync(listed, message="agent pane discovered")
    assert [(r["pane"], r["agent"]) for r in rows] == [(agent_pane.pane_id, "claude")]
    every = json.loads(daemon.cli("panes", "--socket", sock, "--all", "--json").stdout)
    assert {r["pane"] for r in every} >= {agent_pane.pane_id, plain_pane.pane_id}

    r = daemon.cli("register-pane", agent_pane.pane_id, "--id", "cl1", "--socket", sock)
    assert r.returncode == 0, r.stderr
    status, s = daemon.request("GET", "/api/sessions/cl1")
    assert status == 200
    assert (s["type"], s["agent"], s["tmux_pane"], s["tmux_socket"], s["state"]) == (
        "pane", "claude", agent_pane.pane_id, sock, "running")
    table = daemon.cli("panes", "--socket", sock).stdout
    assert "cl1" in table and agent_pane.pane_id in table

    # the daemon notices when the pane goes away
    agent_pane.kill()

    def exited() -> bool:
        body = daemon.request("GET", "/api/sessions/cl1")[1]
        return body["state"] == "exited" and body["meta"].get("exit_reason") == "pane_dead"

    wait_until_sync(exited, 10, message="pane session exited")


def test_panes_finds_the_agent_below_the_shell(session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No daemon needed: the agent is found in each pane's process tree, nested or not."""
    sock = _socket(session)
    claude = session.new_window(window_name="c", window_shell="exec -a claude sleep 600").active_pane
    nested = session.new_window(window_name="n", window_shell="(exec -a codex sleep 600) & wait").active_pane
    plain = session.new_window(window_name="p", window_shell="exec sleep 600").active_pane
    env = daemon_env(tmp_path / "home")

    def agents() -> dict[str, str | None] | None:
        r = run_cli("panes", "--socket", sock, "--all", "--json", env=env)
        found = {x["pane"]: x["agent"] for x in json.loads(r.stdout)} if r.returncode == 0 else {}
        return found if found.get(nested.pane_id) == "codex" and found.get(claude.pane_id) else None

    found = wait_until_sync(agents, message="both agents found")
    assert (found[claude.pane_id], found[nested.pane_id], found[plain.pane_id]) == ("claude", "codex", None)


def test_register_pane_errors(daemon: DaemonProcess, session) -> None:  # type: ignore[no-untyped-def]
    sock = _socket(session)
    r = daemon.cli("register-pane", "%999", "--id", "x1", "--socket", sock)
    assert r.returncode == 1 and "pane_dead" in r.stderr
    r = daemon.cli("register-pane", "3", "--id", "x1", "--socket", sock)
    assert r.returncode == 2 and "invalid_field" in r.stderr
    r = daemon.cli("register-pane", "%1", "--id", "bad id", "--socket", sock)
    assert r.returncode == 2 and "invalid_session_id" in r.stderr
    assert daemon.request("GET", "/api/sessions")[1] == []


def test_pane_session_survives_restart_and_dead_pane_is_exited(daemon_factory, session) -> None:  # type: ignore[no-untyped-def]
    sock = _socket(session)
    d = daemon_factory().start()
    keep = session.new_window(window_name="keep", window_shell="sleep 300").active_pane
    lose = session.new_window(window_name="lose", window_shell="sleep 300").active_pane
    for sid, pane in (("keep", keep), ("lose", lose)):
        assert d.request("POST", "/api/sessions/register", {
            "type": "pane", "session_id": sid, "tmux_pane": pane.pane_id, "tmux_socket": sock,
            "command": "sleep"})[0] == 201
    d.stop()
    lose.kill()
    d2 = DaemonProcess(home=d.home, env=d.env).start()
    sessions = {s["id"]: s for s in d2.request("GET", "/api/sessions")[1]}
    assert sessions["keep"]["state"] == "running"
    assert sessions["lose"]["state"] == "exited"
    assert sessions["lose"]["meta"]["exit_reason"] == "pane_dead"
    d2.stop()
