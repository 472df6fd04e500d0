"""pid_alive against real processes: alive, zombie, gone; /proc and psutil alike."""

from __future__ import annotations

import os
import subprocess

import pytest

from telepty.sessions import liveness
from telepty.sessions.liveness import pid_alive
from telepty.sessions.procfs import HAS_PROC, read_stat
from tests.helpers import wait_until_sync


@pytest.fixture(params=["procfs", "psutil"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "psutil":
        monkeypatch.setattr(liveness, "HAS_PROC", False)
    elif not HAS_PROC:
        pytest.skip("no /proc here")
    return str(request.param)


def test_a_running_process_is_alive(way: str) -> None:
    assert pid_alive(os.getpid())


def test_a_zombie_is_gone_and_so_is_a_reaped_process(way: str) -> None:
    child = subprocess.Popen(["true"])
    wait_until_sync(lambda: read_stat(child.pid) is None or read_stat(child.pid)[0] == b"Z",  # type: ignore[index]
                    5, message="child exited")
    assert not pid_alive(child.pid)  # exited, not yet reaped: a zombie
    child.wait()
    assert not pid_alive(child.pid)


def test_nonsense_pids(way: str) -> None:
    assert not pid_alive(None)
    assert not pid_alive(0)
    assert not pid_alive(-1)
    assert not pid_alive(2**22 + 12345)


def test_read_stat_gives_state_and_parent() -> None:
    if not HAS_PROC:
        pytest.skip("no /proc here")
    state, ppid = read_stat(os.getpid())  # type: ignore[misc]
    assert state in (b"R", b"S") and ppid == os.getppid()
