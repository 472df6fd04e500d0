"""``telepty doctor`` against a real daemon, with the daemon down, and with broken setups."""

from __future__ import annotations

import json

from tests.helpers import DaemonProcess, daemon_env, run_cli, wait_until_sync
from tests.integration.agents import start_agent_pane


def _checks(out: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["name"]: c for c in json.loads(out)["checks"]}


def test_doctor_all_green_with_a_live_pane_session(daemon: DaemonProcess, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path)
    wait_until_sync(lambda: "ready>" in ap.screen(), message="agent ready")
    status, _ = daemon.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": "doc1", "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent"}, headers={"x-telepty-token": daemon.token})
    assert status == 201
    res = daemon.cli("doctor", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    checks = _checks(res.stdout)
    assert all(c["ok"] for c in checks.values())
    assert __import__("telepty").__version__ in checks["daemon"]["detail"]
    assert checks["tmux"]["detail"].startswith("tmux ")
    assert "1 live session" in checks["sessions"]["detail"]
    assert "session doc1" in checks
    human = daemon.cli("doctor")
    assert human.returncode == 0
    lines = human.stdout.splitlines()
    assert lines[0].startswith("✓ daemon: telepty ")
    assert all(line.startswith(("✓", "    ")) for line in lines[:-1])
    assert lines[-1].endswith("0 failed")


def test_doctor_with_the_daemon_down_fails_with_hints(home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = daemon_env(home, TELEPTY_URL="http://127.0.0.1:9")  # nothing listens on the discard port
    res = run_cli("doctor", env=env)
    assert res.returncode == 1
    assert res.stdout.startswith("✗ daemon: ")
    assert "fix: start it with `telepty daemon`" in res.stdout
    checks = _checks(run_cli("doctor", "--json", env=env).stdout)
    assert not checks["daemon"]["ok"]
    assert checks["home"]["ok"]  # the home exists and is writable
    assert not checks["token"]["ok"] and "does not exist" in checks["token"]["detail"]
    assert "sessions" not in checks


def test_doctor_flags_token_mode_peers_file_and_missing_tmux(daemon: DaemonProcess) -> None:
    (daemon.home / "token").chmod(0o644)
    (daemon.home / "peers.json").write_text("{not json")
    env = dict(daemon.env, TELEPTY_TMUX_BIN="no-such-tmux-binary")
    res = daemon.cli("doctor", "--json", env=env)
    assert res.returncode == 1
    checks = _checks(res.stdout)
    assert checks["daemon"]["ok"]
    assert not checks["token"]["ok"] and checks["token"]["hint"] == f"chmod 600 {daemon.home / 'token'}"
    assert not checks["peers"]["ok"] and "peers.json" in checks["peers"]["detail"]
    assert not checks["tmux"]["ok"] and "TELEPTY_TMUX_BIN" in checks["tmux"]["hint"]
    (daemon.home / "token").chmod(0o600)
    (daemon.home / "peers.json").write_text('{"box": {"url": "http://10.0.0.2:3848"}}')
    checks = _checks(daemon.cli("doctor", "--json").stdout)
    assert checks["token"]["ok"] and checks["peers"]["ok"]
