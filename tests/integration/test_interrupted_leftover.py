"""A paste interrupted by a crash leaves its text in the input; the next prompt must not merge.

The crash is staged exactly: with the daemon stopped, the database gets the row a
daemon killed mid-paste leaves behind (``delivering`` at stage ``paste``), and the pane
gets the text that paste had already typed. Then a new daemon starts on that home.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from telepty.delivery.model import Delivery, DeliveryStatus, Origin
from telepty.store.db import Database
from telepty.store.deliveries import DeliveryRepo
from tests.helpers import wait_until_sync
from tests.integration.agents import AgentPane, start_agent_pane

LEFTOVER = "summarise the failing tests in tests/unit"
NEXT = "now fix the first one"


def _plant_interrupted(home: Path, session_id: str, prompt: str) -> str:
    """The row a daemon SIGKILLed right after entering the paste stage leaves behind."""

    async def plant() -> str:
        db = Database(home / "telepty.db")
        await db.open()
        try:
            d = Delivery(session_id=session_id, target=session_id, prompt=prompt.encode(),
                         origin=Origin("api"), status=DeliveryStatus.DELIVERING, stage="paste",
                         attempts=1)
            await DeliveryRepo(db).insert(d)
            return d.id
        finally:
            await db.close()

    return asyncio.run(plant())


def _type_into(ap: AgentPane, text: str) -> None:
    subprocess.run(["tmux", "-S", ap.socket_path, "send-keys", "-t", ap.pane_id, "-l", text], check=True)


def _crashed_mid_paste(daemon_factory, session, tmp_path: Path, *, on_screen: bool):  # type: ignore[no-untyped-def]
    d = daemon_factory().start()
    ap = start_agent_pane(session, tmp_path, echo=True)
    wait_until_sync(lambda: "ready>" in ap.screen(), message="agent up")
    status, body = d.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": "p1", "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent"})
    assert status == 201, body
    d.kill9()
    interrupted = _plant_interrupted(d.home, "p1", LEFTOVER)
    if on_screen:
        _type_into(ap, LEFTOVER)
        wait_until_sync(lambda: LEFTOVER in ap.screen(), message="leftover on screen")
    return daemon_factory().start(), ap, interrupted  # the same home: a restart


def test_next_prompt_waits_while_the_leftover_is_in_the_input(daemon_factory, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d, ap, interrupted = _crashed_mid_paste(daemon_factory, session, tmp_path, on_screen=True)
    assert d.delivery(interrupted)["reason"] == "interrupted"

    status, body = d.request("POST", "/api/sessions/p1/inject", {"prompt": NEXT})
    assert status == 202, body
    nid = body["delivery_id"]
    held = wait_until_sync(lambda: (r := d.delivery(nid))["reason"] == "composer_has_text" and r,
                           message="next prompt held")
    assert held["status"] == "retrying"
    assert interrupted in held["detail"] and "telepty keys p1 C-u" in held["detail"]
    assert ap.files.submissions() == []

    # A person clears the input; the held prompt goes at once, alone.
    status, body = d.request("POST", "/api/sessions/p1/keys", {"keys": ["C-u"], "force": True})
    assert status == 202, body
    done = wait_until_sync(lambda: (r := d.delivery(nid))["status"] in ("delivered", "failed") and r,
                           message="next prompt final")
    assert done["status"] == "delivered", done
    wait_until_sync(lambda: ap.files.submissions() == [NEXT], message="exactly the new prompt submitted")
    d.stop()


def test_submitting_the_leftover_keeps_the_two_prompts_apart(daemon_factory, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d, ap, _ = _crashed_mid_paste(daemon_factory, session, tmp_path, on_screen=True)
    status, body = d.request("POST", "/api/sessions/p1/inject", {"prompt": NEXT})
    nid = body["delivery_id"]
    wait_until_sync(lambda: d.delivery(nid)["reason"] == "composer_has_text", message="held")

    status, body = d.request("POST", "/api/sessions/p1/keys", {"keys": ["Enter"], "force": True})
    assert status == 202, body
    wait_until_sync(lambda: d.delivery(nid)["status"] == "delivered", message="delivered")
    wait_until_sync(lambda: len(ap.files.submissions()) == 2, message="two submissions")
    assert ap.files.submissions() == [LEFTOVER, NEXT]
    d.stop()


def test_no_leftover_on_screen_no_wait(daemon_factory, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d, ap, interrupted = _crashed_mid_paste(daemon_factory, session, tmp_path, on_screen=False)
    status, body = d.request("POST", "/api/sessions/p1/inject", {"prompt": NEXT, "wait": True})
    assert status == 200, body
    assert body["status"] == "delivered" and body["attempts"] == 1, body
    wait_until_sync(lambda: ap.files.submissions() == [NEXT], message="submitted")
    assert d.delivery(interrupted)["reason"] == "interrupted"
    d.stop()
