"""``telepty wrap`` end to end: a real wrapper in a real tmux pane, a real daemon.

Each wrapper runs under a tiny launcher script (``launch.sh``) in its own tmux window.
The launcher records, after the wrapper returns, its exit status and ``stty -a`` of
the pane's terminal: the launcher is a plain ``sh`` that does not touch terminal
modes, so that is exactly what the wrapper left behind.

The wrapper finds the daemon the way a person's would: through ``daemon.json`` in
TELEPTY_HOME (a restarted test daemon listens on a new ephemeral port), never a fixed
URL. TELEPTY_PORT points at a closed port so that, while no daemon runs, the fallback
address cannot reach some other telepty on this machine.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtmux
import psutil
import pytest

from tests.helpers import DaemonProcess, daemon_env, run_cli, wait_until_sync

pytestmark = pytest.mark.integration

BASH = ("bash", "--norc", "--noprofile")
DEADLINE_S = 15.0

LAUNCHER = """\
#!/bin/sh
# launch.sh RC_FILE STTY_FILE CMD... : run CMD, then record what it left behind.
rc_file=$1; stty_file=$2; shift 2
"$@"
rc=$?
stty -a > "$stty_file.tmp" 2>&1; mv "$stty_file.tmp" "$stty_file"
echo "$rc" > "$rc_file.tmp"; mv "$rc_file.tmp" "$rc_file"
"""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PaneRun:
    """A command running under the launcher in its own tmux window."""

    pane: libtmux.Pane
    rc_file: Path
    stty_file: Path

    def text(self) -> str:
        return "\n".join(self.pane.capture_pane(start=-200))

    def shows(self, needle: str, timeout: float = DEADLINE_S) -> None:
        wait_until_sync(lambda: needle in self.text(), timeout,
                        message=f"{needle!r} in the pane; pane shows:\n{self.text()}")

    def type(self, line: str) -> None:
        self.pane.send_keys(line, enter=True, literal=True)

    def exit_status(self, timeout: float = DEADLINE_S) -> int:
        wait_until_sync(self.rc_file.exists, timeout, message="the launcher to record an exit status")
        return int(self.rc_file.read_text().strip())

    def stty_tokens(self) -> list[str]:
        return self.stty_file.read_text().split()

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(int(self.pane.pane_pid or 0))
        return [root, *root.children(recursive=True)]

    def wrapper_process(self) -> psutil.Process:
        def find() -> psutil.Process | None:
            for p in self.processes():
                try:
                    cmd = p.cmdline()
                except psutil.Error:
                    continue
                if cmd[1:3] == ["-m", "telepty"]:  # not the launcher, whose args mention it
                    return p
            return None

        return wait_until_sync(find, DEADLINE_S, message="the telepty process in the pane")

    def child_process(self, argv: Sequence[str]) -> psutil.Process:
        def find() -> psutil.Process | None:
            for p in self.wrapper_process().children():
                try:
                    cmd = p.cmdline()
                except psutil.Error:
                    continue
                # The PTY layer execs the resolved path, so argv[0] arrives absolute.
                if cmd and os.path.basename(cmd[0]) == argv[0] and cmd[1:] == list(argv[1:]):
                    return p
            return None

        return wait_until_sync(find, DEADLINE_S, message=f"{argv} under the wrapper")


Launch = Callable[..., PaneRun]


def pane_launcher(session: libtmux.Session, tmp_path: Path, home: Path) -> Launch:
    """Start ``telepty ARGS…`` (or any argv) under the launcher in a new tmux window."""
    script = tmp_path / "launch.sh"
    script.write_text(LAUNCHER)
    port = closed_port()
    counter = iter(range(1, 1000))

    def start(*telepty_args: str, in_tmux: bool = True, env: dict[str, str] | None = None,
              argv: Sequence[str] | None = None) -> PaneRun:
        n = next(counter)
        rc_file, stty_file = tmp_path / f"rc-{n}", tmp_path / f"stty-{n}"
        settings = {
            "TELEPTY_HOME": str(home), "TELEPTY_PORT": str(port), "TELEPTY_LOG_LEVEL": "INFO",
            "TELEPTY_WRAP_BACKOFF_MAX": "0.3", "TELEPTY_WRAP_HEARTBEAT": "0.2", "PS1": "$ ",
            **(env or {}),
        }
        unset = ["-u", "TELEPTY_URL"] + ([] if in_tmux else ["-u", "TMUX", "-u", "TMUX_PANE"])
        command = list(argv) if argv else [sys.executable, "-m", "telepty", *telepty_args]
        full = ["env", *unset, *(f"{k}={v}" for k, v in settings.items()),
                "sh", str(script), str(rc_file), str(stty_file), *command]
        out = session.cmd("new-window", "-P", "-F", "#{pane_id}", "-c", str(tmp_path), *full)
        pane_id = out.stdout[0].strip()
        pane = session.server.panes.get(pane_id=pane_id)
        assert pane is not None
        return PaneRun(pane=pane, rc_file=rc_file, stty_file=stty_file)

    return start


@pytest.fixture
def launch(session: libtmux.Session, tmp_path: Path, home: Path) -> Launch:
    return pane_launcher(session, tmp_path, home)


def get_session(daemon: DaemonProcess, name: str) -> dict[str, Any] | None:
    status, body = daemon.request("GET", f"/api/sessions/{name}")
    return body if status == 200 else None


def wait_session(daemon: DaemonProcess, name: str, pred: Callable[[dict[str, Any]], bool],
                 what: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s = get_session(daemon, name)
        return s if s is not None and pred(s) else None

    return wait_until_sync(check, DEADLINE_S, message=f"session {name} {what}: {get_session(daemon, name)}")


def screen_text(daemon: DaemonProcess, name: str) -> str:
    status, body = daemon.request("GET", f"/api/sessions/{name}/screen?lines=200")
    return body["text"] if status == 200 else ""


def running(s: dict[str, Any]) -> bool:
    return bool(s["state"] == "running")


def assert_modes_restored(run: PaneRun) -> None:
    tokens = run.stty_tokens()
    assert "icanon" in tokens and "echo" in tokens and "-icanon" not in tokens, tokens


# --------------------------------------------------------------------------- tests


def test_wrapped_bash_is_transparent_and_registered(daemon: DaemonProcess, launch: Launch) -> None:
    run = launch("wrap", "--id", "w1", "--", *BASH)
    s = wait_session(daemon, "w1", running, "running")
    bash = run.child_process(BASH)
    run.type("echo hi-$((40+2))")
    run.shows("hi-42")
    assert s["type"] == "wrapped"
    assert s["pid"] == bash.pid
    assert s["tmux_pane"] == run.pane.pane_id
    assert s["tmux_socket"] and os.path.exists(s["tmux_socket"])
    assert s["command"] == "bash --norc --noprofile"
    wait_until_sync(lambda: "hi-42" in screen_text(daemon, "w1"), DEADLINE_S,
                    message="the output on the daemon's screen of w1")
    # The child gets its identity and not the pane's markers of the outer terminal.
    run.type("echo id=$TELEPTY_SESSION_ID tmux=${TMUX:-none}")
    run.shows("id=w1 tmux=none")


def test_output_is_mirrored_to_the_daemon(daemon: DaemonProcess, launch: Launch) -> None:
    # Outside tmux the daemon's screen is the mirror itself, not a pane capture.
    run = launch("wrap", "--id", "m1", "--", *BASH, in_tmux=False)
    wait_session(daemon, "m1", running, "running")
    run.type("echo mirrored-$((6*7))")
    run.shows("mirrored-42")
    wait_until_sync(lambda: "mirrored-42" in screen_text(daemon, "m1"), DEADLINE_S,
                    message="the mirrored output on the daemon's screen")
    assert get_session(daemon, "m1")["tmux_pane"] is None  # type: ignore[index]


def test_resize_reaches_the_child(daemon: DaemonProcess, launch: Launch) -> None:
    run = launch("wrap", "--id", "rs", "--", *BASH)
    wait_session(daemon, "rs", running, "running")
    window = run.pane.window
    window.cmd("resize-window", "-x", "97", "-y", "31")
    size = run.pane.cmd("display-message", "-p", "#{pane_height} #{pane_width}").stdout[0].strip()
    assert size == "31 97"

    def reported() -> bool:
        # SIGWINCH travels tmux → wrapper → child asynchronously: ask until it has arrived.
        run.type("stty size")
        lines = run.pane.capture_pane(start=-5)
        return any(line.strip() == size for line in lines)

    wait_until_sync(reported, DEADLINE_S, interval=0.2, message=f"`stty size` to say {size}")


def test_daemon_restart_keeps_identity_and_output(daemon: DaemonProcess, launch: Launch) -> None:
    pane_run = launch("wrap", "--id", "rw", "--agent", "claude", "--", *BASH)
    bare_run = launch("wrap", "--id", "rm", "--agent", "codex", "--", *BASH, in_tmux=False)
    before = wait_session(daemon, "rw", running, "running")
    wait_session(daemon, "rm", running, "running")
    assert before["agent"] == "claude"

    daemon.stop(signal.SIGTERM)
    pane_run.type("echo while-down-$((1+1))")
    pane_run.shows("while-down-2")
    bare_run.type("echo unseen-by-daemon-$((2+2))")
    bare_run.shows("unseen-by-daemon-4")

    daemon.start()
    after = wait_session(daemon, "rw", running, "running again")
    for key in ("id", "type", "agent", "cwd", "command", "pid", "tmux_pane", "tmux_socket", "created_at"):
        assert after[key] == before[key], key
    bare = wait_session(daemon, "rm", running, "running again")
    assert (bare["id"], bare["agent"]) == ("rm", "codex")
    # Printed while nobody listened, yet on the new daemon's screen (§8, lost output).
    wait_until_sync(lambda: "unseen-by-daemon-4" in screen_text(daemon, "rm"), DEADLINE_S,
                    message="output printed while the daemon was down on its screen")
    pane_run.type("echo after-$((3+3))")
    pane_run.shows("after-6")


def test_command_starts_while_the_daemon_is_down(daemon_factory: Callable[..., DaemonProcess],
                                                 launch: Launch) -> None:
    run = launch("wrap", "--id", "early", "--", *BASH, in_tmux=False)
    run.type("echo before-daemon-$((5+5))")
    run.shows("before-daemon-10")
    daemon = daemon_factory().start()
    s = wait_session(daemon, "early", running, "registered once the daemon is up")
    assert s["pid"] == run.child_process(BASH).pid
    wait_until_sync(lambda: "before-daemon-10" in screen_text(daemon, "early"), DEADLINE_S,
                    message="output from before the daemon started on its screen")


def test_exit_status_passes_through_and_modes_are_restored(daemon: DaemonProcess,
                                                           launch: Launch) -> None:
    run = launch("wrap", "--id", "ex", "--", *BASH)
    wait_session(daemon, "ex", running, "running")
    run.type("exit 5")
    assert run.exit_status() == 5
    assert_modes_restored(run)
    s = wait_session(daemon, "ex", lambda s: s["state"] == "exited", "exited")
    assert s["exit_code"] == 5


def test_sigterm_stops_the_child_and_restores_the_terminal(daemon: DaemonProcess,
                                                           launch: Launch) -> None:
    run = launch("wrap", "--id", "term", "--", *BASH)
    wait_session(daemon, "term", running, "running")
    bash = run.child_process(BASH)
    run.wrapper_process().send_signal(signal.SIGTERM)
    status = run.exit_status()
    assert status == 128 + signal.SIGHUP  # the child was hung up, as a closing terminal would
    assert not psutil.pid_exists(bash.pid) or bash.status() == psutil.STATUS_ZOMBIE
    assert_modes_restored(run)
    s = wait_session(daemon, "term", lambda s: s["state"] == "exited", "exited")
    assert s["exit_code"] == status


def test_second_wrapper_refused_then_replace_takes_over(daemon: DaemonProcess, launch: Launch,
                                                         tmp_path: Path, home: Path) -> None:
    first = launch("wrap", "--id", "dup", "--", *BASH)
    wait_session(daemon, "dup", running, "running")
    first_bash = first.child_process(BASH)

    marker = tmp_path / "second-started"
    env = daemon_env(home, TELEPTY_URL=daemon.url)
    res = run_cli("wrap", "--id", "dup", "--", "sh", "-c", f"echo started > {marker}", env=env)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "session 'dup' is already live" in lines[0] and "--replace" in lines[0]
    assert not marker.exists()

    second = launch("wrap", "--id", "dup", "--replace", "--", *BASH)
    taken = wait_session(daemon, "dup", lambda s: s["id"] == "dup-2" and running(s), "taken over")
    assert taken["pid"] == second.child_process(BASH).pid
    first.shows("this session was replaced by another registration")
    first.type("echo still-alive-$((4+4))")
    first.shows("still-alive-8")
    assert first_bash.is_running()
    _, sessions = daemon.request("GET", "/api/sessions")
    old = next(s for s in sessions if s["id"] == "dup")
    assert old["state"] == "exited" and old["meta"]["exit_reason"] == "replaced"
    assert get_session(daemon, "dup")["id"] == "dup-2"  # type: ignore[index]


def test_help_and_usage_errors_start_nothing(home: Path, tmp_path: Path) -> None:
    env = daemon_env(home)
    marker = tmp_path / "ran"
    res = run_cli("wrap", "--help", "--", "sh", "-c", f"touch {marker}", env=env)
    assert res.returncode == 0
    assert "usage: telepty wrap" in res.stdout and "--replace" in res.stdout
    res = run_cli("wrap", env=env)
    assert res.returncode != 0
    assert "no command given" in res.stderr
    res = run_cli("wrap", "--id", "bad id!", "--", "sh", "-c", f"touch {marker}", env=env)
    assert res.returncode != 0 and "--id" in res.stderr
    assert not marker.exists()


def test_missing_command_is_reported(home: Path) -> None:
    res = run_cli("wrap", "--", "definitely-not-a-command-xyz", env=daemon_env(home))
    assert res.returncode == 127
    assert res.stderr.strip() == "telepty: cannot start 'definitely-not-a-command-xyz': " \
                                 "executable not found on PATH"


def test_wrap_works_without_a_terminal(home: Path) -> None:
    """Pipes in and out (CI, scripts): no raw mode to set, output and status still pass."""
    env = daemon_env(home, TELEPTY_PORT=str(closed_port()))
    script = "read line; echo got-$line; exit 3"
    res = run_cli("wrap", "--", "sh", "-c", script, env=env, input=b"piped\n")
    assert res.returncode == 3
    assert "got-piped" in res.stdout
    assert res.stderr == ""  # the unreachable daemon is never mentioned
