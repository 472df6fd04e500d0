import os
import signal
import subprocess
import sys
import termios
import textwrap
from collections.abc import Iterator

import pytest

from telepty.pty.terminal import (
    get_winsize,
    install_restore_on_signals,
    raw_mode,
    set_winsize,
)


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def test_raw_mode_sets_raw_and_restores(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ICANON
    with raw_mode(slave) as saved:
        assert saved == before
        inside = termios.tcgetattr(slave)
        assert not inside[3] & (termios.ICANON | termios.ECHO | termios.ISIG)
    assert termios.tcgetattr(slave) == before


def test_raw_mode_restores_on_exception(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError, match="boom"), raw_mode(slave):
        assert termios.tcgetattr(slave) != before
        raise RuntimeError("boom")
    assert termios.tcgetattr(slave) == before


def test_raw_mode_restores_on_keyboard_interrupt(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    with pytest.raises(KeyboardInterrupt), raw_mode(slave):
        raise KeyboardInterrupt
    assert termios.tcgetattr(slave) == before


def test_raw_mode_on_a_pipe_is_a_no_op() -> None:
    r, w = os.pipe()
    try:
        with raw_mode(r) as saved:
            assert saved is None
    finally:
        os.close(r)
        os.close(w)


def test_winsize_round_trip(pty_pair: tuple[int, int]) -> None:
    master, slave = pty_pair
    set_winsize(master, 132, 43)
    assert get_winsize(slave) == (132, 43)
    assert get_winsize(master) == (132, 43)


def test_winsize_fallback_when_not_a_tty(pty_pair: tuple[int, int]) -> None:
    r, w = os.pipe()
    try:
        assert get_winsize(r) == (80, 24)
    finally:
        os.close(r)
        os.close(w)
    master, _ = pty_pair
    set_winsize(master, 0, 0)  # clamped to 1x1, still a valid size
    assert get_winsize(master) == (1, 1)


def test_signal_restore_chains_to_python_handler() -> None:
    calls: list[str] = []
    seen: list[int] = []
    old = signal.signal(signal.SIGHUP, lambda signum, frame: seen.append(signum))
    try:
        uninstall = install_restore_on_signals(lambda: calls.append("restore"))
        os.kill(os.getpid(), signal.SIGHUP)
        assert calls == ["restore"]
        assert seen == [signal.SIGHUP]
        uninstall()
        os.kill(os.getpid(), signal.SIGHUP)
        assert calls == ["restore"]  # our handler is gone, the previous one is back
        assert seen == [signal.SIGHUP, signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, old)


def test_signal_restore_leaves_ignored_signals_alone() -> None:
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        uninstall = install_restore_on_signals(lambda: None, (signal.SIGHUP,))
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        uninstall()
    finally:
        signal.signal(signal.SIGHUP, old)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_default_disposition_restores_then_dies_by_the_signal(tmp_path, sig: int) -> None:
    """In a child process: the terminal comes back *and* the exit status is the signal's."""
    marker = tmp_path / "restored"
    script = textwrap.dedent(
        f"""
        import os, signal, termios, sys
        from telepty.pty.terminal import install_restore_on_signals, raw_mode, restore_attrs
        master, slave = os.openpty()
        before = termios.tcgetattr(slave)
        with raw_mode(slave) as saved:
            def restore():
                restore_attrs(slave, saved)
                ok = termios.tcgetattr(slave) == before
                open({str(marker)!r}, "w").write("ok" if ok else "bad")
            install_restore_on_signals(restore)
            os.kill(os.getpid(), {int(sig)})
            sys.exit(3)  # not reached: the signal's default action ends the process
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], timeout=30, capture_output=True)
    assert proc.returncode == -sig, proc.stderr
    assert marker.read_text() == "ok"
