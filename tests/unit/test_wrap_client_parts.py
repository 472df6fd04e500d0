"""The wrapper's small parts: backlog, backoff, hello metadata, terminal backpressure."""

from __future__ import annotations

import contextlib
import os
import random

import orjson
import pytest

from telepty.pty.daemon_link import OutputBacklog, WrapConfigError, WrapTimings, backoff_delays, ws_url
from telepty.pty.user_terminal import TerminalOutput
from telepty.pty.wrap_protocol import Hello, encode
from telepty.tmux.env import TmuxEnv
from tests.helpers import wait_until


def test_backlog_keeps_the_newest_bytes_in_order() -> None:
    b = OutputBacklog(limit=10)
    for chunk in (b"abcd", b"efgh", b"ijkl"):
        b.append(chunk)
    assert len(b) == 10 and b.dropped == 2
    assert b.peek(100) == (2, b"cdefghijkl")
    b.append(b"0123456789ABC")  # one chunk larger than the whole backlog
    assert b.peek(100) == (15, b"3456789ABC") and b.dropped == 15


def test_backlog_peek_then_consume_survives_overflow_in_between() -> None:
    b = OutputBacklog(limit=8)
    b.append(b"abcdef")
    offset, frame = b.peek(4)
    assert (offset, frame) == (0, b"abcd")
    b.append(b"ghijk")  # overflow drops "abc" while "abcd" is in flight
    b.consume_to(offset + len(frame))
    assert b.peek(100) == (4, b"efghijk")
    b.consume_to(b.end)
    assert len(b) == 0 and b.peek(10) == (b.end, b"")


def test_backoff_grows_jitters_and_caps() -> None:
    delays = backoff_delays(0.1, 5.0, random.Random(7))
    got = [next(delays) for _ in range(12)]
    nominal = [min(5.0, 0.1 * 2**i) for i in range(12)]
    assert all(d / 2 <= g <= d for g, d in zip(got, nominal, strict=True))
    assert max(got) <= 5.0 and got[-1] >= 2.5
    assert len(set(got)) == len(got)  # jittered, not lockstep


def test_timings_from_env() -> None:
    assert WrapTimings.from_env({}) == WrapTimings(1.0, 5.0)
    t = WrapTimings.from_env({"TELEPTY_WRAP_BACKOFF_MAX": "0.3", "TELEPTY_WRAP_HEARTBEAT": "0.2"})
    assert (t.backoff_max_s, t.heartbeat_s) == (0.3, 0.2)
    for bad in ("0", "-1", "soon"):
        with pytest.raises(WrapConfigError):
            WrapTimings.from_env({"TELEPTY_WRAP_BACKOFF_MAX": bad})


def test_hello_carries_the_full_metadata() -> None:
    hello = Hello(command="claude --resume", cwd="/p/x", pid=42, session_id="w1", agent="claude",
                  tmux_pane="%3", tmux_socket="/tmp/tmux-0/default", replace=True, cols=120, rows=40)
    assert orjson.loads(encode(hello)) == {
        "type": "hello", "command": "claude --resume", "cwd": "/p/x", "pid": 42, "replace": True,
        "cols": 120, "rows": 40, "session_id": "w1", "agent": "claude", "tmux_pane": "%3",
        "tmux_socket": "/tmp/tmux-0/default",
    }
    bare = orjson.loads(encode(Hello(command="bash", cwd="/", pid=1, cols=80, rows=24)))
    assert "agent" not in bare and "session_id" not in bare  # the daemon decides those


def test_tmux_location() -> None:
    env = {"TMUX": "/tmp/tmux-1000/work,1234,0", "TMUX_PANE": "%7"}
    assert TmuxEnv.of(env) == TmuxEnv("/tmp/tmux-1000/work", "%7")
    assert TmuxEnv.of({"TMUX_PANE": "%7"}) is None  # a stale pane id outside tmux
    assert TmuxEnv.of({}) is None
    # A socket path may hold commas; the server pid and session index never do.
    assert TmuxEnv.of({"TMUX": "/tmp/a,b/sock,1234,0"}) == TmuxEnv("/tmp/a,b/sock", None)


def test_ws_url() -> None:
    assert ws_url("http://127.0.0.1:3848", "/api/wrap", "t/k+n") == "ws://127.0.0.1:3848/api/wrap?token=t%2Fk%2Bn"
    assert ws_url("https://h.ts.net/base/", "/api/wrap", None) == "wss://h.ts.net/base/api/wrap"


async def test_terminal_output_backpressure_pauses_and_resumes() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    events: list[str] = []
    out = TerminalOutput(w, on_pause=lambda: events.append("pause"),
                         on_resume=lambda: events.append("resume"),
                         high_water=64 * 1024, low_water=16 * 1024)
    payload = bytes(i % 251 for i in range(600 * 1024))
    for i in range(0, len(payload), 4096):
        out.write(payload[i : i + 4096])
    assert events == ["pause"] and out.paused  # the pipe holds far less than 600 KiB
    os.set_blocking(r, False)
    got = bytearray()

    def drain_step() -> bool:
        # The reader plays a slow terminal; the writer side runs on the loop meanwhile.
        with contextlib.suppress(BlockingIOError):
            got.extend(os.read(r, 1 << 20))
        return len(got) >= len(payload)

    await wait_until(drain_step, message="all output through the pipe")
    assert bytes(got) == payload
    assert events == ["pause", "resume"] and not out.paused
    assert await out.drain(1.0)
    out.close()
    os.close(r)
    os.close(w)


async def test_terminal_output_survives_a_vanished_terminal() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    os.close(r)
    out = TerminalOutput(w)
    out.write(b"into the void")  # EPIPE: swallowed, not raised
    assert out.broken and await out.drain(0.1)
    out.close()
    os.close(w)
