"""SpawnedPty against real PTYs and real child processes.

Synchronisation is by polling observable state (wait_until), never by sleeping.
Byte-exact checks use a child that puts its terminal in raw mode and copies stdin to
a file until a sentinel, because the default (canonical) line discipline would echo,
translate CR and cap lines at 4096 bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from telepty.pty.bracketed import BRACKET_END, BRACKET_START
from telepty.pty.env import child_env
from telepty.pty.spawned import KILL_WAIT_S, PtyClosedError, SpawnedPty

pytestmark = pytest.mark.integration

SENTINEL = b"<<telepty-test-end-9f3c>>"

READER = r"""
import os, sys, time, tty
out = sys.argv[1]
sentinel = sys.argv[2].encode()
read_size = int(sys.argv[3])
delay = float(sys.argv[4])
preamble = sys.argv[5].encode().decode("unicode_escape").encode("latin-1")
tty.setraw(0)
os.write(1, preamble + b"READY\r\n")
buf = bytearray()
while not buf.endswith(sentinel):
    chunk = os.read(0, read_size)
    if not chunk:
        break
    buf += chunk
    if delay:
        time.sleep(delay)
with open(out, "wb") as f:
    f.write(buf[: -len(sentinel)])
os.write(1, b"DONE\r\n")
"""


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {pred}")
        await asyncio.sleep(interval)


def env() -> dict[str, str]:
    return child_env(os.environ, None)


@pytest.fixture
async def ptys() -> AsyncIterator[list[SpawnedPty]]:
    """Collects PTYs started by a test and makes sure none outlives it."""
    started: list[SpawnedPty] = []
    yield started
    for p in started:
        await p.terminate(grace=0.5)
        p.close()


async def start(ptys: list[SpawnedPty], argv: list[str], **kw: object) -> SpawnedPty:
    p = await SpawnedPty.start(argv, cwd=kw.pop("cwd", None), env=kw.pop("env", env()), **kw)
    ptys.append(p)
    return p


async def start_reader(
    ptys: list[SpawnedPty],
    out: Path,
    *,
    bracketed: bool = False,
    read_size: int = 65536,
    delay: float = 0.0,
) -> SpawnedPty:
    preamble = "\\x1b[?2004h" if bracketed else ""
    argv = [sys.executable, "-c", READER, str(out), SENTINEL.decode(), str(read_size)]
    p = await start(ptys, [*argv, str(delay), preamble])
    await wait_until(lambda: b"READY" in p.scrollback.snapshot())
    assert p.bracketed.enabled is bracketed
    return p


async def finish_reader(p: SpawnedPty, out: Path, timeout: float = 30.0) -> bytes:
    await p.write(SENTINEL)
    await asyncio.wait_for(p.exited.wait(), timeout)
    assert p.exit_code == 0, p.scrollback.snapshot()[-2000:]
    return await asyncio.to_thread(out.read_bytes)


class Collector:
    """Drains a subscription in the background so tests can poll what arrived."""

    def __init__(self, q: asyncio.Queue[bytes | None]) -> None:
        self.data = bytearray()
        self.ended = False
        self._task = asyncio.get_running_loop().create_task(self._run(q))

    async def _run(self, q: asyncio.Queue[bytes | None]) -> None:
        while (chunk := await q.get()) is not None:
            self.data += chunk
        self.ended = True

    def stop(self) -> None:
        self._task.cancel()


# --------------------------------------------------------------------------- echo


async def test_cat_echoes_written_bytes(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["cat"])
    c = Collector(p.subscribe())
    await p.write(b"hello telepty\n")
    # Once from the tty's echo, once from cat itself (ONLCR turns \n into \r\n).
    await wait_until(lambda: bytes(c.data).count(b"hello telepty\r\n") == 2)
    assert p.activity.bytes_in == len(b"hello telepty\n")
    assert p.activity.bytes_out >= 2 * len(b"hello telepty\r\n")
    assert p.activity.idle_seconds() < 5.0
    c.stop()


async def test_two_subscribers_both_see_output(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["cat"])
    a, b = Collector(p.subscribe()), Collector(p.subscribe())
    await p.write(b"both\n")
    await wait_until(lambda: b"both" in a.data and b"both" in b.data)
    await wait_until(lambda: a.data == b.data and a.data.count(b"both") == 2)
    a.stop()
    b.stop()


async def test_unsubscribe_stops_delivery(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["cat"])
    q = p.subscribe()
    other = Collector(p.subscribe())
    p.unsubscribe(q)
    await p.write(b"x\n")
    await wait_until(lambda: other.data.count(b"x") == 2)
    assert q.empty()
    other.stop()


async def test_slow_subscriber_is_dropped_without_stalling_others(
    ptys: list[SpawnedPty],
) -> None:
    p = await start(ptys, ["cat"])
    slow = p.subscribe(max_chunks=2)
    fast = Collector(p.subscribe())
    for i in range(6):
        await p.write(b"line%d\n" % i)
        # Each line is echoed by the tty and again by cat: at least one chunk per round.
        await wait_until(lambda i=i: fast.data.count(b"line%d\r\n" % i) == 2)
    items = []
    while not slow.empty():
        items.append(slow.get_nowait())
    assert items[-1] is None
    assert len(items) <= 3  # at most max_chunks chunks, then the end marker
    assert not p.exited.is_set()
    assert fast.data.count(b"line5\r\n") == 2
    fast.stop()


async def test_replay_subscription_starts_with_scrollback(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["cat"])
    await p.write(b"before\n")
    await wait_until(lambda: p.scrollback.snapshot().count(b"before") == 2)
    c = Collector(p.subscribe(replay=True))
    await p.write(b"after\n")
    await wait_until(lambda: c.data.count(b"after") == 2)
    assert bytes(c.data) == p.scrollback.snapshot()
    c.stop()


async def test_on_output_callbacks_and_their_errors(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["cat"])
    seen = bytearray()

    def broken(_: bytes) -> None:
        raise RuntimeError("callback bug")

    p.on_output.extend([broken, seen.extend])
    await p.write(b"cb\n")
    await wait_until(lambda: seen.count(b"cb") == 2)


async def test_resize_reaches_the_child(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["sh", "-c", "stty size; read x; stty size"], cols=100, rows=30)
    await wait_until(lambda: b"30 100" in p.scrollback.snapshot())
    p.resize(132, 50)
    await p.write(b"\n")
    await wait_until(lambda: b"50 132" in p.scrollback.snapshot())


# --------------------------------------------------------------------------- paste

PAYLOADS = {
    "ascii": b"hello world",
    "utf8": "안녕하세요 — naïve café ☕ 🚀".encode(),
    "tabs_quotes_subst": b"a\tb 'single' \"double\" $(rm -rf ~) `id` ${HOME} \\n \\\\",
    "multiline": b"line one\nline two\n\n  indented\r\nCRLF line\n",
    "all_bytes": bytes(b for b in range(256) if b != 0x1B) * 4,
}


@pytest.mark.parametrize("name", list(PAYLOADS))
async def test_paste_is_byte_exact_without_bracketing(
    ptys: list[SpawnedPty], tmp_path: Path, name: str
) -> None:
    out = tmp_path / "in.bin"
    p = await start_reader(ptys, out)
    await p.paste(PAYLOADS[name])
    await p.write(b"\r")
    assert await finish_reader(p, out) == PAYLOADS[name] + b"\r"


@pytest.mark.parametrize("size", [100 * 1024, 1024 * 1024])
async def test_large_paste_arrives_intact(ptys: list[SpawnedPty], tmp_path: Path, size: int) -> None:
    unit = "prompt 프롬프트 \t$(x) 'q' \"q\"\n".encode()
    payload = (unit * (size // len(unit) + 1))[:size]
    out = tmp_path / "big.bin"
    p = await start_reader(ptys, out)
    await asyncio.wait_for(p.paste(payload), 60)
    got = await finish_reader(p, out)
    assert len(got) == size
    assert got == payload
    assert p.activity.bytes_in == size + len(SENTINEL)


async def test_paste_into_a_slow_reader_does_not_block_the_loop(
    ptys: list[SpawnedPty], tmp_path: Path
) -> None:
    payload = os.urandom(128 * 1024).replace(b"\x1b", b"E")
    out = tmp_path / "slow.bin"
    p = await start_reader(ptys, out, read_size=1024, delay=0.002)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.wait_for(p.paste(payload), 60)
    got = await finish_reader(p, out)
    tick.cancel()
    assert got == payload
    assert len(gaps) > 10
    assert max(gaps) < 0.25, max(gaps)


async def test_bracketed_paste_frames_the_prompt(ptys: list[SpawnedPty], tmp_path: Path) -> None:
    prompt = "Review this:\n  def f():\n      return 1\n\nThanks — 고마워\n".encode()
    out = tmp_path / "bp.bin"
    p = await start_reader(ptys, out, bracketed=True)
    await p.paste(prompt)
    await p.write(b"\r")
    assert await finish_reader(p, out) == BRACKET_START + prompt + BRACKET_END + b"\r"


async def test_bracketed_paste_strips_embedded_markers(ptys: list[SpawnedPty], tmp_path: Path) -> None:
    out = tmp_path / "bp.bin"
    p = await start_reader(ptys, out, bracketed=True)
    await p.paste(b"safe" + BRACKET_END + b"\rrm -rf /\r")
    assert await finish_reader(p, out) == BRACKET_START + b"safe\rrm -rf /\r" + BRACKET_END


async def test_no_markers_when_app_did_not_enable(ptys: list[SpawnedPty], tmp_path: Path) -> None:
    prompt = b"multi\nline\nprompt"
    out = tmp_path / "plain.bin"
    p = await start_reader(ptys, out, bracketed=False)
    await p.paste(prompt)
    await p.write(b"\r")
    got = await finish_reader(p, out)
    assert got == prompt + b"\r"
    assert BRACKET_START not in got


async def test_a_paste_submits_nothing(ptys: list[SpawnedPty], tmp_path: Path) -> None:
    out = tmp_path / "ne.bin"
    p = await start_reader(ptys, out)
    await p.paste(b"one")
    await p.paste(b"two")
    assert await finish_reader(p, out) == b"onetwo"


async def test_writes_do_not_land_inside_a_paste(ptys: list[SpawnedPty], tmp_path: Path) -> None:
    payload = b"x" * (256 * 1024)
    out = tmp_path / "order.bin"
    p = await start_reader(ptys, out, bracketed=True, read_size=1024, delay=0.001)
    paste = asyncio.create_task(p.paste(payload))
    await wait_until(lambda: p.activity.bytes_in > 0)
    await p.write(b"typed")  # waits for the paste to end
    await paste
    assert await finish_reader(p, out) == BRACKET_START + payload + BRACKET_END + b"typed"


async def test_cancelled_paste_still_closes_the_bracket(ptys: list[SpawnedPty], tmp_path: Path) -> None:
    payload = b"x" * (512 * 1024)
    out = tmp_path / "cancel.bin"
    p = await start_reader(ptys, out, bracketed=True, read_size=1024, delay=0.001)
    paste = asyncio.create_task(p.paste(payload))
    await wait_until(lambda: p.activity.bytes_in > 32 * 1024, timeout=20)
    paste.cancel()
    with pytest.raises(asyncio.CancelledError):
        await paste
    got = await finish_reader(p, out)
    assert got.startswith(BRACKET_START)
    assert got.endswith(BRACKET_END)
    body = got[len(BRACKET_START) : -len(BRACKET_END)]
    assert 0 < len(body) < len(payload)
    assert body == payload[: len(body)]


# --------------------------------------------------------------------------- exit


async def test_exit_code_is_reported(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["sh", "-c", "echo bye; exit 7"])
    q = p.subscribe(replay=True)
    await asyncio.wait_for(p.exited.wait(), 5)
    assert p.exit_code == 7
    assert b"bye" in p.scrollback.snapshot()
    chunks = []
    while (item := q.get_nowait()) is not None:
        chunks.append(item)
    assert b"bye" in b"".join(chunks)
    assert p.closed
    # Late subscribers learn it is over straight away; writes are refused.
    assert p.subscribe().get_nowait() is None
    with pytest.raises(PtyClosedError) as err:
        await p.write(b"x")
    assert err.value.code == "pane_dead"
    with pytest.raises(PtyClosedError):
        await p.paste(b"x")
    p.resize(10, 10)  # harmless no-op
    assert await p.terminate() == 7


async def test_killed_by_signal_uses_shell_convention(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["sleep", "100"])
    os.kill(p.pid, signal.SIGTERM)
    await asyncio.wait_for(p.exited.wait(), 5)
    assert p.exit_code == 128 + signal.SIGTERM


async def test_terminate_hangs_up_within_grace(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["sleep", "100"])
    t0 = time.monotonic()
    code = await p.terminate(grace=2.0)
    assert time.monotonic() - t0 < 2.0
    assert code == p.exit_code == 128 + signal.SIGHUP
    assert p.exited.is_set()
    assert await p.terminate() == code  # idempotent
    assert p.pid not in {c.pid for c in psutil.Process().children()}  # reaped


async def test_terminate_kills_what_ignores_hangup(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["sh", "-c", 'trap "" HUP; echo armed; sleep 100'])
    await wait_until(lambda: b"armed" in p.scrollback.snapshot())
    children = psutil.Process(p.pid).children(recursive=True)
    t0 = time.monotonic()
    code = await p.terminate(grace=0.3)
    elapsed = time.monotonic() - t0
    assert code == 128 + signal.SIGKILL
    assert 0.3 <= elapsed < 0.3 + KILL_WAIT_S
    # The whole process group went, not just the shell (a reparented child may linger
    # as a zombie until init reaps it; that is dead enough).
    assert children
    await wait_until(lambda: all(_dead(c) for c in children))


def _dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_concurrent_terminates_agree(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["sleep", "100"])
    codes = await asyncio.gather(p.terminate(), p.terminate(), p.terminate())
    assert codes == [129, 129, 129]


async def test_close_kills_a_running_child(ptys: list[SpawnedPty]) -> None:
    p = await start(ptys, ["sleep", "100"])
    q = p.subscribe()
    p.close()
    p.close()  # idempotent
    assert p.closed
    with pytest.raises(PtyClosedError):
        await p.write(b"x")
    await asyncio.wait_for(p.exited.wait(), 5)
    # Closing the master hangs the child up; SIGKILL follows in case it ignores that.
    assert p.exit_code in (128 + signal.SIGHUP, 128 + signal.SIGKILL)
    assert q.get_nowait() is None


async def test_background_grandchild_does_not_keep_session_alive(
    ptys: list[SpawnedPty],
) -> None:
    # The shell exits but leaves a child holding the terminal open.
    p = await start(ptys, ["sh", "-c", "sleep 30 & echo started; exit 3"])
    await asyncio.wait_for(p.exited.wait(), 5)
    assert p.exit_code == 3


async def test_pending_write_fails_when_child_exits(ptys: list[SpawnedPty]) -> None:
    # A child that never reads: its input buffer fills, the write waits, then it dies.
    p = await start(
        ptys,
        [sys.executable, "-c", "import tty,time; tty.setraw(0); print('up', flush=True); time.sleep(100)"],
    )
    await wait_until(lambda: b"up" in p.scrollback.snapshot())
    w = asyncio.create_task(p.write(b"z" * (4 * 1024 * 1024)))
    await wait_until(lambda: p.activity.bytes_in > 0)
    await wait_until(lambda: not w.done() and p._writable is not None)
    os.kill(p.pid, signal.SIGKILL)
    with pytest.raises(PtyClosedError):
        await asyncio.wait_for(w, 5)


# --------------------------------------------------------------------------- start


async def test_missing_executable_raises(ptys: list[SpawnedPty]) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-program-xyz"):
        await asyncio.wait_for(start(ptys, ["no-such-program-xyz", "--help"]), 5)
    with pytest.raises(FileNotFoundError):
        await asyncio.wait_for(start(ptys, ["/nonexistent/bin/agent"]), 5)


async def test_path_comes_from_the_child_env(ptys: list[SpawnedPty], tmp_path: Path) -> None:
    tool = tmp_path / "mytool"
    tool.write_text("#!/bin/sh\necho from-mytool\n")
    tool.chmod(0o755)
    with pytest.raises(FileNotFoundError):
        await start(ptys, ["mytool"])
    p = await start(ptys, ["mytool"], env=env() | {"PATH": f"{tmp_path}:/usr/bin:/bin"})
    await asyncio.wait_for(p.exited.wait(), 5)
    assert b"from-mytool" in p.scrollback.snapshot()


async def test_exec_failure_raises_and_leaves_no_zombie(ptys: list[SpawnedPty], tmp_path: Path) -> None:
    bad = tmp_path / "not-a-binary"
    bad.write_bytes(b"\x00\x01\x02 not an executable format")
    bad.chmod(0o755)
    with pytest.raises(OSError, match="not-a-binary"):
        await asyncio.wait_for(start(ptys, [str(bad)]), 5)
    zombies = [c for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]
    assert not zombies


async def test_bad_cwd_raises(ptys: list[SpawnedPty]) -> None:
    with pytest.raises(FileNotFoundError, match="working directory"):
        await asyncio.wait_for(start(ptys, ["cat"], cwd="/nonexistent/dir"), 5)


async def test_cwd_and_env_are_applied(ptys: list[SpawnedPty], tmp_path: Path) -> None:
    base = dict(os.environ) | {"CLAUDECODE": "1", "TMUX": "/tmp/x,1,0"}
    e = child_env(base, {"TELEPTY_SESSION_ID": "child-1"})
    script = 'pwd; echo "id=$TELEPTY_SESSION_ID cc=${CLAUDECODE-unset} tmux=${TMUX-unset}"'
    p = await start(ptys, ["sh", "-c", script], cwd=str(tmp_path), env=e)
    await asyncio.wait_for(p.exited.wait(), 5)
    out = p.scrollback.snapshot()
    assert str(tmp_path).encode() in out
    assert b"id=child-1 cc=unset tmux=unset" in out


async def test_signals_ignored_by_python_are_default_in_child(ptys: list[SpawnedPty]) -> None:
    # Python ignores SIGPIPE; an agent's shell pipelines must not inherit that.
    p = await start(ptys, ["sh", "-c", "yes | head -n 1; echo status=$?"])
    await asyncio.wait_for(p.exited.wait(), 5)
    out = p.scrollback.snapshot()
    assert b"status=0" in out
    assert b"Broken pipe" not in out


async def test_cancelled_start_leaves_no_child(
    ptys: list[SpawnedPty], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="telepty.pty")
    me = psutil.Process()
    before = {c.pid for c in me.children()}
    task = asyncio.create_task(SpawnedPty.start(["sleep", "77"], cwd=None, env=env()))
    await asyncio.sleep(0)  # let start() reach its spawn, then cancel it mid-way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: "was cancelled; discarding" in caplog.text)
    await wait_until(lambda: not [c for c in me.children() if c.pid not in before])


async def test_many_sessions_do_not_share_state(ptys: list[SpawnedPty]) -> None:
    sessions = [await start(ptys, ["cat"]) for _ in range(8)]
    for i, p in enumerate(sessions):
        await p.write(b"s%d\n" % i)
    for i, p in enumerate(sessions):
        await wait_until(lambda p=p, i=i: p.scrollback.snapshot().count(b"s%d" % i) == 2)
        assert all(b"s%d" % j not in p.scrollback.snapshot() for j in range(8) if j != i)
    codes = await asyncio.gather(*(p.terminate() for p in sessions))
    assert codes == [129] * 8


async def test_exit_detection_without_pidfd(ptys: list[SpawnedPty], monkeypatch: pytest.MonkeyPatch) -> None:
    # Non-Linux platforms have no pidfd: the child is polled with WNOHANG instead.
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    p = await start(ptys, ["sh", "-c", "exit 5"])
    await asyncio.wait_for(p.exited.wait(), 5)
    assert p.exit_code == 5
    q = await start(ptys, ["sleep", "100"])
    assert await q.terminate(grace=2.0) == 129
    r = await start(ptys, ["sh", "-c", "sleep 30 & exit 4"])
    await asyncio.wait_for(r.exited.wait(), 5)
    assert r.exit_code == 4
