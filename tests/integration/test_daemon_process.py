"""The daemon as a real process: singleton, signals, token file, restart persistence, CLI."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from tests.helpers import DaemonProcess, daemon_env, run_cli, wait_until_sync


def test_meta_reports_the_real_process(daemon: DaemonProcess) -> None:
    status, meta = daemon.request("GET", "/api/meta")
    assert status == 200
    assert meta["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    assert meta["machine_id"] == "test-machine"
    assert meta["host"] == "127.0.0.1"
    assert daemon.url.endswith(f":{meta['port']}")
    assert meta["version"]
    assert "sessions" in meta["capabilities"]


def test_token_file_is_0600(daemon: DaemonProcess) -> None:
    mode = stat.S_IMODE(os.stat(daemon.home / "token").st_mode)
    assert mode == 0o600
    assert len(daemon.token) >= 32


def test_second_daemon_on_same_home_exits_naming_pid(daemon: DaemonProcess) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "telepty", "daemon", "--port", "0"],
        env=daemon.env, capture_output=True, text=True, timeout=20,
    )
    assert proc.returncode != 0
    assert f"pid {daemon.proc.pid}" in proc.stderr  # type: ignore[union-attr]
    assert "already running" in proc.stderr
    # and the first one is unharmed
    assert daemon.request("GET", "/api/health")[0] == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_on_signal(daemon: DaemonProcess, sig: int) -> None:
    rc = daemon.stop(sig)
    assert rc == 0
    assert "daemon stopped" in daemon.log_path.read_text()
    assert not (daemon.home / "daemon.json").exists()
    # the lock is free again: a new daemon starts on the same home
    again = DaemonProcess(home=daemon.home, env=daemon.env).start()
    assert again.request("GET", "/api/health")[0] == 200
    again.stop()


def test_sessions_survive_restart_with_states_redecided(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory().start()
    sleeper = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        for body in (
            {"session_id": "alive-w", "command": "claude", "cwd": "/p/alpha", "pid": sleeper.pid},
            {"session_id": "dead-w", "command": "codex", "cwd": "/p/beta", "pid": dead.pid},
            {"session_id": "nopid-w", "command": "aider", "cwd": "/p/gamma"},
        ):
            assert d.request("POST", "/api/sessions/register", body)[0] == 201
        assert d.stop() == 0

        d2 = DaemonProcess(home=d.home, env=d.env).start()
        status, sessions = d2.request("GET", "/api/sessions")
        assert status == 200
        by_id = {s["id"]: s for s in sessions}
        assert set(by_id) == {"alive-w", "dead-w", "nopid-w"}
        assert by_id["alive-w"]["state"] == "disconnected"
        assert by_id["dead-w"]["state"] == "exited"
        assert by_id["nopid-w"]["state"] == "disconnected"
        assert by_id["alive-w"]["agent"] == "claude"
        assert by_id["alive-w"]["cwd"] == "/p/alpha"
        assert by_id["alive-w"]["locator"]["project_id"] == "alpha"
        # a disconnected wrapped session can be taken over by its wrapper coming back
        status, again = d2.request("POST", "/api/sessions/register",
                                   {"session_id": "alive-w", "command": "claude",
                                    "pid": sleeper.pid})
        assert status == 201 and again["state"] == "running"
        d2.stop()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_kill_9_keeps_sessions_and_frees_lock(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory().start()
    assert d.request("POST", "/api/sessions/register",
                     {"session_id": "keep-me", "command": "claude", "pid": os.getpid()})[0] == 201
    d.kill9()
    d2 = DaemonProcess(home=d.home, env=d.env).start()
    status, s = d2.request("GET", "/api/sessions/keep-me")
    assert status == 200 and s["state"] == "disconnected"
    d2.stop()


def test_origin_and_host_refused_against_running_daemon(daemon: DaemonProcess) -> None:
    status, body = daemon.request("GET", "/api/sessions",
                                  headers={"Origin": "https://evil.example.com"})
    assert status == 403 and body["error"] == "origin_forbidden"
    status, body = daemon.request("GET", "/api/sessions",
                                  headers={"Host": "evil.example.com:3848"})
    assert status == 403 and body["error"] == "host_forbidden"
    status, body = daemon.request("POST", "/api/sessions/register",
                                  {"session_id": "x", "command": "claude"},
                                  headers={"Origin": "https://evil.example.com"})
    assert status == 403
    assert daemon.request("GET", "/api/sessions")[1] == []
    assert daemon.request("GET", "/api/health", headers={"Origin": "https://evil.example.com"})[0] == 200


def test_strict_mode_requires_token_from_loopback_and_cli_sends_it(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory(TELEPTY_REQUIRE_TOKEN="1").start()
    status, body = d.request("GET", "/api/sessions")
    assert status == 401 and body["error"] == "token_required"
    assert d.request("GET", "/api/sessions", headers={"x-telepty-token": d.token})[0] == 200
    assert d.request("GET", "/api/sessions", headers={"x-telepty-token": "wrong"})[0] == 401
    r = d.cli("list", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_cli_status_list_meta_kill(daemon: DaemonProcess) -> None:
    r = daemon.cli("status")
    assert r.returncode == 0, r.stderr
    assert "running at" in r.stdout and str(daemon.proc.pid) in r.stdout  # type: ignore[union-attr]
    daemon.request("POST", "/api/sessions/register",
                   {"session_id": "cli-1", "command": "claude", "cwd": "/p/proj", "pid": os.getpid()})
    r = daemon.cli("list")
    assert r.returncode == 0
    assert "cli-1" in r.stdout and "claude" in r.stdout and "running" in r.stdout
    r = daemon.cli("list", "--json")
    assert [s["id"] for s in json.loads(r.stdout)] == ["cli-1"]
    r = daemon.cli("meta", "--json")
    assert json.loads(r.stdout)["machine_id"] == "test-machine"
    r = daemon.cli("kill", "nope")
    assert r.returncode != 0
    assert "session_not_found" in r.stderr
    r = daemon.cli("kill", "cli-1")
    assert r.returncode == 0, r.stderr
    assert json.loads(daemon.cli("list", "--json").stdout) == []


def test_cli_without_daemon_fails_with_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = daemon_env(tmp_path, TELEPTY_URL="http://127.0.0.1:9")
    for args in (("status",), ("list",), ("meta",), ("kill", "x")):
        r = run_cli(*args, env=env)
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "not running" in lines[0], r.stderr


def test_cli_screen_shows_spawned_output(daemon: DaemonProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    status, _ = daemon.request("POST", "/api/sessions/spawn", {
        "session_id": "scr", "command": "sh", "args": ["-c", "echo screen-$((2*21)); read x"],
        "cwd": str(tmp_path)})
    assert status == 201

    def shown() -> bool:
        r = daemon.cli("screen", "scr", "--lines", "5")
        return r.returncode == 0 and "screen-42" in r.stdout

    wait_until_sync(shown, message="screen output")
    r = daemon.cli("screen", "nope")
    assert r.returncode == 1 and "session_not_found" in r.stderr


def test_sigterm_with_open_websockets_exits_promptly(daemon: DaemonProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    status, _ = daemon.request("POST", "/api/sessions/spawn", {
        "session_id": "held", "command": "sh", "args": ["-c", "read x"], "cwd": str(tmp_path)})
    assert status == 201
    # a raw WebSocket handshake held open, as an attach client would
    host, port = daemon.url.rsplit("/", 1)[-1].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"GET /api/sessions/held/attach HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert b"101" in sock.recv(4096).split(b"\r\n")[0]
    try:
        rc = daemon.stop(timeout=5)  # killed (rc -9) if it hangs past 5 s
        assert rc == 0
    finally:
        sock.close()


def test_request_body_cap_is_configurable(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory(TELEPTY_MAX_BODY_BYTES="2000").start()
    small = {"session_id": "cap1", "command": "claude", "cwd": "/p/" + "x" * 500}
    assert d.request("POST", "/api/sessions/register", small)[0] == 201
    big = {"session_id": "cap2", "command": "claude", "cwd": "/p/" + "x" * 3000}
    status, body = d.request("POST", "/api/sessions/register", big)
    assert status == 413 and body["error"] == "too_large"
    assert [s["id"] for s in d.request("GET", "/api/sessions")[1]] == ["cap1"]
