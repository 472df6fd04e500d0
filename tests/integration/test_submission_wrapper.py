"""Delivered means submitted through ``telepty wrap``: the daemon writes via the wrapper and
confirms from the output the wrapper mirrors to it (no tmux involved)."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import DaemonProcess, wait_until_sync
from tests.integration.standins import PROGRAMS
from tests.integration.test_wrap_cli import pane_launcher


def explain(d: DaemonProcess, sid: str) -> dict[str, Any]:
    status, body = d.request("GET", f"/api/sessions/{sid}/explain")
    return body if status == 200 else {}


def test_wrapped_standin_is_confirmed_through_the_mirror(
    daemon_factory: Callable[..., DaemonProcess], session, tmp_path: Path, home: Path,  # type: ignore[no-untyped-def]
) -> None:
    (home / "profiles.toml").write_text("[codex]\nsettle_ms = 120\nconfirm_ms = 600\n")
    d = daemon_factory(TELEPTY_SETTLE_MS="", TELEPTY_QUIET_MS="50").start()
    launch = pane_launcher(session, tmp_path, home)
    out = tmp_path / "wrapped.jsonl"
    cmd = (f"exec -a codex {shlex.quote(sys.executable)} {PROGRAMS / 'standin_paste_burst.py'} "
           f"--out {out} --burst-ms 80")
    launch("wrap", "--id", "wx", "--agent", "codex", "--", "bash", "-c", cmd, in_tmux=False)
    wait_until_sync(lambda: explain(d, "wx").get("verdict") == "idle", 15,
                    message=f"wrapped stand-in idle: {explain(d, 'wx')}")
    e = explain(d, "wx")
    assert e["transport"] == "wrapper" and e["agent_detected"] == "codex"

    texts = [f"wrapped prompt {i}\nsecond line {i}" if i % 3 == 0 else f"wrapped prompt {i}"
             for i in range(15)]
    for text in texts:
        status, body = d.request("POST", "/api/sessions/wx/inject", {"prompt": text, "wait": True,
                                                                     "timeout": 20}, timeout=30)
        assert status == 200 and body["confirmed"] == "screen", body
        assert body["evidence"]["transport"] == "wrapper" and body["evidence"]["paste_seen"] == "text"
    submitted = [json.loads(line)["text"] for line in out.read_text().splitlines() if '"n"' in line]
    assert submitted == texts

    status, body = d.request("POST", "/api/sessions/wx/keys", {"keys": [{"text": "draft"}], "wait": True})
    assert status == 200 and body["evidence"]["transport"] == "wrapper", body
    wait_until_sync(lambda: explain(d, "wx").get("verdict") == "composer-has-text", 10,
                    message="typed text seen through the mirror")
    status, body = d.request("POST", "/api/sessions/wx/keys", {"keys": ["C-u"], "wait": True})
    assert status == 200
    wait_until_sync(lambda: explain(d, "wx").get("verdict") == "idle", 10, message="cleared")
