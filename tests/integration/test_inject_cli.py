"""``telepty inject`` and ``telepty deliveries`` as a person runs them."""

from __future__ import annotations

import json

from tests.helpers import DaemonProcess, wait_until_sync
from tests.integration.agents import start_agent_pane


def _pane_daemon(daemon: DaemonProcess, session, tmp_path, busy: bool = False):  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path, busy=busy)
    wait_until_sync(lambda: ("working" if busy else "ready>") in ap.screen(), message="agent up")
    status, _ = daemon.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": "p1", "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent"})
    assert status == 201
    return ap


def test_inject_wait_prints_final_status(daemon: DaemonProcess, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = _pane_daemon(daemon, session, tmp_path)
    r = daemon.cli("inject", "p1", "hello from the cli", "--wait", "--from", "tester")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == "delivered"
    wait_until_sync(lambda: ap.files.submissions() == ["hello from the cli"], message="submitted")
    did = r.stdout.split()[0]
    shown = json.loads(daemon.cli("deliveries", did, "--json").stdout)
    assert (shown["origin"], shown["from"], shown["reply_to"]) == ("cli", "tester", "tester")
    listing = daemon.cli("deliveries")
    assert did in listing.stdout and "delivered" in listing.stdout


def test_inject_from_stdin(daemon: DaemonProcess, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = _pane_daemon(daemon, session, tmp_path)
    text = "from stdin\nsecond line\twith tab — ünïcode"
    r = daemon.cli("inject", "p1", "-", "--wait", "--json", input=text.encode())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "delivered"
    wait_until_sync(lambda: ap.files.submissions() == [text], message="stdin prompt submitted")


def test_help_is_never_sent_as_a_prompt(daemon: DaemonProcess, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = _pane_daemon(daemon, session, tmp_path)
    for args in (("inject", "--help"), ("inject", "p1", "--help"), ("inject", "-h", "p1", "x")):
        r = daemon.cli(*args)
        assert r.returncode == 0 and "usage:" in r.stdout
    assert daemon.request("GET", "/api/deliveries")[1] == []
    assert ap.files.raw_bytes() == b""


def test_failures_exit_non_zero(daemon: DaemonProcess, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = _pane_daemon(daemon, session, tmp_path, busy=True)
    r = daemon.cli("inject", "p1", "never", "--wait")
    assert r.returncode == 1
    assert "failed" in r.stdout and "retry_exhausted" in r.stdout
    r = daemon.cli("inject", "ghost", "x")
    assert r.returncode == 1 and "session_not_found" in r.stderr
    r = daemon.cli("inject", "p1", "bad \x1b[1m escape")
    assert r.returncode == 1 and "invalid_prompt" in r.stderr
    assert ap.files.raw_bytes() == b""


def test_cancel_from_cli(daemon_factory, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A long retry slot: the busy pane keeps it waiting while the CLI comes and goes.
    daemon = daemon_factory(TELEPTY_RETRY_SCHEDULE="30").start()
    _pane_daemon(daemon, session, tmp_path, busy=True)
    r = daemon.cli("inject", "p1", "to cancel")
    assert r.returncode == 0
    did = r.stdout.split()[0]
    r = daemon.cli("deliveries", did, "--cancel")
    assert r.returncode == 0 and "cancelled" in r.stdout
    r = daemon.cli("deliveries", did, "--cancel")
    assert r.returncode == 1 and "not_cancellable" in r.stderr
