"""The CLI talks to the daemon of its own TELEPTY_HOME, and to no other.

A stray daemon of another home listens on the port a guessing CLI would try (here
``TELEPTY_PORT``; on a user's machine 3848, where the quick start put one). With this
home's daemon not running, every command must say so (exit 3, with a hint) and leave
the stray untouched; a daemon of another home reached through a stale ``daemon.json``
or ``TELEPTY_URL`` is refused by the home id it reports in ``/api/meta``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from telepty.home_id import read_home_id
from tests.helpers import DaemonProcess, daemon_env, run_cli

pytestmark = pytest.mark.integration

COMMANDS = [
    ("status",), ("list",), ("list", "--all"), ("meta",), ("deliveries",), ("inject", "w", "hello"),
    ("inject", "w", "hello", "--wait"), ("keys", "w", "Enter"), ("explain", "w"), ("screen", "w"),
    ("kill", "w"), ("rename", "w", "v"), ("clean",), ("peers",), ("injects",),
    ("spawn", "--id", "x", "--", "sh"), ("bus", "tail"), ("bus", "publish", "x.y"),
    ("multicast", "w,v", "hi"), ("broadcast", "hi"), ("reply", "hi", "--session", "w"), ("attach", "w"),
]
NO_JSON = {"attach"}  # a terminal, not output to parse

HINT = "start it with `telepty daemon`, or point TELEPTY_HOME at the home of the daemon you mean"


@pytest.fixture
def stray(machines) -> DaemonProcess:  # type: ignore[no-untyped-def]
    d: DaemonProcess = machines("stray").start()
    status, body = d.request("POST", "/api/sessions/register", {
        "type": "wrapped", "session_id": "w", "command": "sh", "pid": os.getpid()})
    assert status == 201, body
    return d


def _port(d: DaemonProcess) -> str:
    return d.url.rsplit(":", 1)[1]


def _untouched(stray: DaemonProcess) -> None:
    assert stray.request("GET", "/api/deliveries")[1] == []
    assert stray.request("GET", "/api/injects")[1] == []
    assert [s["id"] for s in stray.request("GET", "/api/sessions")[1]] == ["w"]
    events = stray.request("GET", "/api/bus/events?since=0&limit=1000")[1]["events"]
    assert [e for e in events if e["kind"] == "x.y"] == []


def test_no_daemon_for_this_home_is_exit_3_whatever_listens_elsewhere(stray: DaemonProcess,
                                                                      tmp_path: Path) -> None:
    home = tmp_path / "mine"
    env = daemon_env(home, TELEPTY_PORT=_port(stray))  # where the old fallback looked
    for args in COMMANDS:
        r = run_cli(*args, env=env)
        assert r.returncode == 3, (args, r.stdout, r.stderr)
        assert r.stderr.splitlines() == [
            f"telepty: no telepty daemon is running for TELEPTY_HOME={home}; {HINT}"], (args, r.stderr)
        if args[0] in NO_JSON:
            continue
        j = run_cli(*args[:1], "--json", *args[1:], env=env) if args[0] != "bus" else run_cli(
            *args, "--json", env=env)
        assert j.returncode == 3 and j.stderr == "", (args, j.stderr)
        assert json.loads(j.stdout) == {
            "error": "daemon_not_running", "message": f"no telepty daemon is running for TELEPTY_HOME={home}",
            "hint": HINT, "exit": 3}, args
    _untouched(stray)


def test_a_stale_daemon_json_naming_another_homes_daemon_is_refused(stray: DaemonProcess,
                                                                    tmp_path: Path) -> None:
    home = tmp_path / "mine"
    home.mkdir()
    # A daemon of this home died (kill -9) and its port went to the stray; the pid is alive
    # again (reused: here, this test's own pid).
    (home / "daemon.json").write_text(json.dumps({"pid": os.getpid(), "url": stray.url}))
    env = daemon_env(home)
    for args in (("status",), ("list",), ("inject", "w", "hello"), ("bus", "tail")):
        r = run_cli(*args, env=env)
        assert r.returncode == 3, (args, r.stderr)
        assert r.stderr.splitlines() == [
            f"telepty: the daemon at {stray.url} serves TELEPTY_HOME={stray.home}, not this CLI's "
            f"TELEPTY_HOME={home}; start this home's daemon with `telepty daemon`, or set "
            f"TELEPTY_HOME={stray.home} to use that daemon"], r.stderr
    _untouched(stray)


def test_telepty_url_pointing_at_another_homes_daemon_is_refused(stray: DaemonProcess,
                                                                 tmp_path: Path) -> None:
    home = tmp_path / "mine"
    r = run_cli("list", "--json", env=daemon_env(home, TELEPTY_URL=stray.url))
    assert r.returncode == 3
    err = json.loads(r.stdout)
    assert err["error"] == "wrong_daemon" and "unset TELEPTY_URL" in err["hint"], err
    # The same URL with the daemon's own home is fine: TELEPTY_URL is an address, not a home.
    ok = run_cli("list", "--json", env=daemon_env(stray.home, TELEPTY_URL=stray.url))
    assert ok.returncode == 0 and [s["id"] for s in json.loads(ok.stdout)] == ["w"]
    _untouched(stray)


def test_the_daemon_reports_its_home_id_and_the_cli_uses_its_own(daemon: DaemonProcess) -> None:
    r = daemon.cli("meta", "--json")
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    assert meta["home_id"] == read_home_id(daemon.home) and meta["home_id"].startswith("home_")
    assert meta["home"] == str(daemon.home)
    daemon.stop()
    daemon.start()  # a restart keeps the home's id (a new port, the same home)
    assert json.loads(daemon.cli("meta", "--json").stdout)["home_id"] == meta["home_id"]


def test_doctor_names_the_other_homes_daemon_once(stray: DaemonProcess, tmp_path: Path) -> None:
    home = tmp_path / "mine"
    home.mkdir()
    (home / "daemon.json").write_text(json.dumps({"pid": os.getpid(), "url": stray.url}))
    r = run_cli("doctor", env=daemon_env(home))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0] == (f"✗ daemon: the daemon at {stray.url} serves TELEPTY_HOME={stray.home}, not this "
                        f"CLI's TELEPTY_HOME={home}")
    assert lines[1] == (f"    fix: start this home's daemon with `telepty daemon`, or set "
                        f"TELEPTY_HOME={stray.home} to use that daemon")
    assert r.stdout.count("telepty daemon`") == 1  # the hint is said once
    _untouched(stray)
