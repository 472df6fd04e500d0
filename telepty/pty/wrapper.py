"""``telepty wrap``: run an agent CLI in a PTY, transparently, and link it to the daemon.

The person typing must not be able to tell the wrapper is there: keystrokes go to the
child untouched (raw mode), output comes back unmodified, the window size follows the
real terminal, and the child's exit status becomes the wrapper's. Three parts, each its
own module:

- the person's terminal (:mod:`telepty.pty.user_terminal`): raw mode, non-blocking
  output with backpressure (a slow terminal pauses reading from the child, as a real
  terminal's flow control would), logs kept off the screen;
- the link to the daemon (:mod:`telepty.pty.daemon_link`): registration, the output
  mirror, heartbeats, reconnects, in the messages of :mod:`telepty.pty.wrap_protocol`;
- this wrapper, which starts the child, wires the two to it, answers the daemon's
  requests against the child's PTY (:class:`WrappedChild`), and puts the terminal's
  modes back on every way out (child exit, exception, SIGTERM, SIGHUP, SIGINT),
  because a shell left in raw mode is the worst thing a wrapper can do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field

from telepty.config import Config
from telepty.pty.daemon_link import DaemonLink, Endpoint, WrapTimings, live_holder
from telepty.pty.env import child_env
from telepty.pty.spawned import PtyClosedError, SpawnedPty
from telepty.pty.stdin_reader import StdinReader
from telepty.pty.user_terminal import (
    TerminalOutput,
    UserTerminal,
    quiet_loop_exceptions,
    setup_logging,
    write_stderr_line,
)
from telepty.pty.wrap_protocol import PROTOCOL, Heartbeat, Hello, Paste, Request, Result
from telepty.session_token import SESSION_ID_ENV, SESSION_TOKEN_ENV, new_session_token, token_sha256
from telepty.tmux.env import TmuxEnv

__all__ = ["WrapOptions", "WrappedChild", "Wrapper", "run_wrap"]

log = logging.getLogger("telepty.wrap")

# While reading is paused, how often to check that the child has not exited: once it
# has, its last output must be read before SpawnedPty's drain grace closes the PTY.
PAUSED_EXIT_POLL_S = 0.05
# How long the terminal may take to show the child's last output before we give up.
FINAL_DRAIN_TIMEOUT_S = 5.0
# A wrapper only needs a little scrollback of its own (the daemon keeps the real one).
CHILD_SCROLLBACK_BYTES = 64 * 1024
# SIGHUP → SIGKILL grace when the wrapper itself is told to stop.
TERMINATE_GRACE_S = 2.0


class WrappedChild:
    """The child as the daemon link sees it: requests carried out against its PTY, and
    its counters for the heartbeat. (Whether the child is quiet the daemon reads from
    the output mirrored to it.)"""

    def __init__(self, pty: SpawnedPty) -> None:
        self.pty = pty

    async def answer(self, request: Request) -> Result:
        """The result for one request (always answered, never raises)."""
        try:
            if isinstance(request, Paste):
                bracketed = self.pty.bracketed.enabled
                await self.pty.paste(request.data)  # the engine submits, separately
                return Result(id=request.id, ok=True, bracketed=bracketed)
            await self.pty.write(request.data)
            return Result(id=request.id, ok=True)
        except PtyClosedError as exc:
            return Result(id=request.id, ok=False, error="write_failed", detail=exc.detail)
        except Exception as exc:  # a request must never take the link down
            log.exception("request %r failed", request.TYPE)
            return Result(id=request.id, ok=False, error="internal", detail=str(exc))

    def heartbeat(self, bytes_mirrored: int) -> Heartbeat:
        activity = self.pty.activity
        return Heartbeat(
            bytes_out=activity.bytes_out, bytes_mirrored=bytes_mirrored, bytes_in=activity.bytes_in,
            idle_ms=int(activity.idle_seconds() * 1000), bracketed_paste=self.pty.bracketed.enabled,
        )


@dataclass
class WrapOptions:
    argv: list[str]
    session_id: str | None = None
    replace: bool = False
    agent: str | None = None
    timings: WrapTimings = field(default_factory=WrapTimings)


class Wrapper:
    """One ``telepty wrap`` run: the child, the person's terminal, and the link."""

    def __init__(self, opts: WrapOptions, env: Mapping[str, str], endpoint: Endpoint) -> None:
        self.opts = opts
        self.env = env
        self.endpoint = endpoint
        self.terminal = UserTerminal()
        self.pty: SpawnedPty | None = None
        self.link: DaemonLink | None = None
        self.output: TerminalOutput | None = None
        self._stop_signal: int | None = None
        self._stop = asyncio.Event()
        self.stdin = StdinReader(self.terminal.stdin_fd, on_eof=self._on_stdin_eof)
        self._paused_timer: asyncio.TimerHandle | None = None
        self.session_token = ""

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(quiet_loop_exceptions)
        opts = self.opts
        if opts.session_id and not opts.replace:
            holder = await live_holder(self.endpoint, opts.session_id)
            if holder is not None:
                write_stderr_line(
                    f"telepty: session {opts.session_id!r} is already live "
                    f"(id {holder.get('id')}, pid {holder.get('pid')}); use --replace to take it over\n"
                )
                return 1
        # The child's identity exists before the child does: the token is made here and
        # only its hash goes to the daemon (in every hello), so it is in the child's
        # environment from its first instruction whether or not the daemon is up yet.
        self.session_token = new_session_token()
        extra = {SESSION_TOKEN_ENV: self.session_token}
        if opts.session_id:
            extra[SESSION_ID_ENV] = opts.session_id
        cols, rows = self.terminal.size()
        cwd = os.getcwd()
        try:
            self.pty = await SpawnedPty.start(
                opts.argv, cwd=cwd, env=child_env(self.env, extra), cols=cols, rows=rows,
                scrollback_bytes=CHILD_SCROLLBACK_BYTES,
            )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            write_stderr_line(f"telepty: cannot start {opts.argv[0]!r}: {reason}\n")
            is_missing = isinstance(exc, FileNotFoundError)
            return 127 if is_missing else 126
        log.info("started pid %d: %s", self.pty.pid, opts.argv)
        try:
            return await self._supervise(cwd)
        finally:
            self.terminal.restore()

    async def _supervise(self, cwd: str) -> int:
        loop = asyncio.get_running_loop()
        pty = self.pty
        assert pty is not None
        self.terminal.open_output()
        self.output = TerminalOutput(
            self.terminal.out_fd, on_pause=self._pause_child, on_resume=self._resume_child
        )
        tmux = TmuxEnv.of(self.env)
        hello = Hello(
            command=shlex.join(self.opts.argv), cwd=cwd, pid=pty.pid, session_id=self.opts.session_id,
            agent=self.opts.agent, tmux_pane=tmux.pane if tmux else None,
            tmux_socket=tmux.socket_path if tmux else None, replace=self.opts.replace,
            session_token_sha256=token_sha256(self.session_token), protocol=PROTOCOL,
        )
        self.link = DaemonLink(
            hello, WrappedChild(pty), endpoint=self.endpoint, timings=self.opts.timings,
            size=self.terminal.size, notice=self._notice,
        )
        pty.on_output.append(self._on_child_output)
        # Raw mode only once everything that can fail early has succeeded, and only
        # after the signal handlers that restore it are in place.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGWINCH, self._on_winch)
        link_task = asyncio.ensure_future(self.link.run())
        input_task = asyncio.ensure_future(self._input_pump())
        try:
            self.terminal.enter_raw()
            self._on_winch()  # the size may have changed while we were starting
            self.stdin.start()
            exited = asyncio.ensure_future(pty.exited.wait())
            stopping = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for t in (exited, stopping):
                t.cancel()
            if not pty.exited.is_set():
                log.info("signal %s: terminating the child", self._stop_signal)
                await pty.terminate(TERMINATE_GRACE_S)
            code = pty.exit_code
            if code is None:  # reaped by someone else: the status is unknowable
                code = 128 + self._stop_signal if self._stop_signal else 1
            self.stdin.stop()
            await self.output.drain(FINAL_DRAIN_TIMEOUT_S)
            self.terminal.restore()
            await self.link.report_exit(code)
            return code
        finally:
            self.stdin.stop()
            self.link.stop()
            input_task.cancel()
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGWINCH):
                loop.remove_signal_handler(sig)
            self.terminal.restore()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(link_task, 3.0)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await input_task
            if self._paused_timer is not None:
                self._paused_timer.cancel()
            self.output.close()
            self.terminal.close()
            if not pty.exited.is_set():
                pty.close()

    # -- output ---------------------------------------------------------------------

    def _on_child_output(self, data: bytes) -> None:
        assert self.output is not None and self.link is not None
        self.output.write(data)
        self.link.mirror(data)

    def _pause_child(self) -> None:
        assert self.pty is not None
        self.pty.pause_reading()
        self._schedule_paused_check()

    def _resume_child(self) -> None:
        assert self.pty is not None
        if self._paused_timer is not None:
            self._paused_timer.cancel()
            self._paused_timer = None
        self.pty.resume_reading()

    def _schedule_paused_check(self) -> None:
        self._paused_timer = asyncio.get_running_loop().call_later(PAUSED_EXIT_POLL_S, self._paused_check)

    def _paused_check(self) -> None:
        """A paused child that exited must be drained now, or its last output is lost."""
        self._paused_timer = None
        assert self.pty is not None and self.output is not None
        if not self.output.paused:
            return
        if not self.pty.running or self._stop.is_set():
            self.pty.resume_reading()
        else:
            self._schedule_paused_check()

    def _notice(self, text: str) -> None:
        """A line for the person, in order with the child's output when on the same screen."""
        if self.output is not None and self.terminal.stderr_is_terminal_output() and not self.output.broken:
            self.output.write(text.encode())
        else:
            write_stderr_line(text)

    # -- input ----------------------------------------------------------------------

    def _on_stdin_eof(self) -> None:
        # A pipe that ends is an end of input for the child too (as Ctrl-D would be).
        if not self.terminal.stdin_is_tty:
            self.stdin.queue.put_nowait(b"\x04")

    async def _input_pump(self) -> None:
        assert self.pty is not None
        while True:
            data = await self.stdin.queue.get()
            if data is None:
                return
            try:
                await self.pty.write(data)
            except PtyClosedError:
                return
            if not self._stop.is_set() and not self.pty.exited.is_set():
                self.stdin.resume_if_room()

    # -- signals --------------------------------------------------------------------

    def _on_winch(self) -> None:
        if self.pty is None:
            return
        cols, rows = self.terminal.size()
        self.pty.resize(cols, rows)

    def _on_stop_signal(self, sig: int) -> None:
        if self._stop_signal is not None:
            # Asked twice: do not wait for the child any longer.
            self.terminal.restore()
            os._exit(128 + sig)
        self._stop_signal = sig
        self._stop.set()


def run_wrap(opts: WrapOptions, config: Config, endpoint: Endpoint,
             env: Mapping[str, str] | None = None) -> int:
    """Entry point for the CLI: returns the exit status to leave with. ``endpoint`` finds
    this home's daemon (the CLI's way), asked again on every connection attempt."""
    setup_logging(config)
    wrapper = Wrapper(opts, os.environ if env is None else env, endpoint)
    try:
        return asyncio.run(wrapper.run())
    except Exception as exc:  # a bug must still end in one line, not a raw-mode traceback
        log.exception("wrapper failed")
        wrapper.terminal.restore()
        write_stderr_line(f"\r\ntelepty: wrap failed: {exc!r}\r\n")
        return 1
    finally:
        wrapper.terminal.close()
