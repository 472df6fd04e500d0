"""The user's own terminal, for the clients that run in it (`telepty wrap`, `attach`).

These clients put the terminal in raw mode so every keystroke (Ctrl-C, arrows, Esc)
reaches the agent untouched. A terminal left in raw mode after the client dies is the
worst failure a wrapper can have — the person's shell stops echoing and Enter stops
working — so restoring it is done on every exit path: normal return, exception, and
the termination signals a closing terminal window or `kill` send.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import struct
import termios
import tty
from collections.abc import Callable, Iterator
from types import FrameType

log = logging.getLogger("telepty.pty")

FALLBACK_COLS = 80
FALLBACK_ROWS = 24

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[list | None]:
    """Raw mode on ``fd`` for the duration of the block; the old attributes come back after.

    Yields the saved attributes (``None`` when ``fd`` is not a terminal, in which case
    nothing is changed: a wrapper fed from a pipe must still work). Restoring uses
    TCSADRAIN so output already written reaches the screen before the mode changes,
    and restoring is attempted even if the terminal went away meanwhile.
    """
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield None
        return
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield saved
    finally:
        restore_attrs(fd, saved)


def restore_attrs(fd: int, saved: list) -> None:
    """Put back attributes saved by :func:`raw_mode`; never raises (used on exit paths)."""
    try:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    except (termios.error, OSError) as exc:
        log.debug("could not restore terminal attributes on fd %d: %s", fd, exc)


def get_winsize(fd: int) -> tuple[int, int]:
    """(cols, rows) of the terminal on ``fd``; 80x24 when it is not a terminal.

    A zero size (some terminals and CI ptys report 0x0) is treated as unknown too,
    because a child told it has zero columns draws nothing.
    """
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return FALLBACK_COLS, FALLBACK_ROWS
    cols = size.columns or FALLBACK_COLS
    rows = size.lines or FALLBACK_ROWS
    return cols, rows


def set_winsize(fd: int, cols: int, rows: int) -> None:
    """Set the window size on a terminal fd (a PTY master: the child gets SIGWINCH)."""
    cols = max(1, min(int(cols), 0xFFFF))
    rows = max(1, min(int(rows), 0xFFFF))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def install_restore_on_signals(
    restore: Callable[[], None],
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP),
) -> Callable[[], None]:
    """Make SIGTERM/SIGHUP restore the terminal before the process goes away.

    Chaining, per signal, to whatever handler was installed before:

    - a Python handler: ``restore()`` runs, then the previous handler is called with
      the same arguments and decides what happens next (exit, cleanup, ignore);
    - ``SIG_DFL``: ``restore()`` runs, the default disposition is put back and the
      signal re-raised, so the process still dies *by that signal* and the parent sees
      the usual status (shell ``$?`` = 128+signal);
    - ``SIG_IGN``: left alone, nothing is installed — someone (e.g. ``nohup``) asked
      for the signal to be ignored, and restoring the terminal while carrying on in raw
      mode would be worse than either choice.

    ``restore`` may run more than once across signals, so it should be idempotent.
    Must be called from the main thread (a Python ``signal.signal`` rule). Returns a
    function that puts the previous handlers back.
    """
    previous: dict[int, _Handler] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            restore()
        except Exception:
            log.exception("terminal restore failed on signal %d", signum)
        prev = previous.get(signum, signal.SIG_DFL)
        if callable(prev):
            prev(signum, frame)
            return
        # SIG_DFL (or None: a handler installed from C that we cannot call).
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in signals:
        prev = signal.getsignal(sig)
        if prev == signal.SIG_IGN:
            continue
        previous[sig] = prev
        signal.signal(sig, handler)

    def uninstall() -> None:
        for sig, prev in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        previous.clear()

    return uninstall
