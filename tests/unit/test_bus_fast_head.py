"""Which request heads the fast publish path frames itself; anything else is aiohttp's."""

from __future__ import annotations

from typing import Any

import pytest

from telepty.api.bus_fast import FastPublish, FastPublishProtocol


def parse(head: bytes, max_body: int = 1000) -> Any:
    shared = FastPublish(server=None, ingest=None, policy=None, max_body=max_body)  # type: ignore[arg-type]
    return FastPublishProtocol(shared)._parse_head(head)


START = b"POST /api/bus/publish HTTP/1.1\r\nHost: localhost\r\n"


def test_a_plain_publish_is_framed_by_its_content_length() -> None:
    headers, length, close = parse(START + b"Content-Length: 12\r\nX-Telepty-Token:  abc ")
    assert (length, close) == (12, False)
    assert headers[b"x-telepty-token"] == b"abc"  # names lower-cased, values trimmed
    assert headers[b"host"] == b"localhost"


@pytest.mark.parametrize("connection,close", [(b"close", True), (b"keep-alive", False),
                                              (b"Keep-Alive, Close", True)])
def test_connection_close_is_noticed(connection: bytes, close: bool) -> None:
    assert parse(START + b"Content-Length: 0\r\nConnection: " + connection)[2] is close


@pytest.mark.parametrize("head", [
    b"POST /api/bus/publish?x=1 HTTP/1.1\r\nContent-Length: 2",  # another target
    b"POST /api/bus/publish HTTP/1.0\r\nContent-Length: 2",  # HTTP/1.0
    b"post /api/bus/publish HTTP/1.1\r\nContent-Length: 2",
    b"GET /api/bus/publish HTTP/1.1\r\nContent-Length: 2",
    START + b"Host: again\r\nContent-Length: 2",  # a duplicate header
    START + b"Content-Length: 2\r\nContent-Length: 2",
    START + b"Content-Length: 2\r\nTransfer-Encoding: chunked",
    START + b"Transfer-Encoding: chunked",
    START + b"Content-Length: 2\r\nContent-Encoding: gzip",
    START + b"Content-Length: 2\r\nExpect: 100-continue",
    START + b"Content-Length: 2\r\nUpgrade: websocket\r\nConnection: upgrade",
    START + b"Content-Length: 2\r\nConnection: Upgrade",
    START,  # no Content-Length at all
    START + b"Content-Length: +2",
    START + b"Content-Length: 0x2",
    START + b"Content-Length: 2 2",
    START + b"Content-Length: 1001",  # over the body cap: aiohttp's 413
    START + b"Content-Length: 2\r\n folded: value",  # obsolete line folding
    START + b"Content-Length: 2\r\nBad Name: x",
    START + b"Content-Length: 2\r\nno-colon",
    START + b"Content-Length: 2\r\nX: a\nb",  # a bare LF inside a line
    START + b"Content-Length: 2\r\nX: a\rb",
    START + b"Content-Length: 2\r\nX: a\x00b",
    START + b"Content-Length: 2\r\nX: caf\xc3\xa9",  # not ASCII
])
def test_anything_unusual_is_left_to_aiohttp(head: bytes) -> None:
    assert parse(head) is None


def test_too_many_headers_are_left_to_aiohttp() -> None:
    many = b"".join(b"X-%d: v\r\n" % i for i in range(101))
    assert parse(START + many + b"Content-Length: 2") is None
