"""``POST /api/bus/publish`` answered without the generic HTTP stack.

Publishing is the one route called thousands of times a second, and on a small machine
the general-purpose request machinery (request objects, routing, middlewares, response
objects) costs more than logging the event durably does. So the daemon's listening
socket speaks through :class:`FastPublishProtocol`: each connection starts on this
lean path, which answers plain ``POST /api/bus/publish`` requests itself, and hands the
connection, at a request boundary and for the rest of its life, to aiohttp's own
handler the moment anything else arrives (another route, a WebSocket upgrade, a query
string, chunked or compressed bodies, an oversized body, HTTP/1.0, odd headers). What
it does answer, it answers exactly as the aiohttp route would: the same trust decision
(:func:`telepty.api.auth.decide`), the same body parsing and ingest
(:meth:`BusIngest.accept_then`), the same status codes and JSON, and the answer only
once the event has committed.

Framing is deliberately narrow, because a server that disagrees with a client about
where a request ends is how smuggling happens: one ``Content-Length`` of digits, no
``Transfer-Encoding``, ASCII headers in ``name: value`` form without folding or
duplicates. Everything else is aiohttp's to parse (and refuse).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.tcp_helpers import tcp_keepalive

from telepty.api.auth import TOKEN_HEADER, Decision, TrustPolicy, decide, presented_token
from telepty.api.body import parse_json_object
from telepty.bus.hub import HOLD_S
from telepty.bus.ingest import BusIngest, Receipt
from telepty.errors import ErrorCode, TeleptyError

log = logging.getLogger("telepty.api.bus")
auth_log = logging.getLogger("telepty.auth")

REQUEST_LINE = b"POST /api/bus/publish HTTP/1.1"
MAX_HEAD = 8190  # aiohttp's own line limit; a longer head is aiohttp's to refuse
MAX_HEADERS = 100
PAUSE_AT = 256 * 1024  # pipelined bytes buffered while an answer is pending
IDLE_CLOSE_S = 3630.0  # as aiohttp's keep-alive timeout
SWEEP_S = 60.0
# The request line, then header lines of a token name, a colon and visible ASCII,
# spaces or tabs: no folding, no bare CR or LF, no NUL, nothing outside ASCII.
_HEAD = re.compile(
    re.escape(REQUEST_LINE) + rb"(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*)*\Z"
)
# Any of these and the request is aiohttp's: they change framing, the body or the protocol.
_NOT_OURS = frozenset({b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"})
_TOKEN_KEY = TOKEN_HEADER.encode()


class FastPublish:
    """What every connection shares: the ingest, the trust policy, the body cap, the
    aiohttp server to hand connections to, and the open connections (for shutdown).

    It is also the bus's ``ExpectedPublishers``: a connection that came back within
    ``hold_s`` (the bus's) of its last answer is publishing in a tight loop, and once
    answered again it is expected back, so the bus may hold the next batch for it (see
    ``telepty.bus.hub``).
    """

    def __init__(self, server: web.Server, ingest: BusIngest, policy: TrustPolicy, max_body: int,
                 *, hold_s: float = HOLD_S) -> None:
        self.server = server
        self.hold_s = hold_s
        self.ingest = ingest
        self.policy = policy
        self.max_body = max_body
        self.connections: set[FastPublishProtocol] = set()
        self.expected: set[FastPublishProtocol] = set()
        self.stopping = False
        self._date_second = -1
        self._date = b""
        self._sweeper: asyncio.TimerHandle | None = None

    # -- ExpectedPublishers ------------------------------------------------------------

    def any_expected(self) -> bool:
        return bool(self.expected)

    def missed(self) -> None:
        for conn in self.expected:
            conn.quick = False
        self.expected.clear()

    def not_coming(self, conn: FastPublishProtocol) -> None:
        """``conn`` will not publish what it was expected to: it left, is aiohttp's now,
        or sent something refused. A batch held only for it goes now."""
        self.expected.discard(conn)
        if not self.expected:
            self.ingest.bus.expected_gone()

    def protocol(self) -> asyncio.Protocol:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)
        return FastPublishProtocol(self)

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = formatdate(now, usegmt=True).encode()
        return self._date

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        idle_since = time.monotonic() - IDLE_CLOSE_S
        for conn in list(self.connections):
            conn.close_if_idle(before=idle_since)
        self._sweeper = None if self.stopping else loop.call_later(SWEEP_S, self._sweep)

    def stop(self) -> None:
        """Close idle connections now and busy ones once they have answered (every
        answer from now on says ``Connection: close``)."""
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            conn.close_if_idle(before=float("inf"))


class FastPublishProtocol(asyncio.Protocol):
    """One connection: publishes answered here, anything else handed to aiohttp."""

    def __init__(self, shared: FastPublish) -> None:
        self.shared = shared
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.peer: str | None = None
        self.busy = False  # an answer is pending; later requests wait in ``buf``
        self.closing = False  # the pending request asked to close after its answer
        self.answered_at = float("-inf")  # (monotonic) when the last answer went out
        self.quick = False  # the last request came within hold_s of the answer before it
        self.paused = False
        self.eof = False
        self.last_active = 0.0
        self._auth: tuple[tuple[bytes | None, ...], Decision] | None = None
        # The last head parsed, and what it parsed to (the same bytes always do).
        self._head = b""
        self._head_parsed: tuple[dict[bytes, bytes], int, bool] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (not a subclass under every loop)
        tcp_keepalive(self.transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple | list) and peer else None
        self.last_active = time.monotonic()
        self.shared.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.shared.connections.discard(self)
        self.shared.not_coming(self)
        self.transport = None

    def eof_received(self) -> bool:
        # The peer may half-close after its last request: answer what is buffered first.
        self.eof = True
        if not self.busy:
            self._next()
        return True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.last_active = time.monotonic()
        if not self.busy:
            self._next()
        elif len(self.buf) > PAUSE_AT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    # -- requests --------------------------------------------------------------------

    def _next(self) -> None:
        """Handle every complete request in ``buf``, one at a time, in order."""
        while not self.busy and self.transport is not None:
            buf = self.buf
            end = buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
            if end < 0:
                if len(buf) > MAX_HEAD or (buf and not buf.startswith(REQUEST_LINE[:len(buf)])):
                    self._hand_over()  # not a publish (or not one we frame): aiohttp's
                elif self.eof:
                    self.transport.close()
                return
            head = bytes(buf[:end])
            if head == self._head:  # a client repeats its head, but for the length
                parsed = self._head_parsed
            else:
                parsed = self._head_parsed = self._parse_head(head)
                self._head = head
            if parsed is None:
                self._hand_over()
                return
            headers, length, close = parsed
            total = end + 4 + length
            if len(buf) < total:
                if self.eof:
                    self.transport.close()  # the body will never come
                return
            body = bytes(buf[end + 4:total])
            del buf[:total]
            self._publish(headers, body, close)
        if self.paused and not self.busy and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def _parse_head(self, head: bytes) -> tuple[dict[bytes, bytes], int, bool] | None:
        """``(headers, content length, close after)`` for a publish we frame, else None."""
        if not _HEAD.match(head):  # one pass over the whole head, in C
            return None
        lines = head.split(b"\r\n")
        if len(lines) > MAX_HEADERS + 1:
            return None
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.lower()
            if key in headers or key in _NOT_OURS:
                return None
            headers[key] = value.strip(b" \t")
        cl = headers.get(b"content-length")
        if cl is None or not cl.isdigit() or len(cl) > 15:
            return None
        length = int(cl)
        if length > self.shared.max_body:
            return None  # aiohttp answers 413 exactly as the route always did
        connection = {t.strip() for t in headers.get(b"connection", b"").lower().split(b",")}
        if b"upgrade" in connection:
            return None
        return headers, length, b"close" in connection

    def _decide(self, headers: dict[bytes, bytes]) -> Decision:
        """The trust decision, remembered for the connection: it depends only on the
        peer (fixed) and these four headers, which a client repeats on every request."""
        key = (headers.get(b"origin"), headers.get(b"host"), headers.get(_TOKEN_KEY),
               headers.get(b"authorization"))
        if self._auth is not None and self._auth[0] == key:
            return self._auth[1]
        origin, host, token, authorization = (None if v is None else v.decode() for v in key)
        decision = decide(
            self.shared.policy, peer_ip=self.peer, origin=origin, host_header=host,
            presented_token=presented_token(token, authorization, None),
        )
        self._auth = (key, decision)
        return decision

    def _publish(self, headers: dict[bytes, bytes], body: bytes, close: bool) -> None:
        shared = self.shared
        self.quick = time.monotonic() - self.answered_at < shared.hold_s
        shared.expected.discard(self)  # here: its event joins the batch (none is held for it)
        decision = self._decide(headers)
        if not decision.allowed:
            shared.not_coming(self)
            auth_log.warning("refused POST /api/bus/publish from %s: %s", self.peer, decision.code)
            self._answer(decision.status, {"error": decision.code, "detail": decision.detail}, close)
            return
        self.busy, self.closing = True, close
        try:
            shared.ingest.accept_then(parse_json_object(body), transport="http", answer=self)
        except TeleptyError as exc:
            self.busy = False
            shared.not_coming(self)
            self._answer(exc.status, exc.to_dict(), close)
        except Exception:
            self.busy = False
            shared.not_coming(self)
            log.exception("unhandled error method=POST path=/api/bus/publish")
            self._answer(500, _INTERNAL, close)

    # -- ReceiptWaiter: called once the event has committed (see ``CommitWaiter``) ----

    def receipt(self, receipt: Receipt) -> None:
        self.busy = False
        self._answer(202, receipt.to_public(), self.closing)
        self._next()

    def refused(self, exc: BaseException) -> None:
        self.busy = False
        if isinstance(exc, TeleptyError):
            self._answer(exc.status, exc.to_dict(), self.closing)
        else:
            log.error("unhandled error method=POST path=/api/bus/publish", exc_info=exc)
            self._answer(500, _INTERNAL, self.closing)
        self._next()

    def _answer(self, status: int, data: dict[str, Any], close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = orjson.dumps(data)
        close = close or self.shared.stopping
        transport.write(b"".join((
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            % (status, _PHRASES[status], len(body)),
            b"Date: ", self.shared.date(), b"\r\nServer: ", _SERVER,
            b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n",
            body,
        )))
        self.last_active = self.answered_at = time.monotonic()
        if close:
            transport.close()
            self.transport = None  # nothing after a closing answer is read or answered
            self.shared.not_coming(self)
        elif self.quick:
            self.shared.expected.add(self)

    # -- handing over and closing -------------------------------------------------------

    def _hand_over(self) -> None:
        """aiohttp takes the connection from here on, starting with what is buffered."""
        transport = self.transport
        assert transport is not None
        self.shared.connections.discard(self)
        self.shared.not_coming(self)
        self.transport = None
        if self.paused:
            transport.resume_reading()
        handler = self.shared.server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        data, self.buf = bytes(self.buf), bytearray()
        if data:
            handler.data_received(data)
        if self.eof and not transport.is_closing() and not handler.eof_received():
            transport.close()  # what the transport itself does when a protocol says so

    def close_if_idle(self, *, before: float) -> None:
        """Close unless an answer is pending; a half-sent request is dropped, as
        aiohttp drops one on its idle connections."""
        if self.transport is not None and not self.busy and self.last_active < before:
            self.transport.close()
            self.transport = None
            self.shared.not_coming(self)


_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}
_SERVER = SERVER_SOFTWARE.encode()
_INTERNAL = {"error": ErrorCode.INTERNAL_ERROR, "detail": "the daemon hit an unexpected error; see its log"}


class FastPublishSite(web.TCPSite):
    """A ``TCPSite`` whose connections start on the fast publish path."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, fast: FastPublish,
                 reuse_address: bool | None = None) -> None:
        super().__init__(runner, host, port, reuse_address=reuse_address)
        self.fast = fast

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.fast.protocol, self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        self.fast.stop()
        await super().stop()
