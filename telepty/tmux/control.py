"""One persistent tmux control-mode client (``tmux -C``) per tmux server.

Forking a tmux client costs milliseconds per command; a line written to an attached
control client costs tens of microseconds. The quiet guard and the confirm loop
capture panes many times per delivery, so the hot path goes through here, and
``TmuxServer`` forks whenever this client cannot be used.

Protocol facts this relies on (tmux(1) "CONTROL MODE"):

- each command's output is framed by ``%begin TIME NUMBER FLAGS`` and a matching
  ``%end``/``%error`` line; notifications never appear inside a block;
- one input line may produce several blocks (``if-shell`` runs its chosen command as a
  separate item), so every request is followed by a sentinel ``display-message`` and
  the request is complete when the sentinel's block arrives;
- an empty input line detaches the client, so none is ever sent;
- input lines go through tmux's command parser, not a shell: arguments are sent in
  single quotes, which that parser takes literally, and anything that cannot be
  single-quoted (a quote, a newline, control bytes, non-ASCII) is refused here so the
  caller forks instead. Prompt text never comes here; it goes through ``load-buffer``.

The client attaches to an existing session with ``-f no-output,ignore-size`` so it
neither receives pane output nor changes window sizes. It never creates a session: a
hidden session would keep a user's tmux server alive after they closed everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger("telepty.tmux")

_COMMAND_NAME_RE = re.compile(r"^[a-z][a-z-]*$")
# Printable ASCII minus the single quote, plus the unit separator used in our formats.
_QUOTABLE_RE = re.compile(r"^[\x1f\x20-\x26\x28-\x7e]*$")
_STREAM_LIMIT = 64 * 1024 * 1024  # a joined capture line can be as long as a pasted prompt


class ControlUnavailable(Exception):
    """The control client could not run the command; ``sent`` says whether tmux may have.

    A command that was never written can always be forked instead. One that was written
    and then lost (client died, timed out) may already have run: repeating a paste or a
    submit key would deliver it twice, so only retry-safe commands are repeated.
    """

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.sent = sent


class ControlCommandError(Exception):
    """tmux ran the command and reported an error (a ``%error`` block)."""


def kill_process(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL a child without reaping it.

    ``Process.kill()`` polls first (``waitpid(WNOHANG)``), which can reap a child that
    just exited before asyncio's child watcher does; the watcher then logs "Unknown
    child process" and reports status 255. ``os.kill`` on a not-yet-reaped child is
    harmless, and its pid cannot be reused until it is reaped.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)


def quotable(arg: str) -> bool:
    return bool(_QUOTABLE_RE.match(arg))


def format_command(args: Sequence[str]) -> str:
    """Render argv as one control-mode line, or raise ValueError if it cannot be safe."""
    if not args or not _COMMAND_NAME_RE.match(args[0]):
        raise ValueError(f"not a tmux command name: {args[0] if args else ''!r}")
    bad = [a for a in args[1:] if not quotable(a)]
    if bad:
        raise ValueError(f"argument cannot be sent over control mode: {bad[0]!r}")
    return " ".join([args[0], *(f"'{a}'" for a in args[1:])])


@dataclass(slots=True)
class _Block:
    ok: bool
    flags: str
    lines: list[str]


@dataclass(slots=True)
class _Request:
    sentinel: str
    future: asyncio.Future[list[_Block]]
    blocks: list[_Block] = field(default_factory=list)


def _frame_key(line: str) -> tuple[str, str, str] | None:
    parts = line.split(" ")
    if len(parts) < 4:
        return None
    return parts[1], parts[2], parts[3]


class ControlClient:
    """A ``tmux -C attach`` process, restarted on demand after it exits.

    ``command()`` serialises requests with a lock: each one is a handful of
    microseconds inside tmux, and strict ordering keeps the framing trivial.
    """

    def __init__(
        self,
        tmux_bin: str,
        socket_args: Sequence[str] = (),
        *,
        start_timeout_s: float = 5.0,
        restart_backoff_s: float = 1.0,
        max_backoff_s: float = 10.0,
    ) -> None:
        self._tmux_bin = tmux_bin
        self._socket_args = list(socket_args)
        self._start_timeout_s = start_timeout_s
        self._base_backoff_s = restart_backoff_s
        self._max_backoff_s = max_backoff_s
        self._backoff_s = restart_backoff_s
        self._next_start_at = 0.0
        self._lock = asyncio.Lock()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        # Set by the reader, synchronously, the moment it sees the stream end: the
        # reader task itself lingers a little longer while it reaps the process, and
        # a request queued in that window would wait for an answer that never comes.
        self._eof = True
        self._ready: asyncio.Future[_Block] | None = None
        self._requests: deque[_Request] = deque()
        self._token = secrets.token_hex(6)
        self._seq = 0
        self._closed = False
        self.session_id: str | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return (
            self._proc is not None
            and self._proc.returncode is None
            and not self._eof
            and self._reader is not None
            and not self._reader.done()
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    async def command(self, args: Sequence[str], *, timeout_s: float = 5.0) -> str:
        """Run one tmux command; return its output lines joined with newlines."""
        try:
            line = format_command(args)
        except ValueError as e:
            raise ControlUnavailable(str(e), sent=False) from None
        async with self._lock:
            await self._ensure_started()
            proc = self._proc
            assert proc is not None and proc.stdin is not None
            self._seq += 1
            sentinel = f"telepty-sync-{self._token}-{self._seq}"
            req = _Request(sentinel, asyncio.get_running_loop().create_future())
            self._requests.append(req)
            try:
                proc.stdin.write(f"{line}\ndisplay-message -p {sentinel}\n".encode())
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError, OSError) as e:
                with contextlib.suppress(ValueError):
                    self._requests.remove(req)
                await self._kill()
                raise ControlUnavailable(f"control client write failed: {e}", sent=False) from e
            try:
                blocks = await asyncio.wait_for(req.future, timeout_s)
            except TimeoutError:
                # The client or the server is wedged; whatever it does next cannot be
                # trusted to line up with our requests, so start over next time.
                log.warning("tmux control client timed out after %.1fs on %s", timeout_s, args[0])
                await self._kill()
                raise ControlUnavailable(f"timed out after {timeout_s}s", sent=True) from None
            # Cancellation leaves `req` queued: its blocks are still consumed in order
            # when they arrive, so the next request's output is not mixed up with them.
        errors = [b for b in blocks if not b.ok]
        if errors:
            raise ControlCommandError("\n".join(errors[0].lines) or "tmux command failed")
        return "\n".join(line for b in blocks for line in b.lines)

    async def close(self) -> None:
        """Detach cleanly (EOF on stdin), then make sure the process is gone."""
        self._closed = True
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await asyncio.wait_for(proc.wait(), 1.0)
        await self._kill()

    async def _ensure_started(self) -> None:
        if self.running:
            return
        if self._closed:
            raise ControlUnavailable("control client closed", sent=False)
        if time.monotonic() < self._next_start_at:
            raise ControlUnavailable("control client restart backing off", sent=False)
        try:
            await self._start()
        except ControlUnavailable:
            self._next_start_at = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, self._max_backoff_s)
            raise
        self._backoff_s = self._base_backoff_s
        self._next_start_at = 0.0

    async def _pick_session(self) -> str | None:
        argv = [self._tmux_bin, *self._socket_args, "list-sessions", "-F", "#{session_id}"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as e:
            raise ControlUnavailable(f"cannot run {self._tmux_bin}: {e}", sent=False) from e
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self._start_timeout_s)
        except BaseException:
            kill_process(proc)
            await proc.wait()
            raise
        if proc.returncode != 0:
            return None
        ids = out.decode("utf-8", "replace").split()
        return ids[0] if ids else None

    async def _start(self) -> None:
        await self._kill()
        try:
            session_id = await self._pick_session()
        except TimeoutError:
            raise ControlUnavailable("list-sessions timed out", sent=False) from None
        if session_id is None:
            raise ControlUnavailable("no tmux session to attach a control client to", sent=False)
        argv = [
            self._tmux_bin,
            *self._socket_args,
            "-C",
            "attach-session",
            "-f",
            "no-output,ignore-size",
            "-t",
            session_id,
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                limit=_STREAM_LIMIT,
                # Keep the terminal's Ctrl-C (aimed at the daemon) away from the client;
                # it still exits on its own when our end of stdin closes.
                start_new_session=True,
            )
        except OSError as e:
            raise ControlUnavailable(f"cannot run {self._tmux_bin}: {e}", sent=False) from e
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[_Block] = loop.create_future()
        self._proc = proc
        self._ready = ready
        # Each process gets its own request queue, so a dying predecessor's reader
        # cannot fail or consume requests meant for this one.
        requests: deque[_Request] = deque()
        self._requests = requests
        self._eof = False
        self._reader = asyncio.create_task(self._read_loop(proc, ready, requests))
        try:
            first = await asyncio.wait_for(ready, self._start_timeout_s)
        except (TimeoutError, ControlUnavailable) as e:
            await self._kill()
            raise ControlUnavailable(f"control client did not start: {e}", sent=False) from None
        if not first.ok:
            await self._kill()
            reason = "; ".join(first.lines) or "attach failed"
            raise ControlUnavailable(f"control attach failed: {reason}", sent=False)
        self.session_id = session_id
        self.starts += 1
        log.debug("tmux control client pid %s attached to %s", proc.pid, session_id)

    async def _read_loop(
        self,
        proc: asyncio.subprocess.Process,
        ready: asyncio.Future[_Block],
        requests: deque[_Request],
    ) -> None:
        assert proc.stdout is not None
        key: tuple[str, str] | None = None
        flags = ""
        lines: list[str] = []
        reason = "control client exited"
        try:
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace")
                if line.endswith("\n"):
                    line = line[:-1]
                if key is None:
                    if line.startswith("%begin "):
                        frame = _frame_key(line)
                        if frame is not None:
                            key, flags, lines = (frame[0], frame[1]), frame[2], []
                    # Anything else outside a block is a notification (%exit,
                    # %session-changed, %paste-buffer-changed, …): not ours.
                    continue
                if line.startswith(("%end ", "%error ")):
                    frame = _frame_key(line)
                    # Only the frame line that matches %begin closes the block, so pane
                    # text that happens to start with "%end" stays output.
                    if frame is not None and (frame[0], frame[1]) == key:
                        block = _Block(line.startswith("%end"), flags, lines)
                        self._on_block(block, ready, requests)
                        key = None
                        continue
                lines.append(line)
        except (ValueError, asyncio.LimitOverrunError, OSError) as e:
            reason = f"control client stream broken: {e}"
            log.warning("tmux %s", reason)
        finally:
            if self._proc is proc:
                self._eof = True
            err = ControlUnavailable(reason, sent=True)
            if not ready.done():
                ready.set_exception(ControlUnavailable(reason, sent=False))
            while requests:
                req = requests.popleft()
                if not req.future.done():
                    req.future.set_exception(err)
            # EOF normally means the client is exiting by itself; give it a moment to
            # be reaped by the child watcher before forcing it.
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), 1.0)
            except TimeoutError:
                kill_process(proc)
                with contextlib.suppress(Exception):
                    await proc.wait()

    def _on_block(
        self, block: _Block, ready: asyncio.Future[_Block], requests: deque[_Request]
    ) -> None:
        if not ready.done():
            ready.set_result(block)  # the attach-session command's own block
            return
        if block.flags != "1" or not requests:
            return  # not from our input (hooks and the like)
        req = requests[0]
        if block.ok and block.lines == [req.sentinel]:
            requests.popleft()
            if not req.future.done():
                req.future.set_result(req.blocks)
        else:
            req.blocks.append(block)

    async def _kill(self) -> None:
        proc, reader = self._proc, self._reader
        if proc is not None:
            kill_process(proc)
        if reader is not None and not reader.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(reader), 2.0)
        elif proc is not None and proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 2.0)
