"""What a person sees from the CLI against a real daemon: errors in CLI words (and as
JSON with ``--json``), one set of columns for ``list``, a ``bus tail`` that says what it
does, screens rendered like a terminal, and delivery records that keep screen text
only when the operator keeps content (``TELEPTY_AUDIT_CONTENT``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DaemonProcess, daemon_env, run_cli, wait_until_sync
from tests.integration.test_bus_daemon import Tail

pytestmark = pytest.mark.integration

CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def spawn_bash(d: DaemonProcess, sid: str, tmp_path: Path) -> None:
    status, body = d.request("POST", "/api/sessions/spawn", {
        "session_id": sid, "command": "bash", "args": ["--norc", "--noprofile"], "cwd": str(tmp_path),
        "env": {"PS1": "$ "}})
    assert status == 201, body
    wait_until_sync(lambda: d.request("GET", f"/api/sessions/{sid}/screen")[1]["text"].strip(), 10,
                    message=f"{sid}'s prompt")


def test_errors_name_cli_options_and_settings(daemon_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d: DaemonProcess = daemon_factory(TELEPTY_MAX_PROMPT_BYTES="64").start()
    spawn_bash(d, "sh1", tmp_path)
    r = d.cli("inject", "sh1", "bad \x1b[1m escape")
    assert r.returncode == 1
    assert r.stderr == ("telepty: invalid_prompt: prompt contains control character U+001B (escape) at "
                        "index 4; only \\n and \\t are allowed unless --raw is given\n")
    r = d.cli("keys", "sh1", "Enter", "NotAKey")
    assert r.returncode == 1 and "key 2 'NotAKey' is not a key name" in r.stderr, r.stderr
    assert r.stderr.rstrip().endswith("type text as text:WORDS") and '{"text"' not in r.stderr
    r = d.cli("keys", "sh1", "text:")
    assert r.returncode == 1 and "the text:WORDS of key 1 must be" in r.stderr, r.stderr
    r = d.cli("inject", "sh1", "x" * 100)
    assert r.returncode == 1
    assert r.stderr == ("telepty: too_large: prompt is 100 bytes of UTF-8; the limit is 64; the daemon's "
                        "TELEPTY_MAX_PROMPT_BYTES setting raises the limit (restart the daemon with it)\n")
    j = d.cli("inject", "sh1", "x" * 100, "--json")
    assert j.returncode == 1 and j.stderr == ""
    assert json.loads(j.stdout) == {
        "error": "too_large", "message": "too_large: prompt is 100 bytes of UTF-8; the limit is 64",
        "hint": "the daemon's TELEPTY_MAX_PROMPT_BYTES setting raises the limit (restart the daemon with it)",
        "exit": 1}
    r = d.cli("screen", "ghost", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["error"] == "session_not_found"
    # The port is taken (by this very daemon): the error says which option picks another.
    port = d.url.rsplit(":", 1)[1]
    r = run_cli("daemon", "--port", port, env=daemon_env(tmp_path / "other-home"), timeout=30)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: " in r.stderr
    assert r.stderr.rstrip().endswith(
        "choose another port with `telepty daemon --port N` (or TELEPTY_PORT=N)")
    # Whitespace only is refused like empty: by the CLI, and by the API for everyone else.
    r = d.cli("inject", "sh1", " \n ")
    assert r.returncode == 2
    assert r.stderr == "telepty: the prompt is only whitespace: there is nothing to deliver\n"
    status, body = d.request("POST", "/api/sessions/sh1/inject", {"prompt": "\t \n"})
    assert status == 400 and body["error"] == "missing_field", body
    assert d.request("GET", "/api/deliveries")[1] == []  # none of it was accepted


def test_list_all_keeps_the_columns_of_list(daemon: DaemonProcess, tmp_path: Path) -> None:
    spawn_bash(daemon, "sh1", tmp_path)
    plain = daemon.cli("list").stdout.splitlines()
    everything = daemon.cli("list", "--all").stdout.splitlines()
    assert plain[0].split() == everything[0].split() == [
        "ID", "TYPE", "AGENT", "STATE", "PANE", "IDLE", "CLIENTS", "PROJECT", "COMMAND"]
    assert plain[1].split()[:4] == everything[1].split()[:4] == ["sh1", "spawned", "other", "running"]


def test_init_needs_no_flag(daemon: DaemonProcess) -> None:
    r = daemon.cli("init")
    assert r.returncode == 0 and r.stdout.startswith("## telepty: messages from and to other agents")


def test_bus_tail_hides_health_rejects_unknown_kinds_and_says_it_waits(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d: DaemonProcess = daemon_factory(TELEPTY_HEALTH_INTERVAL="0.2").start()
    status, _ = d.request("POST", "/api/sessions/register", {
        "type": "wrapped", "session_id": "w", "command": "sh", "pid": os.getpid()})
    assert status == 201
    r = d.cli("bus", "tail", "--kinds", "inject_writen")
    assert r.returncode == 2
    assert r.stderr.startswith("telepty: --kinds: no event of kind inject_writen was ever published here, "
                               "and the daemon emits no such kind (did you mean inject_written?); "), r.stderr
    assert "add --new-kinds" in r.stderr
    wait_until_sync(lambda: any(e["kind"] == "session_health" for e in
                                d.request("GET", "/api/bus/events?since=0")[1]["events"]), 10,
                    message="a heartbeat in the log")
    tail = Tail(d, "--since", "0")
    try:
        wait_until_sync(lambda: any("waiting for events" in e for e in tail.err), 15, message="tail waiting")
        assert tail.err[-1] == ("telepty: following the bus; waiting for events (session_health hidden: "
                                "--kinds names it to see it); Ctrl-C stops")
        status, _ = d.request("POST", "/api/bus/publish", {"kind": "after.health", "payload": {}})
        wait_until_sync(lambda: any("after.health" in line for line in tail.lines), 10, message="the event")
        assert not any("session_health" in line for line in tail.lines), tail.lines
        assert any("session_register" in line for line in tail.lines)  # everything else still shows
    finally:
        tail.stop()
    asked = d.cli("bus", "tail", "--since", "0", "--kinds", "session_health", "--count", "1")
    assert asked.returncode == 0 and "session_health" in asked.stdout  # shown when named


def _raw_screen(d: DaemonProcess, sid: str) -> str:
    return str(d.request("GET", f"/api/sessions/{sid}/screen?lines=10")[1]["text"])


def test_screen_renders_a_spawned_bash_like_a_terminal(daemon: DaemonProcess, tmp_path: Path) -> None:
    spawn_bash(daemon, "sh1", tmp_path)
    r = daemon.cli("inject", "sh1", "echo hello-$((6*7))", "--wait")
    assert r.returncode == 0, r.stderr
    # Typing with a correction: readline answers a backspace with "\b \b".
    r = daemon.cli("keys", "sh1", "text:echo fix-abX", "BSpace", "text:c", "Enter", "--wait")
    assert r.returncode == 0, r.stderr
    wait_until_sync(lambda: "fix-abc\n$" in _raw_screen(daemon, "sh1"), 10, message="the second command ran")
    shown = daemon.cli("screen", "sh1", "--lines", "10").stdout
    assert CONTROL_RE.search(shown) is None, repr(shown)
    assert shown.splitlines()[-5:] == ["$ echo hello-$((6*7))", "hello-42", "$ echo fix-abc", "fix-abc", "$"]
    explain = daemon.cli("explain", "sh1", "--lines", "5").stdout
    assert [line[4:] for line in explain.splitlines() if line.startswith("  | ")] == shown.splitlines()[-5:]


def _delivered_evidence(d: DaemonProcess, tmp_path: Path) -> dict[str, Any]:
    spawn_bash(d, "sh1", tmp_path)
    r = d.cli("inject", "sh1", "echo secret-plan-42", "--wait", "--json")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["status"] == "delivered"
    return dict(record["evidence"])


def test_evidence_screen_text_is_withheld_unless_audit_content(daemon_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d: DaemonProcess = daemon_factory().start()
    evidence = _delivered_evidence(d, tmp_path)
    assert "secret-plan" not in json.dumps(evidence)
    assert re.fullmatch(r"\[withheld: \d+ characters of screen text\]", evidence["tail_after"]), evidence
    assert evidence["screen_text"].startswith("withheld")
    assert evidence["transport"] == "pty"  # the rest of the evidence is still there
    listed = d.cli("deliveries", "--json").stdout
    assert "secret-plan" not in listed
    d.stop()

    kept = daemon_factory(TELEPTY_AUDIT_CONTENT="1")
    kept.home = tmp_path / "kept-home"
    kept.home.mkdir()
    kept.env["TELEPTY_HOME"] = str(kept.home)
    kept.log_path = kept.home / "daemon-test.log"
    kept.start()
    evidence = _delivered_evidence(kept, tmp_path)
    assert "echo secret-plan-42" in evidence["tail_after"] and "screen_text" not in evidence


def test_screen_help_and_mcp_command_start(daemon: DaemonProcess) -> None:
    r = daemon.cli("screen", "--help")
    assert "the terminal model `explain` uses" in " ".join(r.stdout.split())
    proc = subprocess.run([sys.executable, "-m", "telepty", "mcp", "--help"], env=daemon.env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "usage: telepty mcp" in proc.stdout
