"""``--wait`` says what it waits for: status, reason, attempt and next try; and when the
wait ends first (``--timeout``, Ctrl-C), that the prompt is still pending and how to
cancel it. Against a real daemon and a busy agent in a real tmux pane."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import ptyprocess
import pytest

from tests.helpers import DaemonProcess, wait_until_sync
from tests.integration.agents import start_agent_pane
from tests.integration.test_relay import register_pane

pytestmark = pytest.mark.integration

# Retries 2 s apart: the delivery stays `retrying` (busy) for as long as each test looks.
SLOW_RETRIES = "2,2,2,2,2,2,2,2,2,2"
PROGRESS_RE = re.compile(r"dlv_[0-9a-f]+ retrying \(busy[^)]*\), attempt \d+, next try (in \d+s|now)")


@pytest.fixture
def busy(daemon_factory, session, tmp_path: Path) -> DaemonProcess:  # type: ignore[no-untyped-def]
    d: DaemonProcess = daemon_factory(TELEPTY_RETRY_SCHEDULE=SLOW_RETRIES).start()
    ap = start_agent_pane(session, tmp_path, busy=True)
    wait_until_sync(lambda: "working" in ap.screen(), message="a busy agent")
    register_pane(d, ap, "p1")
    return d


def test_timeout_says_it_is_still_pending_and_how_to_cancel(busy: DaemonProcess) -> None:
    r = busy.cli("inject", "p1", "when you are free", "--wait", "--timeout", "2.5")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert r.stdout == ""
    progress = [line for line in r.stderr.splitlines() if PROGRESS_RE.search(line)]
    assert progress, r.stderr  # a line per change: status, reason, attempt, next try
    last = r.stderr.splitlines()[-1]
    did = re.search(r"dlv_[0-9a-f]+", last).group()  # type: ignore[union-attr]
    # Between two tries it is retrying (busy); during one, delivering (its quiet guard).
    assert re.match(rf"telepty: stopped waiting after 2\.5s; {did} (retrying \(busy|delivering \(stage )",
                    last), last
    assert ", attempt " in last
    assert last.endswith(f": the prompt is still pending and the daemon keeps trying; cancel it with "
                         f"`telepty deliveries {did} --cancel`"), last
    # What it said is true: still pending, and the command it named cancels it.
    wait_until_sync(lambda: busy.delivery(did)["status"] == "retrying", 10, message="between two tries")
    c = busy.cli("deliveries", did, "--cancel")
    assert c.returncode == 0 and c.stdout == f"{did} cancelled\n", c.stderr


def test_ctrl_c_says_it_is_still_pending(busy: DaemonProcess) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "telepty", "inject", "p1", "later", "--wait"],
                            env=busy.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def retrying() -> bool:
            _, items = busy.request("GET", "/api/deliveries")
            return bool(items) and items[0]["status"] == "retrying"

        wait_until_sync(retrying, 15, message="the delivery to be retrying")
        time.sleep(0.5)  # not synchronisation: let the CLI read the record at least once more
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, err
    last = err.decode().splitlines()[-1]
    assert last.startswith("telepty: interrupted; dlv_") and "still pending" in last, last
    assert "--cancel`" in last
    _, items = busy.request("GET", "/api/deliveries")
    assert items[0]["status"] == "retrying"  # Ctrl-C ended the wait, not the delivery


def test_at_a_terminal_the_progress_line_shows_attempt_reason_and_next_try(busy: DaemonProcess) -> None:
    term = ptyprocess.PtyProcess.spawn([sys.executable, "-m", "telepty", "inject", "p1", "x", "--wait",
                                        "--timeout", "3"], env=busy.env, dimensions=(24, 200))
    seen = b""
    try:
        while True:
            try:
                seen += term.read(4096)
            except EOFError:
                break
    finally:
        term.wait()
    text = seen.decode(errors="replace")
    assert term.exitstatus == 4, text
    assert "\r⠋" in text or "\r⠙" in text, text  # a spinner, redrawn in place
    assert PROGRESS_RE.search(text), text


def test_timeout_default_is_in_the_help(busy: DaemonProcess) -> None:
    for cmd in ("inject", "keys", "reply", "multicast", "broadcast"):
        out = busy.cli(cmd, "--help").stdout
        flat = " ".join(out.split())
        assert "--timeout SECONDS with --wait: stop waiting after this long; the delivery itself goes on " \
               "(default: 120)" in flat, (cmd, out)
