"""A wrapped session's child talks through telepty: verified inject, spoofing, reply.

Everything real: a daemon process, ``telepty wrap`` running bash in a tmux window (the
"agent" whose shell runs ``telepty …`` commands, with the TELEPTY_SESSION_TOKEN the
wrapper gave it), and fake agents in other tmux windows whose submission logs say
exactly what reached them.
"""

from __future__ import annotations

import hashlib
import shlex
import sys
from pathlib import Path
from typing import Any

import libtmux
import pytest

from tests.helpers import DaemonProcess, wait_until_sync
from tests.integration.agents import AgentPane, start_agent_pane
from tests.integration.identity_helpers import all_files_bytes
from tests.integration.test_wrap_cli import BASH, Launch, PaneRun, pane_launcher, running, wait_session

pytestmark = pytest.mark.integration

TELEPTY = f"{shlex.quote(sys.executable)} -m telepty"


@pytest.fixture
def launch(session: libtmux.Session, tmp_path: Path, home: Path) -> Launch:
    return pane_launcher(session, tmp_path, home)


def fake_agent(daemon: DaemonProcess, session: libtmux.Session, tmp_path: Path, name: str) -> AgentPane:
    ap = start_agent_pane(session, tmp_path, name)
    wait_until_sync(lambda: "ready>" in ap.screen(), 10, message=f"agent {name} ready")
    status, body = daemon.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": name, "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent"})
    assert status == 201, body
    return ap


def deliveries_to(daemon: DaemonProcess, session_id: str) -> list[dict[str, Any]]:
    status, body = daemon.request("GET", f"/api/deliveries?session={session_id}")
    assert status == 200
    return list(reversed(body))  # oldest first


def run_in(run: PaneRun, command: str, marker: str) -> None:
    """Type ``command`` into the wrapped shell and wait for it to finish (prints marker=RC)."""
    run.type(f"{command}; echo {marker}=$?")
    run.shows(f"{marker}=")


def test_the_wrapped_child_injects_as_itself_and_spoofing_is_flagged(
    daemon: DaemonProcess, launch: Launch, session: libtmux.Session, tmp_path: Path,
) -> None:
    other = fake_agent(daemon, session, tmp_path, "other")
    run = launch("wrap", "--id", "w1", "--", *BASH)
    wait_session(daemon, "w1", running, "running")
    run_in(run, f"{TELEPTY} inject other 'hello from w1' --wait", "rc1")
    run.shows("rc1=0")
    run_in(run, f"{TELEPTY} inject other 'forged order' --from boss --wait", "rc2")
    run.shows("rc2=0")
    wait_until_sync(lambda: other.files.submissions() == ["hello from w1", "forged order"], 10,
                    message="both prompts submitted")
    honest, forged = deliveries_to(daemon, "other")
    assert (honest["verified_sender"], honest["from"], honest["spoofed"], honest["origin"]) == (
        "w1", "w1", False, "cli")
    assert (forged["verified_sender"], forged["from"], forged["spoofed"]) == ("w1", "boss", True)
    _, audit = daemon.request("GET", "/api/injects?to=other")
    assert [(r["verified_sender"], r["from"], r["spoofed"]) for r in reversed(audit)] == [
        ("w1", "w1", False), ("w1", "boss", True)]
    assert audit[0]["prompt_sha256"] == hashlib.sha256(b"forged order").hexdigest()
    assert all("prompt" not in r for r in audit)
    # The token is in the child's environment, and nowhere in the daemon's files or logs.
    token_file = tmp_path / "token-seen-by-child"
    run_in(run, f"printf '%s' \"$TELEPTY_SESSION_TOKEN\" > {shlex.quote(str(token_file))}", "rc3")
    token = token_file.read_text()
    assert token.startswith("tpst_")
    assert token.encode() not in all_files_bytes(daemon.home)


def test_reply_goes_to_whoever_asked_last(
    daemon: DaemonProcess, launch: Launch, session: libtmux.Session, tmp_path: Path,
) -> None:
    b = fake_agent(daemon, session, tmp_path, "B")
    c = fake_agent(daemon, session, tmp_path, "C")
    run = launch("wrap", "--id", "w1", "--", *BASH)
    wait_session(daemon, "w1", running, "running")

    # B asks w1 something (in a thread); the "agent" (bash) runs it: the answer goes to B.
    status, body = daemon.request("POST", "/api/sessions/w1/inject", {
        "prompt": "echo asked-by-$((1+1))B", "from": "B", "thread_id": "t-B", "wait": True, "timeout": 20})
    assert status == 200, body
    run.shows("asked-by-2B")
    run_in(run, f"{TELEPTY} reply 'answer for B' --wait", "rc1")
    run.shows("rc1=0")
    wait_until_sync(lambda: b.files.submissions() == ["answer for B"], 10, message="B got its answer")

    # Then C asks: the next reply goes to C, not B.
    status, body = daemon.request("POST", "/api/sessions/w1/inject", {
        "prompt": "echo asked-by-$((1+2))C", "from": "C", "wait": True, "timeout": 20})
    assert status == 200, body
    run.shows("asked-by-3C")
    run_in(run, f"{TELEPTY} reply 'answer for C' --wait", "rc2")
    run.shows("rc2=0")
    wait_until_sync(lambda: c.files.submissions() == ["answer for C"], 10, message="C got its answer")
    assert b.files.submissions() == ["answer for B"]

    (to_b,) = deliveries_to(daemon, "B")
    (to_c,) = deliveries_to(daemon, "C")
    assert (to_b["from"], to_b["verified_sender"], to_b["thread_id"], to_b["status"]) == (
        "w1", "w1", "t-B", "delivered")
    assert (to_c["from"], to_c["verified_sender"], to_c["thread_id"]) == ("w1", "w1", None)
    _, audit = daemon.request("GET", "/api/injects?from=w1")
    assert [(r["session_id"], r["via"]) for r in reversed(audit)] == [("B", "reply"), ("C", "reply")]


def test_reply_with_nothing_to_answer_fails_clearly(
    daemon: DaemonProcess, launch: Launch, tmp_path: Path,
) -> None:
    run = launch("wrap", "--id", "fresh", "--", *BASH)
    wait_session(daemon, "fresh", running, "running")
    run_in(run, f"{TELEPTY} reply 'anyone?'", "rc")
    run.shows("nothing_to_reply_to")
    assert "rc=0" not in run.text()
    # Outside any session, and naming none: a clear error, non-zero, nothing sent.
    out = daemon.cli("reply", "hello")
    assert out.returncode != 0 and "no_session_identity" in out.stderr
    assert daemon.request("GET", "/api/deliveries") == (200, [])
