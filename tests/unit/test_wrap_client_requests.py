"""The wrapper's answers to daemon requests (as the daemon frames them), against real
children in real PTYs.

The paste target is a raw-mode reader that appends every byte it reads to a file, so
what the child received is compared byte for byte (raw mode: no echo, no CR/LF
translation — exactly what an agent TUI sees).
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from telepty.pty.daemon_link import read_daemon_frame
from telepty.pty.env import child_env
from telepty.pty.spawned import SpawnedPty
from telepty.pty.wrap_protocol import Paste, Result, Write
from telepty.pty.wrapper import WrappedChild
from tests.helpers import wait_until

READER = r"""
import os, sys, tty
tty.setraw(0)
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
if sys.argv[2] == "1":
    os.write(1, b"\x1b[?2004h")
os.write(1, b"ready\r\n")
while True:
    data = os.read(0, 65536)
    if not data:
        break
    os.write(out, data)
"""

CHATTER = r"""
import sys, time
while True:
    sys.stdout.write("x"); sys.stdout.flush(); time.sleep(0.005)
"""

class Child:
    """A started child with the WrappedChild answering for it."""

    def __init__(self, pty: SpawnedPty) -> None:
        self.pty = pty
        self.wrapped = WrappedChild(pty)
        self.output = bytearray()
        pty.on_output.append(self._seen)

    def _seen(self, data: bytes) -> None:
        self.output += data

    async def handle(self, frame: dict[str, object]) -> Result:
        """What the wrapper answers to this frame from the daemon."""
        msg = read_daemon_frame(orjson.dumps(frame).decode())
        if isinstance(msg, Result):  # unreadable: answered without touching the child
            return msg
        assert isinstance(msg, Paste | Write), msg
        return await self.wrapped.answer(msg)


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., object]]:
    started: list[SpawnedPty] = []

    async def make(*argv: str) -> Child:
        pty = await SpawnedPty.start(list(argv), cwd=None, env=child_env(os.environ), cols=80, rows=24)
        started.append(pty)
        return Child(pty)

    yield make
    for pty in started:
        await pty.terminate(0.5)
        pty.close()


async def reader(start, tmp_path: Path, bracketed: bool) -> tuple[Child, Path]:  # type: ignore[no-untyped-def]
    sink = tmp_path / "received"
    sink.touch()
    child = await start(sys.executable, "-c", READER, str(sink), "1" if bracketed else "0")
    await wait_until(lambda: b"ready" in child.output, message="the reader to start")
    assert child.pty.bracketed.enabled is bracketed
    return child, sink


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def received(sink: Path, expected: bytes) -> bytes:
    await wait_until(lambda: len(sink.read_bytes()) >= len(expected), message=f"{len(expected)} bytes")
    return sink.read_bytes()


PROMPT = "line one\nline two — ünïcødé ✓\ttab\n".encode()


async def test_paste_is_bracketed_when_the_app_asked(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    child, sink = await reader(start, tmp_path, bracketed=True)
    result = await child.handle({"type": "paste", "id": 7, "data": b64(PROMPT)})
    assert result == Result(id=7, ok=True, bracketed=True)
    # The paste is never submitted by the wrapper: the daemon writes the submit key itself.
    result = await child.handle({"type": "write", "id": 8, "data": b64(b"\r")})
    assert result == Result(id=8, ok=True)
    expected = b"\x1b[200~" + PROMPT + b"\x1b[201~\r"
    assert await received(sink, expected) == expected


async def test_a_paste_from_an_older_daemon_is_not_submitted(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    child, sink = await reader(start, tmp_path, bracketed=False)
    # Protocol 1's fields are not read (and so never submit): this daemon sent no_enter anyway.
    result = await child.handle({"type": "paste", "id": 1, "data": b64(b"draft"), "submit": b64(b"\r"),
                                 "settle_ms": 20, "no_enter": True})
    assert result == Result(id=1, ok=True, bracketed=False)
    assert await child.handle({"type": "write", "id": 2, "data": b64(b"!")}) == Result(id=2, ok=True)
    assert await received(sink, b"draft!") == b"draft!"


async def test_paste_plain_no_enter_and_write(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    child, sink = await reader(start, tmp_path, bracketed=False)
    # A prompt smuggling its own end marker must not end a paste early: markers are stripped.
    result = await child.handle({"type": "paste", "id": 1, "data": b64(b"abc\x1b[201~def")})
    assert result == Result(id=1, ok=True, bracketed=False)
    result = await child.handle({"type": "write", "id": 2, "data": b64(b"\x1b[B\r")})
    assert result == Result(id=2, ok=True)
    expected = b"abcdef\x1b[B\r"
    assert await received(sink, expected) == expected


async def test_large_paste_arrives_whole(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    child, sink = await reader(start, tmp_path, bracketed=True)
    big = bytes(range(32, 127)) * 11_000  # ~1 MiB of printable bytes
    result = await child.handle({"type": "paste", "id": 3, "data": b64(big)})
    assert result.ok is True
    expected = b"\x1b[200~" + big + b"\x1b[201~"
    got = await received(sink, expected)
    assert len(got) == len(expected) and got == expected


async def test_requests_to_an_exited_child_fail_cleanly(start) -> None:  # type: ignore[no-untyped-def]
    child = await start("true")
    await wait_until(child.pty.exited.is_set, message="the child to exit")
    result = await child.handle({"type": "paste", "id": 4, "data": b64(b"hi")})
    assert result.ok is False and result.error == "write_failed" and result.detail
    result = await child.handle({"type": "write", "id": 5, "data": b64(b"hi")})
    assert result.ok is False and result.error == "write_failed"


async def test_malformed_requests_are_answered_not_raised(start) -> None:  # type: ignore[no-untyped-def]
    child = await start("cat")
    for msg, error in (
        ({"type": "paste", "id": 1, "data": "not base64!"}, "bad_request"),
        ({"type": "paste", "id": 2, "data": 5}, "bad_request"),
        ({"type": "write", "id": 3}, "bad_request"),
        ({"type": "quiet", "id": 4, "quiet_ms": 100}, "unknown_request"),
        ({"type": "reboot", "id": 6}, "unknown_request"),
    ):
        result = await child.handle(msg)
        assert result.id == msg["id"] and result.ok is False and result.error == error, msg


