"""``telepty spawn`` and ``telepty attach`` end to end, with the attach client in tmux panes."""

from __future__ import annotations

from pathlib import Path

import libtmux
import pytest

from tests.helpers import DaemonProcess, daemon_env, run_cli, wait_until_sync
from tests.integration.test_wrap_cli import (
    DEADLINE_S,
    Launch,
    assert_modes_restored,
    closed_port,
    get_session,
    pane_launcher,
    wait_session,
)

pytestmark = pytest.mark.integration

BASH = ("bash", "--norc", "--noprofile")


@pytest.fixture
def launch(session: libtmux.Session, tmp_path: Path, home: Path) -> Launch:
    return pane_launcher(session, tmp_path, home)


def spawn_bash(daemon: DaemonProcess, name: str) -> None:
    res = daemon.cli("spawn", "--id", name, "--", *BASH, input=b"")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == name


def clients(daemon: DaemonProcess, name: str, n: int) -> None:
    wait_session(daemon, name, lambda s: s["clients"] == n, f"with {n} attached client(s)")


def test_attach_types_and_detaches_leaving_the_session_running(daemon: DaemonProcess,
                                                               launch: Launch) -> None:
    spawn_bash(daemon, "s1")
    s = get_session(daemon, "s1")
    assert s is not None and (s["type"], s["state"]) == ("spawned", "running")
    run = launch("attach", "s1")
    clients(daemon, "s1", 1)
    run.type("echo at-$((2+3))")
    run.shows("at-5")
    run.pane.send_keys("C-]", enter=False)
    run.shows("[detached from s1]")
    assert run.exit_status() == 0
    assert_modes_restored(run)
    clients(daemon, "s1", 0)
    assert get_session(daemon, "s1")["state"] == "running"  # type: ignore[index]


def test_two_clients_see_the_same_output(daemon: DaemonProcess, launch: Launch) -> None:
    spawn_bash(daemon, "s2")
    a = launch("attach", "s2")
    b = launch("attach", "s2")
    clients(daemon, "s2", 2)
    a.type("echo both-$((20+1))")
    a.shows("both-21")
    b.shows("both-21")
    b.type("echo from-b-$((1+1))")
    a.shows("from-b-2")


def test_attach_follows_the_window_size(daemon: DaemonProcess, launch: Launch) -> None:
    spawn_bash(daemon, "s3")
    run = launch("attach", "s3")
    clients(daemon, "s3", 1)
    run.pane.window.cmd("resize-window", "-x", "101", "-y", "33")
    size = run.pane.cmd("display-message", "-p", "#{pane_height} #{pane_width}").stdout[0].strip()
    assert size == "33 101"

    def reported() -> bool:
        run.type("stty size")
        return any(line.strip() == size for line in run.pane.capture_pane(start=-5))

    wait_until_sync(reported, DEADLINE_S, interval=0.2, message=f"`stty size` to say {size}")


def test_session_exit_ends_the_attach(daemon: DaemonProcess, launch: Launch) -> None:
    spawn_bash(daemon, "s4")
    run = launch("attach", "s4")
    clients(daemon, "s4", 1)
    run.type("exit 4")
    run.shows("[session s4 exited with code 4]")
    assert run.exit_status() == 0
    assert_modes_restored(run)
    s = wait_session(daemon, "s4", lambda s: s["state"] == "exited", "exited")
    assert s["exit_code"] == 4


def test_attach_errors(daemon: DaemonProcess, home: Path) -> None:
    res = daemon.cli("attach", "ghost", input=b"")
    assert res.returncode == 1
    assert res.stderr.startswith("telepty: session_not_found: ") and res.stderr.count("\n") == 1

    spawn_bash(daemon, "s5")
    res = daemon.cli("spawn", "--id", "s5", "--", *BASH, input=b"")
    assert res.returncode != 0 and "session_exists" in res.stderr
    res = daemon.cli("spawn", "--id", "s6", "--", "no-such-program-xyz", input=b"")
    assert res.returncode != 0 and "spawn_failed" in res.stderr
    res = daemon.cli("spawn", "--id", "s7", input=b"")
    assert res.returncode != 0 and "no command given" in res.stderr
    res = daemon.cli("spawn", "--id", "s8", "--json", "--", *BASH, input=b"")
    assert res.returncode == 0 and '"id": "s8"' in res.stdout

    daemon.stop()
    down = run_cli("attach", "s5", env=daemon_env(home, TELEPTY_PORT=str(closed_port())), input=b"")
    assert down.returncode == 3
    assert "no telepty daemon is running" in down.stderr and down.stderr.count("\n") == 1
