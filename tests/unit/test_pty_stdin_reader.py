"""StdinReader over a real pipe: bounded queue, detach key, end of input."""

from __future__ import annotations

import os

from telepty.pty.stdin_reader import StdinReader
from tests.helpers import wait_until


async def test_pauses_when_full_and_resumes_at_half() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    reader = StdinReader(r, on_eof=lambda: None, queue_max=4)
    try:
        reader.start()
        for i in range(4):
            os.write(w, b"x%d" % i)
            await wait_until(lambda n=i: reader.queue.qsize() == n + 1, 5, message="chunk queued")
        assert not reader.reading  # full: the pipe keeps the rest
        os.write(w, b"held")
        reader.resume_if_room()
        assert not reader.reading  # still 4 queued
        got = [reader.queue.get_nowait() for _ in range(3)]
        assert got == [b"x0", b"x1", b"x2"]
        reader.resume_if_room()
        assert reader.reading
        await wait_until(lambda: reader.queue.qsize() == 2, 5, message="held chunk read")
        assert [reader.queue.get_nowait() for _ in range(2)] == [b"x3", b"held"]
    finally:
        reader.stop()
        os.close(r)
        os.close(w)


async def test_stop_at_queues_what_came_before_then_ends() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    reader = StdinReader(r, on_eof=lambda: None, stop_at=b"\x1d")
    try:
        reader.start()
        os.write(w, b"ls\r\x1dnever")
        await wait_until(lambda: reader.done, 5, message="detached")
        assert [reader.queue.get_nowait() for _ in range(2)] == [b"ls\r", None]
        assert reader.queue.empty() and not reader.reading
        reader.start()
        assert not reader.reading  # done is done
    finally:
        os.close(r)
        os.close(w)


async def test_end_of_input_calls_on_eof_once() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    ends: list[int] = []
    reader = StdinReader(r, on_eof=lambda: ends.append(1))
    try:
        reader.start()
        os.write(w, b"last line\n")
        os.close(w)
        await wait_until(lambda: reader.done, 5, message="end of input")
        assert reader.queue.get_nowait() == b"last line\n"
        assert ends == [1] and not reader.reading
    finally:
        os.close(r)
