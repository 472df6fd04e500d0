"""The person's terminal, for ``telepty wrap`` and ``telepty attach``: raw mode, output
with backpressure, and logs kept off it.

Both programs sit between a person and a program and must be invisible: keystrokes
pass untouched (raw mode), output is written without blocking the event loop and with
flow control (a slow terminal pauses the producer instead of growing memory without
bound), the terminal's modes are put back on every way out, and nothing is ever logged
to the screen: logs go to ``$TELEPTY_HOME/wrap-<pid>.log`` when TELEPTY_LOG_LEVEL asks
for INFO/DEBUG, and nowhere otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections import deque
from collections.abc import Callable
from typing import Any

from telepty.config import Config
from telepty.pty.terminal import get_winsize, raw_mode

__all__ = ["TerminalOutput", "UserTerminal", "quiet_loop_exceptions", "setup_logging", "write_stderr_line"]

log = logging.getLogger("telepty.wrap")

# Terminal backpressure: stop reading the producer above HIGH pending bytes, resume
# below LOW. Bounded memory even when the child prints faster than the terminal draws.
TERMINAL_HIGH_WATER = 256 * 1024
TERMINAL_LOW_WATER = 64 * 1024


def setup_logging(config: Config) -> None:
    """Send every log record of this process to a file, or nowhere.

    Configuring the root logger matters: with no handler at all, Python's "last
    resort" handler prints warnings (ours, aiohttp's, asyncio's) to stderr, which is
    the person's screen.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler = logging.NullHandler()
    if config.log_level in {"DEBUG", "INFO"}:
        try:
            config.home.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(config.home / f"wrap-{os.getpid()}.log", encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.setLevel(config.log_level)
        except OSError:
            handler = logging.NullHandler()
    root.addHandler(handler)
    logging.captureWarnings(True)


def quiet_loop_exceptions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An event loop exception handler for a program that owns the person's terminal.

    The default handler logs too, but through "asyncio" at ERROR with a traceback
    formatted for a console; this keeps it in our log and off the terminal either way.
    """
    log.error("event loop: %s", context.get("message"), exc_info=context.get("exception"))


class TerminalOutput:
    """Non-blocking writes to the person's terminal, with backpressure.

    ``on_pause``/``on_resume`` are called when pending output crosses the high/low
    water marks, so the producer (the child's PTY, an attach socket) can stop and
    restart; a real terminal's flow control works the same way. A terminal that went
    away (EIO/EPIPE) swallows everything from then on rather than failing the caller:
    the child must still be reaped and reported.
    """

    def __init__(
        self,
        fd: int,
        *,
        on_pause: Callable[[], None] | None = None,
        on_resume: Callable[[], None] | None = None,
        high_water: int = TERMINAL_HIGH_WATER,
        low_water: int = TERMINAL_LOW_WATER,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.fd = fd
        self.on_pause = on_pause
        self.on_resume = on_resume
        self.high_water = high_water
        self.low_water = low_water
        self._pending: deque[memoryview] = deque()
        self.pending_bytes = 0
        self.paused = False
        self.broken = False
        self._writer_on = False
        self._drained = asyncio.Event()
        self._drained.set()
        # A regular file cannot be polled; writing it never blocks for long anyway.
        try:
            self._pollable = not stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            self._pollable = False

    def write(self, data: bytes) -> None:
        if self.broken or not data:
            return
        view = memoryview(data)
        if not self._pending:
            view = self._write_now(view)
            if not view:
                return
        self._pending.append(view)
        self.pending_bytes += len(view)
        self._drained.clear()
        if not self._writer_on and not self.broken:
            self._start_writer()
        if not self.paused and self.pending_bytes > self.high_water:
            self.paused = True
            if self.on_pause is not None:
                self.on_pause()

    def _write_now(self, view: memoryview) -> memoryview:
        """Write what the terminal takes right now; returns the rest."""
        while view:
            try:
                n = os.write(self.fd, view)
            except (BlockingIOError, InterruptedError):
                return view
            except OSError as exc:
                self._break(exc)
                return memoryview(b"")
            view = view[n:]
        return view

    def _start_writer(self) -> None:
        if not self._pollable:
            # Only reached if a "non-blocking" regular-file write came back short.
            while self._pending and not self.broken:
                view = self._pending.popleft()
                self.pending_bytes -= len(view)
                rest = self._write_now(view)
                if rest:
                    self._pending.appendleft(rest)
                    self.pending_bytes += len(rest)
                    break
            self._after_progress()
            return
        try:
            self._loop.add_writer(self.fd, self._on_writable)
            self._writer_on = True
        except (OSError, ValueError) as exc:
            self._break(exc)

    def _on_writable(self) -> None:
        while self._pending:
            view = self._pending[0]
            rest = self._write_now(view)
            if self.broken:
                return
            self.pending_bytes -= len(view) - len(rest)
            if rest:
                self._pending[0] = rest
                break
            self._pending.popleft()
        self._after_progress()

    def _after_progress(self) -> None:
        if not self._pending:
            self._stop_writer()
            self._drained.set()
        if self.paused and self.pending_bytes <= self.low_water:
            self.paused = False
            if self.on_resume is not None:
                self.on_resume()

    def _stop_writer(self) -> None:
        if self._writer_on:
            self._writer_on = False
            with contextlib.suppress(OSError, ValueError):
                self._loop.remove_writer(self.fd)

    def _break(self, exc: OSError) -> None:
        log.info("terminal output failed (%s); dropping further output", exc)
        self.broken = True
        self._stop_writer()
        self._pending.clear()
        self.pending_bytes = 0
        self._drained.set()
        if self.paused:
            self.paused = False
            if self.on_resume is not None:
                self.on_resume()

    async def drain(self, within_s: float) -> bool:
        """Wait until everything written has reached the terminal (or it broke)."""
        try:
            await asyncio.wait_for(self._drained.wait(), within_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self._stop_writer()


class UserTerminal:
    """The person's terminal: raw mode on stdin, a private non-blocking stdout.

    O_NONBLOCK is a property of the open file description, which the person's shell
    shares with us through fds 0/1/2; setting it on fd 1 would leave the shell with a
    non-blocking terminal if we died. So when stdout is a terminal it is opened afresh
    (a new description, ours alone); only pipes get their flag changed, and it is put
    back on the way out.
    """

    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1, stderr_fd: int = 2) -> None:
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.stdin_is_tty = os.isatty(stdin_fd)
        self.stdout_is_tty = os.isatty(stdout_fd)
        self.out_fd = stdout_fd
        self._own_out_fd = False
        self._restore_blocking: bool | None = None
        self._raw: contextlib.ExitStack | None = None

    @property
    def size_fd(self) -> int:
        """The fd to ask for the window size (stdin first, as `script` does)."""
        return self.stdin_fd if self.stdin_is_tty else self.stdout_fd

    def size(self) -> tuple[int, int]:
        return get_winsize(self.size_fd)

    def open_output(self) -> int:
        if self.stdout_is_tty:
            try:
                name = os.ttyname(self.stdout_fd)
                self.out_fd = os.open(name, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
                self._own_out_fd = True
                return self.out_fd
            except OSError as exc:
                log.info("cannot reopen the terminal (%s); using stdout directly", exc)
        with contextlib.suppress(OSError):
            if not stat.S_ISREG(os.fstat(self.stdout_fd).st_mode):
                self._restore_blocking = os.get_blocking(self.stdout_fd)
                os.set_blocking(self.stdout_fd, False)
        self.out_fd = self.stdout_fd
        return self.out_fd

    def enter_raw(self) -> None:
        if not self.stdin_is_tty or self._raw is not None:
            return
        stack = contextlib.ExitStack()
        stack.enter_context(raw_mode(self.stdin_fd))
        self._raw = stack

    def restore(self) -> None:
        """Put the terminal's modes back as we found them. Idempotent; used on every
        exit path, including signal handlers."""
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()
        if self._restore_blocking is not None:
            with contextlib.suppress(OSError):
                os.set_blocking(self.stdout_fd, self._restore_blocking)
            self._restore_blocking = None

    def close(self) -> None:
        """Restore, and release our own file description of the terminal.

        Kept apart from :meth:`restore` because closing the fd while output may still
        be written to it would let the number be reused (by a socket) under the writer.
        """
        self.restore()
        if self._own_out_fd:
            self._own_out_fd = False
            with contextlib.suppress(OSError):
                os.close(self.out_fd)
            self.out_fd = self.stdout_fd

    def stderr_is_terminal_output(self) -> bool:
        """Does stderr show on the same terminal stdout draws on?"""
        try:
            return self.stdout_is_tty and os.path.samestat(os.fstat(self.stderr_fd), os.fstat(self.stdout_fd))
        except OSError:
            return False


def write_stderr_line(text: str) -> None:
    """One line to stderr, for the few things the person must be told."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode("utf-8", errors="replace"))
