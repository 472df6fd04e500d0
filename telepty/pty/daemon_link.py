"""The wrapper's link to the daemon: ``WS /api/wrap``, kept up for as long as the child runs.

Everything the daemon needs happens here, on the side, and none of it may disturb the
person's terminal:

- the daemon may be down when the wrapper starts, restart while it runs, or never come
  back; the child runs regardless, and the link reconnects forever, silently, with the
  *full* hello every time (the Node.js telepty re-registered with its identity
  stripped), backing off with jitter so a dozen wrappers do not reconnect in lockstep;
- output produced while disconnected is kept (bounded) and flushed on connect, so the
  daemon's view of the screen has no hole where the early output was;
- every message is one of :mod:`telepty.pty.wrap_protocol`'s, the daemon's as well.

Where the daemon is comes from an injected ``endpoint`` (the CLI's way of finding
this home's daemon), asked again on every attempt: a restarted daemon may listen
elsewhere, and the token file may have appeared since.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from telepty.pty.wrap_protocol import (
    DAEMON_MESSAGES,
    Detach,
    Exit,
    Heartbeat,
    Hello,
    Message,
    Paste,
    Refused,
    Renamed,
    Request,
    Result,
    Welcome,
    WireError,
    Write,
    decode,
    encode,
)
from telepty.token_file import TOKEN_HEADER

__all__ = ["DaemonLink", "Endpoint", "LinkedChild", "OutputBacklog", "WrapConfigError", "WrapTimings",
           "backoff_delays", "live_holder", "read_daemon_frame", "ws_url"]

log = logging.getLogger("telepty.wrap")

# What the daemon gets of output produced while it could not be reached.
BACKLOG_BYTES = 1024 * 1024
# Largest binary frame: big enough to flush a full backlog in a few frames, small
# enough that a result frame never waits long behind output.
MIRROR_FRAME_BYTES = 64 * 1024
BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0
HEARTBEAT_S = 1.0
PREFLIGHT_TIMEOUT_S = 1.0
HANDSHAKE_TIMEOUT_S = 5.0
# After the child exits: how long to try reaching a daemon we are not connected to.
EXIT_REPORT_TIMEOUT_S = 2.0
# ... and how long a connected link may take to flush and report.
EXIT_FLUSH_TIMEOUT_S = 5.0

REPLACED_NOTICE = (
    "\r\ntelepty: this session was replaced by another registration; "
    "no longer connected to the daemon\r\n"
)

# (base http url, daemon token or None), found afresh on each call.
Endpoint = Callable[[], tuple[str, str | None]]


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


class LinkedChild(Protocol):
    """What the link needs of the wrapped program (:class:`telepty.pty.wrapper.WrappedChild`)."""

    async def answer(self, request: Request) -> Result:
        """Carry out a daemon request; always a result, never an exception."""
        ...

    def heartbeat(self, bytes_mirrored: int) -> Heartbeat:
        """The child's counters now (``bytes_mirrored``: what this connection sent)."""
        ...


def backoff_delays(start: float, cap: float, rng: random.Random | None = None) -> Iterator[float]:
    """Capped exponential backoff with jitter (each delay in [d/2, d]).

    Jitter keeps a dozen wrappers from reconnecting in lockstep after a daemon restart.
    """
    rng = rng or random.Random()
    delay = start
    while True:
        yield rng.uniform(delay / 2, delay)
        delay = min(cap, delay * 2)


def ws_url(http_url: str, path: str, token: str | None) -> str:
    """http(s)://host:port + path → ws(s)://host:port/path?token=…"""
    parts = urllib.parse.urlsplit(http_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = urllib.parse.urlencode({"token": token}) if token else ""
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))


class _Stop(Exception):
    """The link must not reconnect (detached, replaced, refused)."""


class DaemonLink:
    """The wrapper's end of ``WS /api/wrap``: register, mirror, heartbeat, answer.

    One writer task per connection sends everything, so the backlog flush, live
    output, heartbeats and results go out in one well-defined order. ``hello`` is
    updated with what the daemon says (the id it assigned, a rename) and sent whole on
    every reconnect.
    """

    def __init__(
        self,
        hello: Hello,
        child: LinkedChild,
        *,
        endpoint: Endpoint,
        timings: WrapTimings,
        size: Callable[[], tuple[int, int]],
        notice: Callable[[str], None],
        backlog_bytes: int = BACKLOG_BYTES,
    ) -> None:
        self.hello = hello
        self.child = child
        self.endpoint = endpoint
        self.timings = timings
        self.size = size
        self.notice = notice
        self.backlog = OutputBacklog(backlog_bytes)
        self.connected = asyncio.Event()
        self.stopped = asyncio.Event()
        self.exit_reported = asyncio.Event()
        self.connections = 0
        self.bytes_mirrored = 0  # on the current connection
        self._exit_code: int | None = None
        self._exit_pending = False
        self._wake = asyncio.Event()
        self._control: deque[Message] = deque()
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
        base, token = await asyncio.to_thread(self.endpoint)
        url = ws_url(base, "/api/wrap", token)
        async with self._http.ws_connect(
            url, heartbeat=15.0, max_msg_size=64 * 1024 * 1024,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
        ) as ws:
            cols, rows = self.size()
            await ws.send_str(encode(dataclasses.replace(self.hello, cols=cols, rows=rows)))
            first = await ws.receive(timeout=HANDSHAKE_TIMEOUT_S)
            if first.type is not aiohttp.WSMsgType.TEXT:
                log.info("daemon closed before welcoming us (%s)", first.type)
                return False
            try:
                reply = decode(first.data, DAEMON_MESSAGES)
            except WireError as exc:
                log.warning("unreadable first frame from the daemon: %s", exc.detail)
                return False
            if isinstance(reply, Refused):
                self._refused(reply)
                return False
            if not isinstance(reply, Welcome):
                log.warning("unexpected first frame from the daemon: %r", reply)
                return False
            self._welcomed(reply)
            try:
                await self._serve(ws)
            finally:
                self.connected.clear()
            return True

    def _refused(self, reply: Refused) -> None:
        log.warning("daemon refused registration: %s %s", reply.error, reply.detail)
        if reply.error == "session_exists":
            name = self.hello.session_id or "?"
            self.notice(
                f"\r\ntelepty: session {name!r} is already live ({_holder(reply.detail)}); "
                "no longer connected to the daemon\r\n"
            )
            raise _Stop()

    def _welcomed(self, reply: Welcome) -> None:
        if self.hello.session_id != reply.session_id:
            log.info("registered as %s", reply.session_id)
        # A reconnect is the same owner coming back: never a takeover again.
        self.hello = dataclasses.replace(self.hello, session_id=reply.session_id, replace=False)
        self.connections += 1
        self.bytes_mirrored = 0
        self._generation += 1
        self._control.clear()
        self.connected.set()
        log.info("connected to the daemon as %s (connection %d, %d bytes to flush)",
                 reply.session_id, self.connections, len(self.backlog))

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
                    self._on_text(msg.data, generation)
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

    def _on_text(self, text: str, generation: int) -> None:
        msg = read_daemon_frame(text)
        if isinstance(msg, Result):
            self._reply(msg, generation)
        elif isinstance(msg, Detach):
            log.info("daemon detached us: %s", msg.reason)
            if msg.reason == "replaced":
                self.notice(REPLACED_NOTICE)
            self.stop()
        elif isinstance(msg, Renamed):
            if msg.session_id:
                log.info("renamed to %s", msg.session_id)
                self.hello = dataclasses.replace(self.hello, session_id=msg.session_id)
        elif isinstance(msg, Paste | Write):
            task = asyncio.ensure_future(self._answer(msg, generation))
            self._request_tasks.add(task)
            task.add_done_callback(self._request_tasks.discard)
        elif msg is not None:
            log.debug("ignoring daemon frame %r", msg.TYPE)

    async def _answer(self, request: Request, generation: int) -> None:
        self._reply(await self.child.answer(request), generation)

    def _reply(self, result: Result, generation: int) -> None:
        if generation == self._generation and self.connected.is_set():
            self._control.append(result)
            self._wake.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timings.heartbeat_s)
            self._control.append(self.child.heartbeat(self.bytes_mirrored))
            self._wake.set()

    async def _write_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            if self._control:
                await ws.send_str(encode(self._control.popleft()))
                continue
            if len(self.backlog):
                offset, frame = self.backlog.peek(MIRROR_FRAME_BYTES)
                await ws.send_bytes(frame)
                self.backlog.consume_to(offset + len(frame))
                self.bytes_mirrored += len(frame)
                continue
            if self._exit_pending:
                await ws.send_str(encode(Exit(code=self._exit_code)))
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


def read_daemon_frame(text: str) -> Message | None:
    """A text frame from the daemon as its message. A request that cannot be read becomes
    its failed :class:`Result` (the daemon waits for an answer to every id); anything
    else unreadable is None (ignored)."""
    try:
        return decode(text, DAEMON_MESSAGES)
    except WireError as exc:
        if exc.request_id is None:
            log.debug("ignoring daemon frame: %s", exc.detail)
            return None
        error = "unknown_request" if exc.unknown else "bad_request"
        return Result(id=exc.request_id, ok=False, error=error, detail=exc.detail)


def _holder(detail: str) -> str:
    """The "(id X, pid N)" part of the daemon's conflict detail, if it gave one."""
    start, end = detail.find("("), detail.find(")")
    if 0 <= start < end:
        return detail[start + 1 : end]
    return detail or "registered by another wrapper"


async def live_holder(
    endpoint: Endpoint, session_id: str, within_s: float = PREFLIGHT_TIMEOUT_S
) -> dict[str, Any] | None:
    """The live session already answering to ``session_id``, or None (also when the
    daemon cannot be reached within ``within_s``: then the command starts anyway).

    A lookup rather than a registration: the registration needs the child's pid,
    and the child must not start at all when the name is taken.
    """

    async def lookup() -> dict[str, Any] | None:
        base, token = await asyncio.to_thread(endpoint)
        headers = {"Accept": "application/json"}
        if token:
            headers[TOKEN_HEADER] = token
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
