"""A child process in a PTY the daemon owns (``type: spawned`` sessions).

Everything here runs on the daemon's event loop, which serves every other session, so
nothing may block it:

- the fork/exec happens in a worker thread (``PtyProcess.spawn`` waits for the exec to
  succeed or fail before returning);
- the master fd is non-blocking, read with ``loop.add_reader`` and written in small
  chunks that wait for ``loop.add_writer`` when the child is not reading, so a 1 MiB
  prompt into a slow agent costs the loop nothing;
- the child is reaped through a pidfd (Linux) rather than a blocking ``waitpid``
  thread per session, which would exhaust the default executor with a few dozen
  sessions. Elsewhere the child is polled with ``WNOHANG``.

A session is "exited" once the child has been reaped *and* its output is drained
(EIO on the master). If a grandchild keeps the slave open after the child died, the
output is drained for a short grace and then the session is closed anyway.

Exit codes follow the shell convention: a normal exit gives its status, death by
signal N gives 128+N (SIGHUP → 129, SIGKILL → 137).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable, Mapping, Sequence

from ptyprocess import PtyProcess

from telepty.activity import OutputActivity
from telepty.errors import TeleptyError
from telepty.pty.bracketed import BRACKET_END, BracketedPasteTracker, frame_paste
from telepty.pty.scrollback import DEFAULT_SCROLLBACK_BYTES, Scrollback

log = logging.getLogger("telepty.pty")

READ_SIZE = 64 * 1024
# Small enough that a paste never monopolises the loop or the tty's input buffer.
WRITE_CHUNK = 4 * 1024
# Per-subscriber backlog, in chunks (a PTY read is usually at most ~4 KiB, so ~2 MiB).
SUBSCRIBER_MAX_CHUNKS = 512
# How long output is still drained after the child was reaped while something else
# (a background grandchild) holds the terminal open.
EXIT_DRAIN_GRACE_S = 0.25
# How long terminate() waits for a SIGKILLed child before giving up on it.
KILL_WAIT_S = 5.0
# Reap polling interval where there is no pidfd (non-Linux).
REAP_POLL_S = 0.1

OutputCallback = Callable[[bytes], None]


class PtyClosedError(TeleptyError):
    """The PTY's process has exited (or the PTY was closed): nothing can be written."""

    status = 409

    def __init__(self, detail: str = "the session's process has exited") -> None:
        super().__init__("pane_dead", detail)


class _DaemonPtyProcess(PtyProcess):
    """PtyProcess minus the sleeps: its close/terminate sleep 0.1 s each, on our loop.

    It also records itself in a thread-local so a spawn that fails *after* forking
    (exec error) can be cleaned up: ptyprocess raises without closing the master fd or
    reaping the child.
    """

    def __init__(self, pid: int, fd: int) -> None:
        super().__init__(pid, fd)
        self.delayafterclose = 0.0
        self.delayafterterminate = 0.0
        _spawn_local.created = self


_spawn_local = threading.local()


def _exit_code_from_status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + (os.WSTOPSIG(status) if os.WIFSTOPPED(status) else 0)


def _resolve_executable(command: str, env: Mapping[str, str]) -> str:
    """Find ``command`` on the *child's* PATH, failing fast with a clear error.

    ptyprocess would search the daemon's own PATH; the child's environment is the one
    the user meant.
    """
    if os.sep in command:
        if os.path.isfile(command) and os.access(command, os.X_OK):
            return command
        if not os.path.exists(command):
            raise FileNotFoundError(errno.ENOENT, "executable not found", command)
        raise PermissionError(errno.EACCES, "not an executable file", command)
    found = shutil.which(command, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, "executable not found on PATH", command)
    return found


def _child_preexec(cwd: str | None) -> Callable[[], None]:
    """Runs in the forked child before exec; exceptions are reported to the parent.

    chdir happens here rather than through ptyprocess's ``cwd``: ptyprocess does its
    chdir outside its error reporting, so a bad cwd would leave a forked copy of the
    daemon running and the parent waiting forever. Signal dispositions the daemon's
    Python set to "ignore" (SIGPIPE, …) survive exec, so they are put back to default
    as ``subprocess`` does with ``restore_signals``.
    """

    def preexec() -> None:
        for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
            sig = getattr(signal, name, None)
            if sig is not None:
                signal.signal(sig, signal.SIG_DFL)
        if cwd is not None:
            os.chdir(cwd)

    return preexec


def _check_exec_args(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Refuse, before forking, what ``execve`` would refuse with something else than OSError.

    ptyprocess reports only an OSError from the forked child; a NUL byte, text the
    filesystem encoding cannot hold (a lone surrogate) or an ``=`` in a variable name
    raises ValueError there instead, and the child (a copy of the daemon) would go on
    running while this thread waited on its error pipe forever.
    """
    for what, values in (("argument", argv), ("environment", [*env, *env.values()])):
        for value in values:
            if "\0" in value:
                raise ValueError(f"{what} {value!r} contains a NUL character")
            os.fsencode(value)  # UnicodeEncodeError (a ValueError) for unencodable text
    bad = [k for k in env if not k or "=" in k]
    if bad:
        raise ValueError(f"environment variable name {bad[0]!r} is empty or contains '='")


def _spawn_blocking(
    argv: list[str], cwd: str | None, env: dict[str, str], rows: int, cols: int
) -> _DaemonPtyProcess:
    """The blocking part of a spawn (filesystem look-ups, fork, wait for exec)."""
    _check_exec_args(argv, env)
    if cwd is not None and not os.path.isdir(cwd):
        raise FileNotFoundError(errno.ENOENT, "working directory does not exist", cwd)
    exe = _resolve_executable(argv[0], env)
    _spawn_local.created = None
    try:
        return _DaemonPtyProcess.spawn(
            [exe, *argv[1:]],
            cwd=None,
            env=env,
            echo=True,
            preexec_fn=_child_preexec(cwd),
            dimensions=(rows, cols),
        )
    except BaseException as exc:
        orphan: _DaemonPtyProcess | None = _spawn_local.created
        if orphan is not None:
            _discard_blocking(orphan)
        if type(exc) is OSError and exc.errno:
            # ptyprocess rebuilds exec errors as bare OSError; give them their real
            # subclass (FileNotFoundError, PermissionError, …) and name the program.
            raise OSError(exc.errno, os.strerror(exc.errno), argv[0]) from exc
        raise
    finally:
        _spawn_local.created = None


def _discard_blocking(proc: PtyProcess) -> None:
    """Kill, reap and close a child nobody will own. Worker-thread use only (blocks)."""
    with contextlib.suppress(OSError):
        os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(proc.pid, 0)
    proc.terminated = True
    with contextlib.suppress(OSError):
        proc.fileobj.close()
    proc.closed = True


class SpawnedPty:
    """A child process running in a daemon-owned PTY, with output fan-out."""

    def __init__(
        self,
        proc: _DaemonPtyProcess,
        argv: Sequence[str],
        *,
        scrollback_bytes: int = DEFAULT_SCROLLBACK_BYTES,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._proc = proc
        self._fd: int = proc.fd
        self.pid: int = proc.pid
        self.argv: tuple[str, ...] = tuple(argv)
        self.activity = OutputActivity()
        self.bracketed = BracketedPasteTracker()
        self.scrollback = Scrollback(scrollback_bytes)
        self.exit_code: int | None = None
        self.exited = asyncio.Event()
        self.on_output: list[OutputCallback] = []
        # dict as an ordered set: fan-out order is subscription order.
        self._subscribers: dict[asyncio.Queue[bytes | None], int] = {}
        self._write_lock = asyncio.Lock()
        self._writable: asyncio.Future[None] | None = None
        self._reading = False
        self._eof = False
        self._reaped = False
        self._fd_closed = False
        self._finished = False
        self._pidfd: int | None = None
        self._timer: asyncio.Handle | None = None

        os.set_blocking(self._fd, False)
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True
        self._watch_child()

    # ------------------------------------------------------------------ start

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str],
        cols: int = 120,
        rows: int = 40,
        scrollback_bytes: int = DEFAULT_SCROLLBACK_BYTES,
    ) -> SpawnedPty:
        """Fork/exec ``argv`` in a new PTY; raises OSError if it cannot be started.

        ``env`` is used exactly as given (build it with :func:`telepty.pty.env.child_env`).
        """
        argv = [str(a) for a in argv]
        if not argv or not argv[0]:
            raise ValueError("argv must name a program")
        env = dict(env)
        cols = max(1, min(int(cols), 0xFFFF))
        rows = max(1, min(int(rows), 0xFFFF))

        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, _spawn_blocking, argv, cwd, env, rows, cols)
        try:
            proc = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The fork may still complete; do not leave an unowned child behind.
            fut.add_done_callback(_discard_when_spawned)
            raise
        log.info("spawned pid %d: %s", proc.pid, argv)
        return cls(proc, argv, scrollback_bytes=scrollback_bytes)

    # ------------------------------------------------------------------ output

    def subscribe(
        self, *, replay: bool = False, max_chunks: int = SUBSCRIBER_MAX_CHUNKS
    ) -> asyncio.Queue[bytes | None]:
        """A queue of every output chunk from now on; ``None`` ends the stream.

        ``None`` comes when the process exits *or* when this subscriber fell more than
        ``max_chunks`` behind (check :attr:`exited` to tell which): a stalled client
        must neither hold back other subscribers nor make the daemon buffer without
        bound. With ``replay`` the scrollback is queued first, with no gap or overlap
        with live output.
        """
        q: asyncio.Queue[bytes | None] = asyncio.Queue()
        if replay:
            snap = self.scrollback.snapshot()
            if snap:
                q.put_nowait(snap)
        if self._finished:
            q.put_nowait(None)
            return q
        self._subscribers[q] = max(1, max_chunks)
        return q

    def unsubscribe(self, q: asyncio.Queue[bytes | None]) -> None:
        self._subscribers.pop(q, None)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # EIO is how Linux says "every slave fd is closed"; anything else is as fatal.
            if exc.errno != errno.EIO:
                log.warning("pid %d: reading PTY failed: %s", self.pid, exc)
            data = b""
        if not data:
            self._on_eof()
            return
        self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        self.activity.note_output(len(data))
        self.bracketed.feed(data)
        self.scrollback.append(data)
        for cb in tuple(self.on_output):
            try:
                cb(data)
            except Exception:
                log.exception("pid %d: on_output callback failed", self.pid)
        dropped: list[asyncio.Queue[bytes | None]] = []
        for q, limit in self._subscribers.items():
            if q.qsize() >= limit:
                q.put_nowait(None)
                dropped.append(q)
            else:
                q.put_nowait(data)
        for q in dropped:
            del self._subscribers[q]
            log.warning("pid %d: dropped a subscriber that fell behind", self.pid)

    # ------------------------------------------------------------------ input

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` to the child, waiting whenever it is not reading.

        Writes are serialised, so concurrent writers (a paste, an attached person
        typing) never interleave inside each other's bytes. Raises
        :class:`PtyClosedError` if the process has exited. Cancelling stops after the
        chunk in flight; what was already written stays written.
        """
        if self._fd_closed:
            raise PtyClosedError()
        async with self._write_lock:
            await self._write_locked(memoryview(data).cast("B"))

    async def paste(self, data: bytes) -> None:
        """Paste ``data`` as the app expects it (bracketed when it asked), and nothing
        else: submitting is the delivery's business (``telepty.delivery.confirm``).

        The paste holds the write lock, so nothing typed meanwhile lands inside it. If
        cancelled mid-paste, the closing marker is still sent, so the app is not left
        stuck in paste mode.
        """
        if self._fd_closed:
            raise PtyClosedError()
        bracketed = self.bracketed.enabled
        framed = frame_paste(data, bracketed)
        async with self._write_lock:
            progress = [0]
            try:
                await self._write_locked(memoryview(framed), progress)
            except asyncio.CancelledError:
                if bracketed and 0 < progress[0] < len(framed):
                    await self._close_interrupted_paste()
                raise

    async def _write_locked(self, view: memoryview, progress: list[int] | None = None) -> None:
        pos = 0
        total = len(view)
        while pos < total:
            # Checked before every write: a closed fd number may already be reused.
            if self._fd_closed:
                raise PtyClosedError()
            try:
                n = os.write(self._fd, view[pos : pos + WRITE_CHUNK])
            except (BlockingIOError, InterruptedError):
                await self._wait_writable()
                continue
            except OSError as exc:
                raise PtyClosedError(f"writing to the PTY failed: {exc}") from exc
            pos += n
            if progress is not None:
                progress[0] = pos
            self.activity.note_input(n)
            if pos < total:
                # Let the reader run between chunks: the child's echo must be drained
                # or it stops reading its input.
                await asyncio.sleep(0)

    async def _close_interrupted_paste(self) -> None:
        """Send the closing marker after a cancelled paste, bounded in time.

        Without it the app would treat everything typed afterwards (including the next
        prompt's Enter) as part of a paste that never ends.
        """
        try:
            await asyncio.wait_for(self._write_locked(memoryview(BRACKET_END)), 1.0)
        except (asyncio.CancelledError, TimeoutError, PtyClosedError) as exc:
            log.warning("pid %d: could not close an interrupted paste: %r", self.pid, exc)

    async def _wait_writable(self) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        self._writable = fut

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        self._loop.add_writer(self._fd, ready)
        try:
            await fut
        finally:
            self._writable = None
            if not self._fd_closed:
                self._loop.remove_writer(self._fd)

    def resize(self, cols: int, rows: int) -> None:
        """Set the window size; the child gets SIGWINCH. Ignored once closed."""
        if self._fd_closed:
            return
        cols = max(1, min(int(cols), 0xFFFF))
        rows = max(1, min(int(rows), 0xFFFF))
        try:
            self._proc.setwinsize(rows, cols)
        except OSError as exc:
            log.debug("pid %d: resize failed: %s", self.pid, exc)

    # ------------------------------------------------------------------ exit

    def _watch_child(self) -> None:
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._pidfd = pidfd_open(self.pid)
            except OSError as exc:
                log.debug("pidfd_open unavailable (%s); polling for exit", exc)
        if self._pidfd is not None:
            self._loop.add_reader(self._pidfd, self._on_child_event)
        else:
            self._timer = self._loop.call_later(REAP_POLL_S, self._poll_child)

    def _on_child_event(self) -> None:
        if self._try_reap():
            self._after_reap()

    def _poll_child(self) -> None:
        self._timer = None
        if self._try_reap():
            self._after_reap()
        elif not self._finished:
            self._timer = self._loop.call_later(REAP_POLL_S, self._poll_child)

    def _try_reap(self) -> bool:
        if self._reaped:
            return True
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            log.warning("pid %d was reaped by someone else; exit code unknown", self.pid)
            self._mark_reaped(None)
            return True
        if pid == 0:
            return False
        self._mark_reaped(status)
        return True

    def _mark_reaped(self, status: int | None) -> None:
        self._reaped = True
        self._stop_watching_child()
        proc = self._proc
        # Keep ptyprocess's view consistent so it never waitpid()s a reaped pid.
        proc.terminated = True
        if status is not None:
            self.exit_code = _exit_code_from_status(status)
            proc.status = status
            if os.WIFSIGNALED(status):
                proc.signalstatus, proc.exitstatus = os.WTERMSIG(status), None
            else:
                proc.exitstatus, proc.signalstatus = self.exit_code, None
        log.info("pid %d exited with %s", self.pid, self.exit_code)

    def _after_reap(self) -> None:
        if self._eof or self._fd_closed:
            self._finish()
        elif self._timer is None:
            self._timer = self._loop.call_later(EXIT_DRAIN_GRACE_S, self._finish)

    def _on_eof(self) -> None:
        self._eof = True
        self._stop_reading()
        if self._reaped:
            self._finish()
        elif self._pidfd is None and self._timer is None:
            self._timer = self._loop.call_soon(self._poll_child)

    def pause_reading(self) -> None:
        """Stop reading output, so a slow consumer slows the child (terminal flow control)."""
        if self._reading and not self._fd_closed:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self._fd_closed and not self._eof:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _stop_watching_child(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close_fd(self) -> None:
        if self._fd_closed:
            return
        self._stop_reading()
        if self._writable is not None:
            self._loop.remove_writer(self._fd)
        self._fd_closed = True
        with contextlib.suppress(OSError):
            self._proc.fileobj.close()  # owns and closes the master fd
        self._proc.closed = True

    def _finish(self) -> None:
        if self._finished:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._finished = True
        self._close_fd()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(PtyClosedError())
        for q in self._subscribers:
            q.put_nowait(None)
        self._subscribers.clear()
        self.exited.set()

    def _signal(self, sig: int) -> None:
        """Signal the child's process group, as a terminal hangup would.

        The child is a session leader (pgid == pid), so its pipeline and helpers get
        the signal too. Only while unreaped: until then the pid cannot be reused.
        """
        if self._reaped:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    async def terminate(self, grace: float = 2.0) -> int | None:
        """SIGHUP, then SIGKILL after ``grace`` seconds; returns the exit code.

        Safe to call repeatedly or after the process has exited.
        """
        if self.exited.is_set():
            return self.exit_code
        self._signal(signal.SIGHUP)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.exited.wait(), max(0.0, grace))
            return self.exit_code
        log.info("pid %d ignored SIGHUP for %.1fs; killing", self.pid, grace)
        self._signal(signal.SIGKILL)
        try:
            await asyncio.wait_for(self.exited.wait(), KILL_WAIT_S)
        except TimeoutError:
            log.warning("pid %d did not exit after SIGKILL", self.pid)
        return self.exit_code

    def close(self) -> None:
        """Release the PTY now: stop reading, close the master fd.

        A child still running loses its terminal (the kernel hangs it up) and is sent
        SIGKILL — use :meth:`terminate` first for a graceful stop. It is still reaped
        in the background and :attr:`exited` is set when it has been.
        """
        if self._finished:
            return
        self._close_fd()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(PtyClosedError("the PTY was closed"))
        if not self._reaped:
            self._signal(signal.SIGKILL)
            if self._try_reap():
                self._finish()
        else:
            self._finish()

    # ------------------------------------------------------------------ misc

    @property
    def closed(self) -> bool:
        return self._fd_closed

    @property
    def running(self) -> bool:
        return not self._reaped

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited({self.exit_code})"
        return f"SpawnedPty(pid={self.pid}, argv={list(self.argv)!r}, {state})"


def _discard_when_spawned(fut: asyncio.Future[_DaemonPtyProcess]) -> None:
    if fut.cancelled() or fut.exception() is not None:
        return
    proc = fut.result()
    log.info("spawn of pid %d was cancelled; discarding it", proc.pid)
    threading.Thread(target=_discard_blocking, args=(proc,), daemon=True).start()
