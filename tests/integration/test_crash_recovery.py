"""After a crash mid-delivery, the interrupted prompt is finished exactly once.

The crash is staged exactly: with the daemon stopped, the database gets the row a
daemon killed mid-delivery leaves behind (``delivering`` at stage ``paste`` or
``submit``), and the pane gets what that delivery had already done (all or part of the
prompt typed into the input, or submitted). Then a new daemon starts on that home and
nobody touches anything: what each program logged as submitted is the truth.

Three kinds of input, each the default profile (no screen patterns):
- ``box``: an agent-like program that draws its input line (``ready> …``);
- ``readline``: bash's ``read -e`` (GNU readline, bracketed paste);
- ``cat``: a tty in canonical mode.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from telepty.delivery.model import Delivery, DeliveryStatus, Origin
from telepty.store.db import Database
from telepty.store.deliveries import DeliveryRepo
from tests.helpers import DaemonProcess, wait_until_sync
from tests.integration.agents import input_program, input_submissions

PROMPT = "summarise the failing tests in tests/unit"
NEXT = "now fix the first one"
KINDS = ["box", "readline", "cat"]


@dataclass
class Program:
    kind: str
    pane_id: str
    socket_path: str
    log: Path
    pane: Any  # libtmux Pane

    def submissions(self) -> list[str]:
        return input_submissions(self.kind, self.log)

    def screen(self) -> str:
        return "\n".join(self.pane.capture_pane())

    def ready(self) -> bool:
        last = self.screen().rstrip().split("\n")[-1] if self.screen().strip() else ""
        return {"box": "ready>" in self.screen(), "readline": last.endswith("$"),
                "cat": True}[self.kind]

    def type(self, text: str, *, enter: bool = False) -> None:
        if text:
            subprocess.run(["tmux", "-S", self.socket_path, "send-keys", "-t", self.pane_id, "-l", text],
                           check=True)
        if enter:
            subprocess.run(["tmux", "-S", self.socket_path, "send-keys", "-t", self.pane_id, "Enter"],
                           check=True)


def start_program(session: Any, tmp_path: Path, kind: str) -> Program:
    log = tmp_path / f"{kind}.log"
    cmd = input_program(kind, log)
    window = session.new_window(window_name=kind, window_shell=cmd)
    pane = window.active_pane
    sock = session.server.cmd("display-message", "-p", "#{socket_path}").stdout[0]
    prog = Program(kind, pane.pane_id, sock, log, pane)
    wait_until_sync(prog.ready, message=f"{kind} ready")
    return prog


def plant(home: Path, session_id: str, prompt: str, stage: str) -> str:
    """The row a daemon SIGKILLed at ``stage`` leaves behind."""

    async def insert() -> str:
        db = Database(home / "telepty.db")
        await db.open()
        try:
            d = Delivery(session_id=session_id, target=session_id, prompt=prompt.encode(),
                         origin=Origin("api"), status=DeliveryStatus.DELIVERING, stage=stage, attempts=1)
            await DeliveryRepo(db).insert(d)
            return d.id
        finally:
            await db.close()

    return asyncio.run(insert())


def crashed(daemon_factory: Callable[..., DaemonProcess], session: Any, tmp_path: Path, kind: str, *,
            stage: str, typed: str | None, enter: bool = False,
            **env: str) -> tuple[Callable[[], DaemonProcess], Program, str]:
    """A registered program, a dead daemon, the planted row and what reached the input.
    Returns a function that starts the next daemon, the program and the row's id."""
    d = daemon_factory(**env).start()
    prog = start_program(session, tmp_path, kind)
    status, body = d.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": "p1", "tmux_pane": prog.pane_id, "tmux_socket": prog.socket_path,
        "command": kind})
    assert status == 201, body
    d.kill9()
    did = plant(d.home, "p1", PROMPT, stage)
    if typed:
        prog.type(typed)
        wait_until_sync(lambda: typed[-10:] in prog.screen(), message="what reached the input, on screen")
    if enter:
        prog.type("", enter=True)  # as the daemon would: after the paste showed
        wait_until_sync(lambda: prog.submissions() == [typed], message="the submission before the crash")
    return (lambda: daemon_factory(**env).start()), prog, did


def inject(d: DaemonProcess, prompt: str) -> str:
    status, body = d.request("POST", "/api/sessions/p1/inject", {"prompt": prompt})
    assert status == 202, body
    return str(body["delivery_id"])


@pytest.mark.parametrize("kind", KINDS)
def test_the_whole_prompt_in_the_input_is_submitted_once(daemon_factory, session, tmp_path, kind) -> None:  # type: ignore[no-untyped-def]
    restart, prog, did = crashed(daemon_factory, session, tmp_path, kind, stage="paste", typed=PROMPT)
    d = restart()
    rec = d.final(did)
    assert (rec["status"], rec["attempts"]) == ("delivered", 2), rec
    assert rec["evidence"]["recovery"]["input"] == "whole"
    nid = inject(d, NEXT)
    assert d.final(nid)["status"] == "delivered"
    wait_until_sync(lambda: prog.submissions() == [PROMPT, NEXT], message="each once, apart")


@pytest.mark.parametrize("kind", KINDS)
def test_part_of_the_prompt_is_cleared_and_pasted_again(daemon_factory, session, tmp_path, kind) -> None:  # type: ignore[no-untyped-def]
    restart, prog, did = crashed(daemon_factory, session, tmp_path, kind, stage="paste", typed=PROMPT[:20])
    d = restart()
    rec = d.final(did)
    assert (rec["status"], rec["attempts"]) == ("delivered", 2), rec
    assert rec["evidence"]["recovery"]["input"] == "part"
    assert "cleared the input (C-u)" in rec["evidence"]["recovery"]["action"]
    wait_until_sync(lambda: prog.submissions() == [PROMPT], message="the whole prompt, once, unmerged")


def test_nothing_in_the_input_is_pasted_again(daemon_factory, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    restart, prog, did = crashed(daemon_factory, session, tmp_path, "box", stage="paste", typed=None)
    d = restart()
    rec = d.final(did)
    assert (rec["status"], rec["evidence"]["recovery"]["input"]) == ("delivered", "empty"), rec
    wait_until_sync(lambda: prog.submissions() == [PROMPT], message="submitted once")


@pytest.mark.parametrize("kind", KINDS)
def test_past_the_submit_key_it_is_confirmed_never_sent_again(  # type: ignore[no-untyped-def]
        daemon_factory, session, tmp_path, kind) -> None:
    restart, prog, did = crashed(daemon_factory, session, tmp_path, kind, stage="submit", typed=PROMPT,
                                 enter=True)
    d = restart()
    rec = d.final(did)
    assert (rec["status"], rec["confirmed"]) == ("delivered", "echo"), rec
    assert "not sent again" in rec["evidence"]["recovery"]["action"]
    nid = inject(d, NEXT)
    assert d.final(nid)["status"] == "delivered"
    wait_until_sync(lambda: prog.submissions() == [PROMPT, NEXT], message="the first exactly once")


def held_setup(daemon_factory, session, tmp_path, **env: str):  # type: ignore[no-untyped-def]
    """Past the submit key with the text still in the input: nothing can be confirmed."""
    restart, prog, did = crashed(daemon_factory, session, tmp_path, "box", stage="submit", typed=PROMPT,
                                 **env)
    d = restart()
    rec = d.final(did)
    assert (rec["status"], rec["reason"]) == ("failed", "unconfirmed"), rec
    assert prog.submissions() == []  # never sent again
    nid = inject(d, NEXT)
    held = wait_until_sync(lambda: (r := d.delivery(nid))["status"] == "held" and r, message="held")
    assert held["reason"] == "leftover_in_input" and held["evidence"]["blocked_by"] == did
    assert "telepty keys p1 C-u" in held["detail"]
    return d, prog, did, nid


def test_an_unsettled_leftover_holds_the_session_visibly_until_keys(  # type: ignore[no-untyped-def]
        daemon_factory, session, tmp_path) -> None:
    d, prog, did, nid = held_setup(daemon_factory, session, tmp_path)
    later = inject(d, "and then this")
    assert d.delivery(later)["status"] == "held"  # every record behind the hold says so
    status, events = d.request("GET", "/api/bus/events?kinds=session.held")
    assert status == 200 and [e["blocked_by"] for e in events["events"]] == [did], events
    status, ex = d.request("GET", "/api/sessions/p1/explain")
    assert ex["hold"]["blocked_by"] == did and {p["status"] for p in ex["pending"]} == {"held"}
    waited = d.cli("inject", "p1", "a third", "--wait", "--timeout", "1")
    assert waited.returncode == 4, waited.stderr  # still pending, and it says why
    assert "held (leftover_in_input" in waited.stderr and f"behind {did}" in waited.stderr

    # Someone clears the input: the hold ends, the prompts go in order, apart.
    status, body = d.request("POST", "/api/sessions/p1/keys", {"keys": ["C-u"]})
    assert status == 202, body
    assert [r["status"] for r in d.finals([nid, later])] == ["delivered", "delivered"]
    wait_until_sync(lambda: prog.submissions() == [NEXT, "and then this", "a third"], message="no merge")
    status, events = d.request("GET", "/api/bus/events?kinds=session.held")
    assert len(events["events"]) == 1  # once per hold


def test_held_prompts_fail_after_the_hold_limit_and_cancel_ends_one_at_once(  # type: ignore[no-untyped-def]
        daemon_factory, session, tmp_path) -> None:
    d, prog, _did, nid = held_setup(daemon_factory, session, tmp_path, TELEPTY_HOLD_MAX_S="2")
    other = inject(d, "cancel me")
    status, body = d.request("DELETE", f"/api/deliveries/{other}")
    assert status == 200 and body["status"] == "cancelled", body
    rec = d.final(nid, timeout=15)
    assert (rec["status"], rec["reason"]) == ("failed", "held_timeout"), rec
    assert prog.submissions() == []  # nothing merged, nothing pasted


def test_a_restart_keeps_the_hold(daemon_factory, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d, prog, did, nid = held_setup(daemon_factory, session, tmp_path)
    d.kill9()
    d = daemon_factory().start()
    rec = wait_until_sync(lambda: (r := d.delivery(nid))["status"] == "held" and r, message="held again")
    assert rec["evidence"]["blocked_by"] == did
    shown = d.cli("deliveries", nid)
    assert "leftover_in_input" in shown.stdout and f"blocked_by       {did}" in shown.stdout
    # A person clears the input at the terminal: the hold sees it go and ends.
    subprocess.run(["tmux", "-S", prog.socket_path, "send-keys", "-t", prog.pane_id, "C-u"], check=True)
    assert d.final(nid)["status"] == "delivered"
    wait_until_sync(lambda: prog.submissions() == [NEXT], message="only the held prompt")
