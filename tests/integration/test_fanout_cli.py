"""``telepty multicast|broadcast|injects`` against a real daemon and real panes.

Includes the field lesson (SPEC §8): ``broadcast --help`` once broadcast "--help" to
every session. Here help anywhere before ``--`` must print help, exit 0 and send
nothing; every failure must exit non-zero.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import libtmux
import pytest

from tests.helpers import DaemonProcess, wait_until_sync
from tests.integration.agents import AgentPane, start_agent_pane

pytestmark = pytest.mark.integration


def fake_agent(daemon: DaemonProcess, session: libtmux.Session, tmp_path: Path, name: str) -> AgentPane:
    ap = start_agent_pane(session, tmp_path, name)
    wait_until_sync(lambda: "ready>" in ap.screen(), 10, message=f"agent {name} ready")
    status, body = daemon.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": name, "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent"})
    assert status == 201, body
    return ap


def nothing_sent(daemon: DaemonProcess, panes: list[AgentPane]) -> None:
    assert daemon.request("GET", "/api/deliveries") == (200, [])
    assert daemon.request("GET", "/api/injects") == (200, [])
    assert all(p.files.submissions() == [] and p.files.raw_bytes() == b"" for p in panes)


def test_help_is_never_sent(daemon: DaemonProcess, session: libtmux.Session, tmp_path: Path) -> None:
    panes = [fake_agent(daemon, session, tmp_path, n) for n in ("a", "b")]
    for argv in (["broadcast", "--help"], ["broadcast", "hello", "-h"], ["broadcast", "-h", "hello"],
                 ["multicast", "a,b", "--help"], ["multicast", "--help", "a,b", "x"],
                 ["reply", "--help"], ["injects", "--help"], ["rename", "a", "b", "--help"],
                 ["clean", "--help"], ["init", "--help"], ["mcp", "--help"]):
        out = daemon.cli(*argv)
        assert out.returncode == 0, (argv, out.stderr)
        assert "usage: telepty" in out.stdout, argv
    nothing_sent(daemon, panes)
    assert daemon.request("GET", "/api/sessions/a")[0] == 200  # rename --help renamed nothing


def test_multicast_cli_reaches_every_pane_and_fails_loudly(daemon: DaemonProcess, session: libtmux.Session,
                                                           tmp_path: Path) -> None:
    panes = {n: fake_agent(daemon, session, tmp_path, n) for n in ("a", "b", "c")}
    out = daemon.cli("multicast", "a,ghost", "x")
    assert out.returncode != 0 and "session_not_found" in out.stderr and "ghost" in out.stderr
    nothing_sent(daemon, list(panes.values()))

    prompt = "sync up: 'quotes', $(not run) and ünïcødé"
    out = daemon.cli("multicast", "a,b,c", prompt, "--wait", "--timeout", "20")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["SESSION", "DELIVERY", "STATUS", "REASON"]
    assert sorted(line.split()[0] for line in lines[1:-1]) == ["a", "b", "c"]
    assert all(line.split()[2] == "delivered" for line in lines[1:-1])
    assert lines[-1] == "3 deliveries: 3 delivered, 0 failed, 0 pending"  # the --wait summary
    for name, ap in panes.items():
        wait_until_sync(lambda ap=ap: ap.files.submissions() == [prompt], 10, message=f"{name} submitted")

    out = daemon.cli("injects", "--json")
    assert out.returncode == 0
    rows = json.loads(out.stdout)
    assert len(rows) == 3
    assert {r["origin"] for r in rows} == {"cli"} and {r["via"] for r in rows} == {"multicast"}
    assert {r["prompt_sha256"] for r in rows} == {hashlib.sha256(prompt.encode()).hexdigest()}
    assert all("prompt" not in r for r in rows)
    out = daemon.cli("injects", "--to", "b", "--since", "1h")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 2  # header + one row
    assert "cli/multicast" in out.stdout
    out = daemon.cli("injects", "--since", "the day before")
    assert out.returncode != 0 and "invalid_query" in out.stderr


def test_broadcast_cli_respects_the_cap(daemon_factory, session: libtmux.Session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon: DaemonProcess = daemon_factory(TELEPTY_FANOUT_MAX="2").start()
    panes = [fake_agent(daemon, session, tmp_path, n) for n in ("a", "b", "c")]
    out = daemon.cli("broadcast", "to everyone")
    assert out.returncode != 0 and "fanout_too_large" in out.stderr
    nothing_sent(daemon, panes)
    out = daemon.cli("broadcast", "to two of you", "--exclude", "c", "--wait", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert sorted(r["session_id"] for r in result["results"]) == ["a", "b"]
    assert result["excluded"] == [{"session_id": "c", "reason": "excluded"}]
    assert panes[2].files.submissions() == []


def test_audit_covers_every_origin_and_keeps_text_only_when_asked(daemon_factory, session: libtmux.Session,  # type: ignore[no-untyped-def]
                                                                  tmp_path: Path) -> None:
    daemon: DaemonProcess = daemon_factory(TELEPTY_AUDIT_CONTENT="1").start()
    ap = fake_agent(daemon, session, tmp_path, "a")
    status, _ = daemon.request("POST", "/api/sessions/a/inject", {"prompt": "via api", "wait": True})
    assert status == 200
    out = daemon.cli("inject", "a", "via cli", "--wait")
    assert out.returncode == 0, out.stderr
    status, body = daemon.request("POST", "/api/bus/publish", {
        "kind": "turn_request", "target": "a", "payload": {"prompt": "via bus"}})
    assert status in (200, 201, 202), body
    wait_until_sync(lambda: ap.files.submissions() == ["via api", "via cli", "via bus"], 15,
                    message="three submissions")
    _, rows = daemon.request("GET", "/api/injects")
    assert [(r["origin"], r["prompt"]) for r in reversed(rows)] == [
        ("api", "via api"), ("cli", "via cli"), ("bus_auto_route", "via bus")]
