"""``telepty wrap``: run an agent CLI in a PTY, transparently, and link it to the daemon.

The person typing must not be able to tell the wrapper is there: keystrokes go to the
child untouched (raw mode), output comes back unmodified, the window size follows the
real terminal, and the child's exit status becomes the wrapper's. Everything the
daemon needs happens on the side, over the control socket described in
:mod:`telepty.sessions.wrapper_link`, and none of it may disturb the terminal:

- the daemon may be down when the wrapper starts, restart while it runs, or never come
  back; the child runs regardless, and the link reconnects forever, silently, with the
  *full* metadata every time (the Node.js telepty re-registered with its identity
  stripped);
- output produced while disconnected is kept (bounded) and flushed on connect, so the
  daemon's view of the screen has no hole where the early output was;
- nothing is ever logged to the terminal: logs go to ``$TELEPTY_HOME/wrap-<pid>.log``
  when TELEPTY_LOG_LEVEL asks for INFO/DEBUG, and nowhere otherwise;
- the terminal's modes are put back on every way out (child exit, exception, SIGTERM,
  SIGHUP, SIGINT), because a shell left in raw mode is the worst thing a wrapper can do.

The event loop never blocks: stdin is read through ``add_reader``, the terminal is
written through a non-blocking file description with backpressure (a slow terminal
pauses reading from the child, as a real terminal's flow control would, instead of
growing memory without bound).

The pieces (:class:`TerminalOutput`, :class:`UserTerminal`, :class:`OutputBacklog`)
are shared with ``telepty attach``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import random
import shlex
import signal
import stat
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from telepty.api.auth import read_token
from telepty.cli.client import daemon_url
from telepty.config import Config
from telepty.pty.env import child_env
from telepty.pty.spawned import PtyClosedError, SpawnedPty
from telepty.pty.stdin_reader import StdinReader
from telepty.pty.terminal import get_winsize, raw_mode
from telepty.sessions.identity import new_session_token, token_sha256

log = logging.getLogger("telepty.wrap")

# What the daemon gets of output produced while it could not be reached.
BACKLOG_BYTES = 1024 * 1024
# Largest binary frame: big enough to flush a full backlog in a few frames, small
# enough that a result frame never waits long behind output.
MIRROR_FRAME_BYTES = 64 * 1024
# Terminal backpressure: stop reading the child above HIGH pending bytes, resume
# below LOW. Bounded memory even when the child prints faster than the terminal draws.
TERMINAL_HIGH_WATER = 256 * 1024
TERMINAL_LOW_WATER = 64 * 1024
# While reading is paused, how often to check that the child has not exited: once it
# has, its last output must be read before SpawnedPty's drain grace closes the PTY.
PAUSED_EXIT_POLL_S = 0.05
BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0
HEARTBEAT_S = 1.0
PREFLIGHT_TIMEOUT_S = 1.0
HANDSHAKE_TIMEOUT_S = 5.0
# After the child exits: how long to try reaching a daemon we are not connected to.
EXIT_REPORT_TIMEOUT_S = 2.0
# ... and how long a connected link may take to flush and report.
EXIT_FLUSH_TIMEOUT_S = 5.0
# How long the terminal may take to show the child's last output before we give up.
FINAL_DRAIN_TIMEOUT_S = 5.0
# A wrapper only needs a little scrollback of its own (the daemon keeps the real one).
CHILD_SCROLLBACK_BYTES = 64 * 1024
# SIGHUP → SIGKILL grace when the wrapper itself is told to stop.
TERMINATE_GRACE_S = 2.0

REPLACED_NOTICE = (
    "\r\ntelepty: this session was replaced by another registration; "
    "no longer connected to the daemon\r\n"
)


class WrapConfigError(ValueError):
    """A TELEPTY_WRAP_* variable holds something unusable."""


@dataclass(frozen=True)
class WrapTimings:
    """Link timings; tests shrink them through the environment."""

    heartbeat_s: float = HEARTBEAT_S
    backoff_max_s: float = BACKOFF_MAX_S

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WrapTimings:
        return cls(
            heartbeat_s=_positive_float(env, "TELEPTY_WRAP_HEARTBEAT", HEARTBEAT_S),
            backoff_max_s=_positive_float(env, "TELEPTY_WRAP_BACKOFF_MAX", BACKOFF_MAX_S),
        )


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise WrapConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise WrapConfigError(f"{name} must be positive, got {raw!r}")
    return value


# ----------------------------------------------------------------------------- logging


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


def _loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # The default handler logs too, but through "asyncio" at ERROR with a traceback
    # formatted for a console; keep it in our log and off the terminal either way.
    log.error("event loop: %s", context.get("message"), exc_info=context.get("exception"))


# ----------------------------------------------------------------------------- terminal


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


# ----------------------------------------------------------------------------- child flow control


def pause_reading(pty: SpawnedPty) -> None:
    """Stop reading the child's output, so a slow terminal slows the child down."""
    pty.pause_reading()


def resume_reading(pty: SpawnedPty) -> None:
    pty.resume_reading()


# ----------------------------------------------------------------------------- backlog


class OutputBacklog:
    """Output not yet mirrored to the daemon: bounded, oldest bytes dropped first.

    Bytes are addressed by absolute stream offset so a frame can be peeked, sent, and
    only then consumed: a frame lost with a dying socket is sent again on the next
    connection, even if the backlog overflowed meanwhile and dropped part of it.
    """

    def __init__(self, limit: int = BACKLOG_BYTES) -> None:
        if limit <= 0:
            raise ValueError("backlog limit must be positive")
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._start = 0  # absolute offset of the first byte held
        self.dropped = 0  # bytes lost to overflow, over the wrapper's lifetime

    def __len__(self) -> int:
        return self._size

    @property
    def end(self) -> int:
        return self._start + self._size

    def append(self, data: bytes) -> None:
        n = len(data)
        if not n:
            return
        if n >= self.limit:
            self._drop(self._size)
            skip = n - self.limit
            self._start += skip
            self.dropped += skip
            data = bytes(data[skip:])
            n = len(data)
        self._chunks.append(bytes(data))
        self._size += n
        if self._size > self.limit:
            self._drop(self._size - self.limit)

    def _drop(self, n: int) -> None:
        self.dropped += n
        self._consume(n)

    def _consume(self, n: int) -> None:
        self._start += n
        self._size -= n
        while n > 0:
            head = self._chunks[0]
            if len(head) <= n:
                self._chunks.popleft()
                n -= len(head)
            else:
                self._chunks[0] = head[n:]
                n = 0

    def peek(self, max_bytes: int) -> tuple[int, bytes]:
        """(absolute offset, up to ``max_bytes`` from the head) without consuming."""
        parts: list[bytes] = []
        got = 0
        for chunk in self._chunks:
            if got >= max_bytes:
                break
            take = chunk[: max_bytes - got]
            parts.append(take)
            got += len(take)
        return self._start, b"".join(parts)

    def consume_to(self, offset: int) -> None:
        """Forget every byte before absolute ``offset`` (those already dropped are gone)."""
        n = min(offset, self.end) - self._start
        if n > 0:
            self._consume(n)


def backoff_delays(start: float, cap: float, rng: random.Random | None = None) -> Any:
    """Capped exponential backoff with jitter (each delay in [d/2, d]).

    Jitter keeps a dozen wrappers from reconnecting in lockstep after a daemon restart.
    """
    rng = rng or random.Random()
    delay = start
    while True:
        yield rng.uniform(delay / 2, delay)
        delay = min(cap, delay * 2)


# ----------------------------------------------------------------------------- requests


class ChildRequests:
    """Answers the daemon's requests (paste, write) against the child's PTY.

    (Whether the child is quiet the daemon reads from the output mirrored to it.)
    """

    def __init__(self, pty: SpawnedPty) -> None:
        self.pty = pty

    async def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        """The result frame for one request (always answered, never raises)."""
        kind = msg.get("type")
        try:
            if kind == "paste":
                body = await self.paste(msg)
            elif kind == "write":
                body = await self.write(msg)
            else:
                body = {"ok": False, "error": "unknown_request", "detail": f"unknown request {kind!r}"}
        except _BadRequest as exc:
            body = {"ok": False, "error": "bad_request", "detail": str(exc)}
        except PtyClosedError as exc:
            body = {"ok": False, "error": "write_failed", "detail": exc.detail}
        except Exception as exc:  # a request must never take the link down
            log.exception("request %r failed", kind)
            body = {"ok": False, "error": "internal", "detail": str(exc)}
        return {"type": "result", "id": msg.get("id"), **body}

    async def paste(self, msg: dict[str, Any]) -> dict[str, Any]:
        data = _b64_field(msg, "data")
        submit = _b64_field(msg, "submit", default=b"\r")
        settle_ms = msg.get("settle_ms", 0)
        if not _is_number(settle_ms) or settle_ms < 0:
            raise _BadRequest("settle_ms must be a non-negative number")
        no_enter = bool(msg.get("no_enter", False))
        bracketed = self.pty.bracketed.enabled
        await self.pty.paste(data)
        if not no_enter and submit:  # the daemon always asks no_enter (it submits itself)
            await asyncio.sleep(settle_ms / 1000.0)
            await self.pty.write(submit)
        return {"ok": True, "bracketed": bracketed}

    async def write(self, msg: dict[str, Any]) -> dict[str, Any]:
        await self.pty.write(_b64_field(msg, "data"))
        return {"ok": True}


class _BadRequest(ValueError):
    pass


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _b64_field(msg: dict[str, Any], name: str, default: bytes | None = None) -> bytes:
    raw = msg.get(name)
    if raw is None and default is not None:
        return default
    if not isinstance(raw, str):
        raise _BadRequest(f"{name} must be a base64 string")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise _BadRequest(f"{name} is not valid base64") from None


# ----------------------------------------------------------------------------- the link


@dataclass
class HelloMeta:
    """Who this session is, sent whole on every (re)connect."""

    command: str
    cwd: str
    pid: int
    session_id: str | None = None
    agent: str | None = None
    tmux_pane: str | None = None
    tmux_socket: str | None = None
    replace: bool = False
    session_token_sha256: str | None = None  # the child's TELEPTY_SESSION_TOKEN, hashed

    def frame(self, cols: int, rows: int) -> dict[str, Any]:
        hello: dict[str, Any] = {
            "type": "hello",
            "command": self.command,
            "cwd": self.cwd,
            "pid": self.pid,
            "replace": self.replace,
            "cols": cols,
            "rows": rows,
        }
        for key in ("session_id", "agent", "tmux_pane", "tmux_socket", "session_token_sha256"):
            value = getattr(self, key)
            if value is not None:
                hello[key] = value
        return hello


def tmux_location(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(pane id, server socket path) when running inside tmux, from $TMUX_PANE/$TMUX.

    $TMUX is ``socket_path,server_pid,session_index``; the socket is what lets the
    daemon talk to the right tmux server when several run.
    """
    tmux = env.get("TMUX") or ""
    pane = env.get("TMUX_PANE") or None
    if not tmux:
        return None, None
    socket_path = tmux.split(",", 1)[0] or None
    return pane, socket_path


def ws_url(http_url: str, path: str, token: str | None) -> str:
    """http(s)://host:port + path → ws(s)://host:port/path?token=…"""
    parts = urllib.parse.urlsplit(http_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = urllib.parse.urlencode({"token": token}) if token else ""
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))


def daemon_endpoint(config: Config) -> tuple[str, str | None]:
    """(base http url, token), re-read on every attempt: a restarted daemon may listen
    elsewhere (``daemon.json``) and the token file may have appeared since."""
    return daemon_url(config), read_token(config.token_path)


class _Stop(Exception):
    """The link must not reconnect (detached, replaced, refused)."""


class DaemonLink:
    """The wrapper's end of ``WS /api/wrap``: register, mirror, heartbeat, answer.

    One writer task per connection sends everything, so the backlog flush, live
    output, heartbeats and results go out in one well-defined order.
    """

    def __init__(
        self,
        config: Config,
        meta: HelloMeta,
        requests: ChildRequests,
        *,
        timings: WrapTimings,
        size: Callable[[], tuple[int, int]],
        notice: Callable[[str], None],
        backlog_bytes: int = BACKLOG_BYTES,
        endpoint: Callable[[Config], tuple[str, str | None]] = daemon_endpoint,
    ) -> None:
        self.config = config
        self.meta = meta
        self.requests = requests
        self.pty = requests.pty
        self.timings = timings
        self.size = size
        self.notice = notice
        self.endpoint = endpoint
        self.backlog = OutputBacklog(backlog_bytes)
        self.connected = asyncio.Event()
        self.stopped = asyncio.Event()
        self.exit_reported = asyncio.Event()
        self.connections = 0
        self.bytes_mirrored = 0  # on the current connection
        self._exit_code: int | None = None
        self._exit_pending = False
        self._wake = asyncio.Event()
        self._control: deque[dict[str, Any]] = deque()
        self._generation = 0
        self._request_tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    # -- fed by the wrapper -------------------------------------------------------

    def mirror(self, data: bytes) -> None:
        if self.stopped.is_set():
            return
        self.backlog.append(data)
        self._wake.set()

    async def report_exit(self, code: int) -> bool:
        """Tell the daemon the child exited (after flushing its output); True if told."""
        if self.stopped.is_set():
            return False
        self._exit_code = code
        self._exit_pending = True
        self._wake.set()
        timeout = EXIT_FLUSH_TIMEOUT_S if self.connected.is_set() else EXIT_REPORT_TIMEOUT_S
        try:
            await asyncio.wait_for(self.exit_reported.wait(), timeout)
        except TimeoutError:
            log.info("could not report exit code %s to the daemon", code)
            return False
        return True

    def stop(self) -> None:
        self.stopped.set()
        self._wake.set()

    # -- the connection loop ------------------------------------------------------

    async def run(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=2.0))
        delays = backoff_delays(BACKOFF_START_S, self.timings.backoff_max_s)
        try:
            while not self.stopped.is_set() and not self.exit_reported.is_set():
                try:
                    welcomed = await self._session_once()
                except _Stop:
                    break
                except asyncio.CancelledError:
                    raise
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.debug("daemon unreachable: %r", exc)
                    welcomed = False
                except Exception:
                    log.exception("link failure")
                    welcomed = False
                if self.stopped.is_set() or self.exit_reported.is_set():
                    break
                if welcomed:
                    delays = backoff_delays(BACKOFF_START_S, self.timings.backoff_max_s)
                delay = next(delays)
                if self._exit_pending:
                    # The child is gone and the exit report has a short deadline.
                    await asyncio.sleep(min(delay, 0.2))
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_stop_or_exit(), delay)
        finally:
            self.stopped.set()
            await self._http.close()

    async def _wait_stop_or_exit(self) -> None:
        """Sleep between attempts, cut short when the child exits (report it now)."""
        while not self.stopped.is_set() and not self._exit_pending:
            self._wake.clear()
            await self._wake.wait()

    async def _session_once(self) -> bool:
        """One connection's life; True if the daemon welcomed us."""
        assert self._http is not None
        base, token = await asyncio.to_thread(self.endpoint, self.config)
        url = ws_url(base, "/api/wrap", token)
        async with self._http.ws_connect(
            url, heartbeat=15.0, max_msg_size=64 * 1024 * 1024,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
        ) as ws:
            cols, rows = self.size()
            await ws.send_str(orjson.dumps(self.meta.frame(cols, rows)).decode())
            first = await ws.receive(timeout=HANDSHAKE_TIMEOUT_S)
            if first.type is not aiohttp.WSMsgType.TEXT:
                log.info("daemon closed before welcoming us (%s)", first.type)
                return False
            reply = _json(first.data)
            if reply.get("type") == "error":
                self._refused(reply)
                return False
            if reply.get("type") != "welcome" or not isinstance(reply.get("session_id"), str):
                log.warning("unexpected first frame from the daemon: %r", reply)
                return False
            self._welcomed(reply)
            try:
                await self._serve(ws)
            finally:
                self.connected.clear()
            return True

    def _refused(self, reply: dict[str, Any]) -> None:
        code = reply.get("error")
        log.warning("daemon refused registration: %s %s", code, reply.get("detail"))
        if code == "session_exists":
            name = self.meta.session_id or "?"
            self.notice(
                f"\r\ntelepty: session {name!r} is already live ({_holder(reply)}); "
                "no longer connected to the daemon\r\n"
            )
            raise _Stop()

    def _welcomed(self, reply: dict[str, Any]) -> None:
        session_id = reply["session_id"]
        if self.meta.session_id != session_id:
            log.info("registered as %s", session_id)
        self.meta.session_id = session_id
        self.meta.replace = False  # a reconnect is the same owner coming back
        self.connections += 1
        self.bytes_mirrored = 0
        self._generation += 1
        self._control.clear()
        self.connected.set()
        log.info("connected to the daemon as %s (connection %d, %d bytes to flush)",
                 session_id, self.connections, len(self.backlog))

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        generation = self._generation
        writer = asyncio.ensure_future(self._write_loop(ws))
        beat = asyncio.ensure_future(self._heartbeat_loop())
        try:
            while True:
                reader = asyncio.ensure_future(ws.receive())
                done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
                if writer in done:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await reader
                    writer.result()  # raises what killed it
                    return  # exit reported, socket closed by us
                msg = reader.result()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._on_text(_json(msg.data), generation)
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                  aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    log.info("daemon connection closed (%s)", ws.close_code)
                    return
                if self.stopped.is_set():
                    return
        finally:
            for task in (writer, beat):
                task.cancel()
            for task in (writer, beat):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _on_text(self, msg: dict[str, Any], generation: int) -> None:
        kind = msg.get("type")
        if kind == "detach":
            reason = msg.get("reason")
            log.info("daemon detached us: %s", reason)
            if reason == "replaced":
                self.notice(REPLACED_NOTICE)
            self.stop()
            return
        if kind == "renamed":
            new_id = msg.get("session_id")
            if isinstance(new_id, str) and new_id:
                log.info("renamed to %s", new_id)
                self.meta.session_id = new_id  # every later hello registers the new id
            return
        if kind in {"paste", "write"} or "id" in msg:
            task = asyncio.ensure_future(self._answer(msg, generation))
            self._request_tasks.add(task)
            task.add_done_callback(self._request_tasks.discard)
            return
        log.debug("ignoring daemon frame %r", kind)

    async def _answer(self, msg: dict[str, Any], generation: int) -> None:
        result = await self.requests.handle(msg)
        if generation == self._generation and self.connected.is_set():
            self._control.append(result)
            self._wake.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timings.heartbeat_s)
            self._control.append(self.heartbeat())
            self._wake.set()

    def heartbeat(self) -> dict[str, Any]:
        activity = self.pty.activity
        return {
            "type": "heartbeat",
            "bytes_out": activity.bytes_out,
            "bytes_mirrored": self.bytes_mirrored,
            "bytes_in": activity.bytes_in,
            "idle_ms": int(activity.idle_seconds() * 1000),
            "bracketed_paste": self.pty.bracketed.enabled,
        }

    async def _write_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            if self._control:
                await ws.send_str(orjson.dumps(self._control.popleft()).decode())
                continue
            if len(self.backlog):
                offset, frame = self.backlog.peek(MIRROR_FRAME_BYTES)
                await ws.send_bytes(frame)
                self.backlog.consume_to(offset + len(frame))
                self.bytes_mirrored += len(frame)
                continue
            if self._exit_pending:
                await ws.send_str(orjson.dumps({"type": "exit", "code": self._exit_code}).decode())
                self.exit_reported.set()
                log.info("reported exit code %s", self._exit_code)
                with contextlib.suppress(Exception):
                    await ws.close()
                return
            if self.stopped.is_set():
                with contextlib.suppress(Exception):
                    await ws.close()
                return
            self._wake.clear()
            await self._wake.wait()


def _json(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _holder(reply: dict[str, Any]) -> str:
    """The "(id X, pid N)" part of the daemon's conflict detail, if it gave one."""
    detail = str(reply.get("detail") or "")
    start, end = detail.find("("), detail.find(")")
    if 0 <= start < end:
        return detail[start + 1 : end]
    return detail or "registered by another wrapper"


# ----------------------------------------------------------------------------- preflight


async def live_holder(
    config: Config, session_id: str, within_s: float = PREFLIGHT_TIMEOUT_S
) -> dict[str, Any] | None:
    """The live session already answering to ``session_id``, or None (also when the
    daemon cannot be reached within ``within_s``: then the command starts anyway).

    A lookup rather than a registration: the registration needs the child's pid,
    and the child must not start at all when the name is taken.
    """

    async def lookup() -> dict[str, Any] | None:
        base, token = await asyncio.to_thread(daemon_endpoint, config)
        headers = {"Accept": "application/json"}
        if token:
            headers["x-telepty-token"] = token
        url = f"{base}/api/sessions/{urllib.parse.quote(session_id, safe='')}"
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            if resp.status != 200:
                return None
            body = await resp.json(content_type=None)
        if isinstance(body, dict) and body.get("state") == "running":
            return body
        return None

    try:
        return await asyncio.wait_for(lookup(), within_s)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        log.info("daemon not reachable before start (%r); starting anyway", exc)
        return None


# ----------------------------------------------------------------------------- the wrapper


@dataclass
class WrapOptions:
    argv: list[str]
    session_id: str | None = None
    replace: bool = False
    agent: str | None = None
    timings: WrapTimings = field(default_factory=WrapTimings)


class Wrapper:
    """One ``telepty wrap`` run: the child, the person's terminal, and the link."""

    def __init__(self, opts: WrapOptions, config: Config, env: Mapping[str, str]) -> None:
        self.opts = opts
        self.config = config
        self.env = env
        self.terminal = UserTerminal()
        self.pty: SpawnedPty | None = None
        self.link: DaemonLink | None = None
        self.requests: ChildRequests | None = None
        self.output: TerminalOutput | None = None
        self._stop_signal: int | None = None
        self._stop = asyncio.Event()
        self.stdin = StdinReader(self.terminal.stdin_fd, on_eof=self._on_stdin_eof)
        self._paused_timer: asyncio.TimerHandle | None = None
        self.session_token = ""

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_loop_exception_handler)
        opts = self.opts
        if opts.session_id and not opts.replace:
            holder = await live_holder(self.config, opts.session_id)
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
        extra = {"TELEPTY_SESSION_TOKEN": self.session_token}
        if opts.session_id:
            extra["TELEPTY_SESSION_ID"] = opts.session_id
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
        self.requests = ChildRequests(pty)
        pane, socket_path = tmux_location(self.env)
        meta = HelloMeta(
            command=shlex.join(self.opts.argv), cwd=cwd, pid=pty.pid, session_id=self.opts.session_id,
            agent=self.opts.agent, tmux_pane=pane, tmux_socket=socket_path, replace=self.opts.replace,
            session_token_sha256=token_sha256(self.session_token),
        )
        self.link = DaemonLink(
            self.config, meta, self.requests, timings=self.opts.timings, size=self.terminal.size,
            notice=self._notice,
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
        assert self.output is not None and self.link is not None and self.requests is not None
        self.output.write(data)
        self.link.mirror(data)

    def _pause_child(self) -> None:
        assert self.pty is not None
        pause_reading(self.pty)
        self._schedule_paused_check()

    def _resume_child(self) -> None:
        assert self.pty is not None
        if self._paused_timer is not None:
            self._paused_timer.cancel()
            self._paused_timer = None
        resume_reading(self.pty)

    def _schedule_paused_check(self) -> None:
        self._paused_timer = asyncio.get_running_loop().call_later(PAUSED_EXIT_POLL_S, self._paused_check)

    def _paused_check(self) -> None:
        """A paused child that exited must be drained now, or its last output is lost."""
        self._paused_timer = None
        assert self.pty is not None and self.output is not None
        if not self.output.paused:
            return
        if not self.pty.running or self._stop.is_set():
            resume_reading(self.pty)
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


def run_wrap(opts: WrapOptions, config: Config, env: Mapping[str, str] | None = None) -> int:
    """Entry point for the CLI: returns the exit status to leave with."""
    setup_logging(config)
    wrapper = Wrapper(opts, config, os.environ if env is None else env)
    try:
        return asyncio.run(wrapper.run())
    except Exception as exc:  # a bug must still end in one line, not a raw-mode traceback
        log.exception("wrapper failed")
        wrapper.terminal.restore()
        write_stderr_line(f"\r\ntelepty: wrap failed: {exc!r}\r\n")
        return 1
    finally:
        wrapper.terminal.close()


__all__: Sequence[str] = (
    "ChildRequests",
    "DaemonLink",
    "HelloMeta",
    "OutputBacklog",
    "TerminalOutput",
    "UserTerminal",
    "WrapOptions",
    "WrapTimings",
    "Wrapper",
    "run_wrap",
    "setup_logging",
)
