"""``telepty doctor`` against a real daemon, with the daemon down, and with broken setups."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import DaemonProcess, daemon_env, free_port, run_cli, wait_until_sync
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


def test_doctor_states_each_hint_once(tmp_path: Path) -> None:
    home = tmp_path / "fresh"  # a new user's home: no daemon has ever run here
    home.mkdir()
    res = run_cli("doctor", env=daemon_env(home))
    assert res.returncode == 1
    assert res.stdout.splitlines()[:2] == [
        f"✗ daemon: no telepty daemon is running for TELEPTY_HOME={home}",
        "    fix: start it with `telepty daemon` (`telepty service install` starts it at login), or point "
        "TELEPTY_HOME at the home of the daemon you mean",
    ]
    assert f"✗ token: token file {home / 'token'} does not exist yet (the daemon creates it on its first " \
           "start)\n" in res.stdout
    assert res.stdout.count("`telepty daemon`") == 1  # not again under token, not inside the detail
    fixes = [line for line in res.stdout.splitlines() if line.startswith("    fix: ")]
    assert len(fixes) == len(set(fixes))


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
    (daemon.home / "peers.json").write_text(json.dumps({"box": {"url": _dead_url()}}))
    checks = _checks(daemon.cli("doctor", "--json").stdout)
    assert checks["token"]["ok"] and checks["peers"]["ok"]


def _dead_url() -> str:
    """A loopback address nothing listens on: refused at once, no timeout to wait for."""
    return f"http://127.0.0.1:{free_port()}"


def test_doctor_checks_each_peer_reachable_or_not(daemon: DaemonProcess, machines) -> None:  # type: ignore[no-untyped-def]
    desk = machines("desk").start()
    (daemon.home / "peers.json").write_text(json.dumps({
        "desk": {"url": desk.url, "token": desk.token}, "gone": {"url": _dead_url()}}))
    res = daemon.cli("doctor", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    checks = _checks(res.stdout)
    version = __import__("telepty").__version__
    assert checks["peers"]["ok"]
    ok = checks["peer desk"]
    assert ok["ok"] and f"telepty {version}" in ok["detail"] and "machine desk" in ok["detail"]
    assert ok["detail"].startswith(f"{desk.url} reachable") and " ms)" in ok["detail"]
    bad = checks["peer gone"]
    assert not bad["ok"] and "unreachable" in bad["detail"] and "peer_unreachable" in bad["detail"]
    assert "Tailscale" in bad["hint"] and "telepty status" in bad["hint"]
    # Only the dead peer failed: everything else is green.
    assert [name for name, c in checks.items() if not c["ok"]] == ["peer gone"]

    human = daemon.cli("doctor")
    assert human.returncode == 1
    lines = human.stdout.splitlines()
    assert any(line.startswith(f"✓ peer desk: {desk.url} reachable (telepty {version}") for line in lines)
    i = next(i for i, line in enumerate(lines) if line.startswith("✗ peer gone: "))
    assert lines[i + 1].startswith("    fix: ") and "Tailscale" in lines[i + 1]
    assert lines[-1].endswith("1 failed")

    # The dead peer gone from peers.json: all green again.
    (daemon.home / "peers.json").write_text(json.dumps({"desk": {"url": desk.url}}))
    res = daemon.cli("doctor")
    assert res.returncode == 0, res.stdout
    assert "✓ peer desk: " in res.stdout


def test_doctor_flags_a_peer_that_refuses_our_token(daemon: DaemonProcess, machines) -> None:  # type: ignore[no-untyped-def]
    strict = machines("strict", TELEPTY_REQUIRE_TOKEN="1").start()
    (daemon.home / "peers.json").write_text(json.dumps({"strict": {"url": strict.url, "token": "wrong"}}))
    res = daemon.cli("doctor", "--json")
    assert res.returncode == 1
    check = _checks(res.stdout)["peer strict"]
    assert not check["ok"]
    assert "answers (telepty " in check["detail"] and "peer_unauthorized" in check["detail"]
    assert "token" in check["hint"] and str(daemon.home / "peers.json") in check["hint"]
    right = {"strict": {"url": strict.url, "token": strict.token}}
    (daemon.home / "peers.json").write_text(json.dumps(right))
    assert _checks(daemon.cli("doctor", "--json").stdout)["peer strict"]["ok"]


def test_doctor_probes_peers_itself_when_the_daemon_is_down(home: Path, machines) -> None:  # type: ignore[no-untyped-def]
    desk = machines("desk").start()
    (home / "peers.json").write_text(json.dumps({
        "desk": {"url": desk.url, "token": desk.token}, "gone": {"url": _dead_url()},
        "broken": {"token": "no url"}}))
    env = daemon_env(home, TELEPTY_URL=_dead_url())
    checks = _checks(run_cli("doctor", "--json", env=env).stdout)
    assert not checks["daemon"]["ok"]
    assert not checks["peers"]["ok"] and "broken" in checks["peers"]["detail"]
    assert checks["peer desk"]["ok"] and "machine desk" in checks["peer desk"]["detail"]
    assert not checks["peer gone"]["ok"] and "unreachable" in checks["peer gone"]["detail"]
    assert "peer broken" not in checks
