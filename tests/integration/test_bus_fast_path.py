"""The fast publish path (telepty.api.bus_fast) on a real daemon, over raw sockets.

``POST /api/bus/publish`` is answered by the fast path; the same request with a query
string goes through the aiohttp route. Both must give the same status and the same
JSON, and a connection must move to aiohttp, at a request boundary, for anything else.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from unittest.mock import ANY
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from telepty.api import bus as bus_routes
from telepty.api.bus_fast import FastPublishProtocol, FastPublishSite
from telepty.api.keys import BUS
from telepty.config import Config
from telepty.daemon import create_app
from tests.helpers import DaemonProcess, count_commits, wait_until

FAST = "/api/bus/publish"
APP = "/api/bus/publish?via=app"  # aiohttp's route: the fast path takes no query strings


class Raw:
    """One keep-alive connection: bytes out, parsed HTTP/1.1 answers in."""

    def __init__(self, d: DaemonProcess) -> None:
        parts = urlsplit(d.url)
        self.host = f"{parts.hostname}:{parts.port}"
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def answer(self) -> tuple[int, dict[str, str], Any]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"connection closed mid-answer: {self.buf!r}"
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buf) < length:
            assert self._fill(), "connection closed mid-body"
        body, self.buf = self.buf[:length], self.buf[length:]
        if headers.get("content-type", "").startswith("application/json"):
            return status, headers, json.loads(body)
        return status, headers, body.decode(errors="replace")  # aiohttp's own refusals

    def closed_by_peer(self) -> bool:
        self.sock.settimeout(5)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def post(host: str, path: str, body: bytes, **headers: str) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def exchange(d: DaemonProcess, path: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], Any]:
    conn = Raw(d)
    try:
        conn.send(post(conn.host, path, body, **headers))
        return conn.answer()
    finally:
        conn.close()


BODIES = [
    pytest.param(b'{"kind": "fast.ok", "payload": {"n": 1}}', id="valid"),
    pytest.param(b'{"kind": "fast.ok", "message_id": "same-id-1"}', id="valid-with-id"),
    pytest.param(b"", id="empty"),
    pytest.param(b"{", id="invalid-json"),
    pytest.param(b"[1, 2]", id="array"),
    pytest.param(b'{"payload": {}}', id="no-kind"),
    pytest.param(b'{"kind": "inject_written"}', id="daemon-kind"),
    pytest.param(b'{"kind": "bus.ack"}', id="control-kind"),
    pytest.param(b'{"kind": "x", "payload": 3}', id="payload-not-object"),
    pytest.param(b'{"kind": "x", "message_id": "has space"}', id="bad-message-id"),
    pytest.param(b'{"kind": "turn_request", "target": "nobody"}', id="turn-request-without-prompt"),
    pytest.param("{\"kind\": \"caf\u00e9\"}".encode(), id="non-ascii-kind"),
]


@pytest.mark.parametrize("body", BODIES)
def test_the_fast_path_answers_exactly_as_the_app_route(daemon: DaemonProcess, body: bytes) -> None:
    fast = exchange(daemon, FAST, body)
    app = exchange(daemon, APP, body)
    (fs, fh, fj), (as_, ah, aj) = fast, app
    assert fs == as_
    assert fh["content-type"] == ah["content-type"] == "application/json"
    if fs == 202:
        assert fj["ok"] is True and aj["ok"] is True
        assert fj["kind"] == aj["kind"]
        assert fj["duplicate"] is False
        if b"message_id" in body:  # the second publish of an id is its duplicate, same seq
            assert (aj["duplicate"], aj["seq"], aj["message_id"]) == (True, fj["seq"], fj["message_id"])
        else:
            assert (aj["duplicate"], aj["seq"]) == (False, fj["seq"] + 1)
    else:
        assert fj == aj
        assert set(fj) == {"error", "detail"}


def test_accepted_events_are_in_the_log_with_their_seqs(daemon: DaemonProcess) -> None:
    conn = Raw(daemon)
    seqs = []
    for i in range(5):
        conn.send(post(conn.host, FAST, json.dumps({"kind": "fast.log", "payload": {"i": i}}).encode()))
        status, _, receipt = conn.answer()
        assert status == 202
        seqs.append(receipt["seq"])
    conn.close()
    status, page = daemon.request("GET", "/api/bus/events?since=0&kinds=fast.log")
    assert status == 200
    assert [(e["seq"], e["payload"]["i"]) for e in page["events"]] == list(zip(seqs, range(5), strict=True))


@pytest.mark.parametrize("headers,status,code", [
    ({"Origin": "https://evil.example.com"}, 403, "origin_forbidden"),
    ({"Host": "evil.example.com"}, 403, "host_forbidden"),
])
def test_trust_is_decided_as_on_every_route(
    daemon: DaemonProcess, headers: dict[str, str], status: int, code: str
) -> None:
    body = b'{"kind": "fast.refused"}'
    results = []
    for path in (FAST, APP):
        conn = Raw(daemon)
        head = f"POST {path} HTTP/1.1\r\n"
        fields = {"Host": conn.host, "Content-Length": str(len(body)), **headers}
        head += "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        conn.send(head.encode() + b"\r\n" + body)
        results.append(conn.answer())
        conn.close()
    (fs, _, fj), (as_, _, aj) = results
    assert (fs, fj["error"]) == (as_, aj["error"]) == (status, code)
    assert fj == aj
    _, page = daemon.request("GET", "/api/bus/events?since=0&kinds=fast.refused")
    assert page["events"] == []  # refused: nothing logged


def test_strict_mode_wants_the_token_on_the_fast_path_too(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory(TELEPTY_REQUIRE_TOKEN="1").start()
    body = b'{"kind": "fast.strict"}'
    status, _, refused = exchange(d, FAST, body)
    assert (status, refused["error"]) == (401, "token_required")
    assert exchange(d, FAST, body, **{"x-telepty-token": "wrong"})[0] == 401
    assert exchange(d, FAST, body, **{"x-telepty-token": d.token})[0] == 202
    assert exchange(d, FAST, body, Authorization=f"Bearer {d.token}")[0] == 202
    _, page = d.request("GET", "/api/bus/events?since=0&kinds=fast.strict",
                        headers={"x-telepty-token": d.token})
    assert len(page["events"]) == 2


def test_each_request_on_a_connection_is_judged_by_its_own_headers(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    """The fast path remembers the last head it parsed; a head that differs in one byte
    (here, a token of the same length) is parsed and judged afresh."""
    d = daemon_factory(TELEPTY_REQUIRE_TOKEN="1").start()
    wrong = ("0" if d.token[0] != "0" else "1") + d.token[1:]
    body = b'{"kind": "fast.judged"}'
    conn = Raw(d)
    statuses = []
    for token in (d.token, d.token, wrong, d.token, wrong):
        conn.send(post(conn.host, FAST, body, **{"x-telepty-token": token}))
        statuses.append(conn.answer()[0])
    conn.close()
    assert statuses == [202, 202, 401, 202, 401]
    _, page = d.request("GET", "/api/bus/events?since=0&kinds=fast.judged",
                        headers={"x-telepty-token": d.token})
    assert len(page["events"]) == 3


def test_a_connection_moves_to_the_app_for_any_other_request(daemon: DaemonProcess) -> None:
    conn = Raw(daemon)
    conn.send(post(conn.host, FAST, b'{"kind": "fast.switch", "payload": {"i": 0}}'))
    first = conn.answer()
    conn.send(f"GET /api/health HTTP/1.1\r\nHost: {conn.host}\r\n\r\n".encode())
    health = conn.answer()
    conn.send(post(conn.host, FAST, b'{"kind": "fast.switch", "payload": {"i": 1}}'))
    second = conn.answer()  # now the app's: same answer
    conn.close()
    assert (first[0], health[0], second[0]) == (202, 200, 202)
    assert health[2]["status"] == "ok"
    assert second[2]["seq"] == first[2]["seq"] + 1


def test_pipelined_requests_are_answered_in_order(daemon: DaemonProcess) -> None:
    conn = Raw(daemon)
    burst = b"".join(post(conn.host, FAST, json.dumps({"kind": "fast.pipe", "payload": {"i": i}}).encode())
                     for i in range(3))
    burst += f"GET /api/health HTTP/1.1\r\nHost: {conn.host}\r\n\r\n".encode()
    burst += post(conn.host, FAST, b'{"kind": "fast.pipe", "payload": {"i": 3}}')
    conn.send(burst)
    answers = [conn.answer() for _ in range(5)]
    conn.close()
    assert [a[0] for a in answers] == [202, 202, 202, 200, 202]
    seqs = [a[2]["seq"] for i, a in enumerate(answers) if i != 3]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    _, page = daemon.request("GET", "/api/bus/events?since=0&kinds=fast.pipe")
    assert [e["payload"]["i"] for e in page["events"]] == [0, 1, 2, 3]


def test_a_request_arriving_in_pieces_is_answered_once_whole(daemon: DaemonProcess) -> None:
    conn = Raw(daemon)
    data = post(conn.host, FAST, b'{"kind": "fast.pieces"}')
    for i in range(0, len(data), 7):
        conn.send(data[i:i + 7])
    status, _, receipt = conn.answer()
    conn.close()
    assert (status, receipt["kind"]) == (202, "fast.pieces")


def test_chunked_and_oversized_bodies_are_the_apps_to_handle(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory(TELEPTY_MAX_BODY_BYTES="2048").start()
    conn = Raw(d)
    body = b'{"kind": "fast.chunked"}'
    conn.send((f"POST {FAST} HTTP/1.1\r\nHost: {conn.host}\r\nTransfer-Encoding: chunked\r\n\r\n"
               f"{len(body):x}\r\n").encode() + body + b"\r\n0\r\n\r\n")
    status, _, receipt = conn.answer()
    conn.close()
    assert (status, receipt["kind"]) == (202, "fast.chunked")

    big = json.dumps({"kind": "fast.big", "payload": {"x": "y" * 4096}}).encode()
    fast, app = exchange(d, FAST, big), exchange(d, APP, big)
    assert fast[0] == app[0] == 413
    assert fast[2] == app[2]
    _, page = d.request("GET", "/api/bus/events?since=0&kinds=fast.big")
    assert page["events"] == []


def test_smuggling_shapes_are_refused_not_guessed(daemon: DaemonProcess) -> None:
    """Heads the fast path does not frame go to aiohttp, which refuses them whole."""
    host = Raw(daemon).host
    body = b'{"kind": "fast.smuggle"}'
    shapes = [
        f"POST {FAST} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        f"Content-Length: {len(body) + 5}\r\n\r\n",
        f"POST {FAST} HTTP/1.1\r\nHost: {host}\r\nContent-Length: +{len(body)}\r\n\r\n",
        f"POST {FAST} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        f"Transfer-Encoding: chunked\r\n\r\n",
        f"POST {FAST} HTTP/1.1\r\nHost: {host}\r\n Content-Length: {len(body)}\r\n\r\n",
    ]
    for head in shapes:
        conn = Raw(daemon)
        conn.send(head.encode() + body)
        status, _, _ = conn.answer()
        conn.close()
        assert status == 400, head
    _, page = daemon.request("GET", "/api/bus/events?since=0&kinds=fast.smuggle")
    assert page["events"] == []


def test_connection_close_is_honoured(daemon: DaemonProcess) -> None:
    conn = Raw(daemon)
    conn.send(post(conn.host, FAST, b'{"kind": "fast.close"}', Connection="close"))
    status, headers, _ = conn.answer()
    assert (status, headers.get("connection")) == (202, "close")
    assert conn.closed_by_peer()
    conn.close()


def test_nothing_after_a_closing_request_is_read(daemon: DaemonProcess) -> None:
    conn = Raw(daemon)
    conn.send(post(conn.host, FAST, b'{"kind": "fast.closed", "payload": {"i": 0}}', Connection="close")
              + post(conn.host, FAST, b'{"kind": "fast.closed", "payload": {"i": 1}}'))
    status, headers, _ = conn.answer()
    assert (status, headers.get("connection")) == (202, "close")
    assert conn.closed_by_peer() and conn.buf == b""  # one answer, then the end
    conn.close()
    _, page = daemon.request("GET", "/api/bus/events?since=0&kinds=fast.closed")
    assert [e["payload"]["i"] for e in page["events"]] == [0]


def test_a_half_closed_client_still_gets_its_answer(daemon: DaemonProcess) -> None:
    conn = Raw(daemon)
    conn.send(post(conn.host, FAST, b'{"kind": "fast.halfclose"}'))
    conn.sock.shutdown(socket.SHUT_WR)
    status, _, receipt = conn.answer()
    assert (status, receipt["kind"]) == (202, "fast.halfclose")
    assert conn.closed_by_peer()
    conn.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, Any]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    return int(head.split()[1]), json.loads(await reader.readexactly(length))


async def test_publishes_stay_on_the_fast_path_until_another_request_comes(config: Config) -> None:
    """The daemon's own site (as ``serve`` builds it), in process, to see which
    protocol holds the connection."""
    runner = web.AppRunner(create_app(config), handle_signals=False, access_log=None)
    await runner.setup()
    site = bus_routes.publish_site(runner, "127.0.0.1", 0)
    await site.start()
    assert isinstance(site, FastPublishSite)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        host = f"127.0.0.1:{site.port}"
        for i in range(3):
            writer.write(post(host, FAST, json.dumps({"kind": "fast.inproc", "payload": {"i": i}}).encode()))
            status, receipt = await read_answer(reader)
            assert (status, receipt["seq"]) == (202, i + 1)
        (conn,) = site.fast.connections
        assert isinstance(conn, FastPublishProtocol) and conn.transport is not None
        writer.write(f"GET /api/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert (await read_answer(reader))[0] == 200
        assert site.fast.connections == set()  # aiohttp's from here on
        writer.write(post(host, FAST, b'{"kind": "fast.inproc"}'))
        assert await read_answer(reader) == (202, {"ok": True, "seq": 4, "message_id": ANY,
                                                   "kind": "fast.inproc", "duplicate": False})
        writer.close()
    finally:
        await runner.cleanup()


def test_sigterm_with_an_idle_publish_connection_open_exits_cleanly(daemon: DaemonProcess) -> None:
    idle = Raw(daemon)
    idle.send(post(idle.host, FAST, b'{"kind": "fast.stop"}'))
    assert idle.answer()[0] == 202
    assert daemon.stop() == 0  # SIGTERM: a clean exit, not held up by the idle connection
    assert idle.closed_by_peer()
    idle.close()


async def test_publishers_in_lockstep_share_one_commit(config: Config) -> None:
    """Four connections publishing in a tight loop: once each has come back quickly,
    the bus holds a batch for whoever is still expected, and the last arrival commits
    all four at once. One that does not come back ends the hold (and is no longer
    waited for); one that closes ends it at once."""
    runner = web.AppRunner(create_app(config), handle_signals=False, access_log=None)
    await runner.setup()
    bus = runner.app[BUS]
    bus.hold_s = 3.0  # long enough that every return counts as quick, on any machine
    site = bus_routes.publish_site(runner, "127.0.0.1", 0)
    await site.start()
    assert isinstance(site, FastPublishSite)
    commits = count_commits(bus)
    host = f"127.0.0.1:{site.port}"
    conns = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(4)]

    def request(i: int) -> bytes:
        return post(host, FAST, json.dumps({"kind": "fast.lockstep", "payload": {"i": i}}).encode())

    async def cycle(which: list[int]) -> list[int]:
        for k in which:
            conns[k][1].write(request(k))
        return [(await read_answer(conns[k][0]))[1]["seq"] for k in which]

    try:
        for k in range(4):  # one at a time: nobody is expected yet, so nothing is held
            await cycle([k])
        assert commits == [1, 1, 1, 1]
        await cycle([0, 1, 2, 3])  # each came back within hold_s: all four are now expected
        commits.clear()
        for k in range(3):
            conns[k][1].write(request(k))
        await wait_until(lambda: len(bus._pending) == 3, timeout=10, message="three publishes held")
        assert commits == [] and site.fast.any_expected()
        conns[3][1].write(request(3))  # the last one expected: the batch commits with it
        seqs = [(await read_answer(conns[k][0]))[1]["seq"] for k in range(4)]
        assert commits == [4] and seqs == list(range(seqs[0], seqs[0] + 4))

        def expected() -> set[int]:  # which of ours the fast path expects back
            ports = {c.transport.get_extra_info("peername")[1] for c in site.fast.expected
                     if c.transport is not None}
            return {k for k, (_, w) in enumerate(conns) if w.get_extra_info("sockname")[1] in ports}

        commits.clear()
        bus.hold_s = 0.2
        assert await cycle([0, 1, 2])  # number 3 stays away: the hold runs out without it
        assert commits == [3] and expected() == {0, 1, 2}
        assert await cycle([0, 1, 2]) and commits == [3, 3]  # 3 is no longer waited for

        bus.hold_s = 60.0  # a hold only a departure can end within the test's deadline
        for k in (0, 1):
            conns[k][1].write(request(k))
        await wait_until(lambda: len(bus._pending) == 2, timeout=10, message="two publishes held")
        conns[2][1].close()  # the one they wait for leaves: nobody waits for a closed connection
        async with asyncio.timeout(10):
            assert [(await read_answer(conns[k][0]))[0] for k in (0, 1)] == [202, 202]
        assert commits[-1] == 2
    finally:
        for _, writer in conns:
            writer.close()
        await runner.cleanup()
