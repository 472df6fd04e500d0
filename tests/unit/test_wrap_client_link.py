"""DaemonLink against the daemon's real ``/api/wrap`` (in-process app, real sockets).

The end-to-end behaviour (tmux, restarts, a daemon subprocess) is in
tests/integration/test_wrap_cli.py; these pin the protocol details down fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from telepty.api.keys import TERMINALS
from telepty.config import Config
from telepty.pty.daemon_link import REPLACED_NOTICE, DaemonLink, WrapTimings
from telepty.pty.env import child_env
from telepty.pty.spawned import SpawnedPty
from telepty.pty.wrap_protocol import Hello, Result
from telepty.pty.wrapper import WrappedChild
from tests.helpers import wait_until

FAST = WrapTimings(heartbeat_s=0.05, backoff_max_s=0.2)


@pytest.fixture
async def cat() -> AsyncIterator[SpawnedPty]:
    pty = await SpawnedPty.start(["cat"], cwd=None, env=child_env(os.environ), cols=80, rows=24)
    yield pty
    await pty.terminate(0.5)
    pty.close()


class Harness:
    def __init__(self, client: Any, config: Config, pty: SpawnedPty) -> None:
        self.client = client
        self.config = config
        self.pty = pty
        self.notices: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def svc(self) -> Any:
        return self.client.server.app

    def link(self, **meta: Any) -> DaemonLink:
        base = str(self.client.make_url("")).rstrip("/")
        hello = Hello(**{"command": "claude --x", "cwd": "/p/proj", "pid": self.pty.pid, **meta})
        link = DaemonLink(
            hello, WrappedChild(self.pty), timings=FAST, size=lambda: (100, 30),
            notice=self.notices.append, endpoint=lambda: (base, None),
        )
        self.pty.on_output.append(link.mirror)
        return link

    def run(self, link: DaemonLink) -> asyncio.Task[None]:
        task = asyncio.ensure_future(link.run())
        self.tasks.append(task)
        return task

    async def session(self, name: str) -> dict[str, Any]:
        return dict(await (await self.client.get(f"/api/sessions/{name}")).json())

    async def screen(self, name: str) -> str:
        return str((await (await self.client.get(f"/api/sessions/{name}/screen")).json()).get("text", ""))


@pytest.fixture
async def harness(client, config: Config, cat: SpawnedPty) -> AsyncIterator[Harness]:  # type: ignore[no-untyped-def]
    h = Harness(client, config, cat)
    yield h
    for task in h.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def is_state(h: Harness, name: str, pred: Callable[[dict[str, Any]], bool]) -> Callable[[], Any]:
    async def check() -> bool:
        return pred(await h.session(name))

    return check


async def test_output_before_connect_is_flushed_then_mirrored_live(harness: Harness) -> None:
    link = harness.link(session_id="lk1")
    await harness.pty.write(b"before\n")  # cooked-mode echo + cat's copy, with nobody connected
    await wait_until(lambda: len(link.backlog) > 0, message="backlog")
    harness.run(link)
    await wait_until(link.connected.is_set, message="welcome")
    await harness.pty.write(b"after\n")

    async def both() -> bool:
        text = await harness.screen("lk1")
        return "before\nbefore" in text and "after\nafter" in text

    await wait_until(both, message="flushed and live output on the daemon's screen")
    s = await harness.session("lk1")
    assert (s["type"], s["state"], s["agent"], s["pid"]) == ("wrapped", "running", "claude", harness.pty.pid)


async def test_heartbeats_report_both_directions(harness: Harness) -> None:
    link = harness.link(session_id="lk2")
    harness.run(link)
    await wait_until(link.connected.is_set, message="welcome")
    await harness.pty.write(b"ping\n")
    daemon_side = harness.svc[TERMINALS].links["lk2"]

    def reported() -> bool:
        out = harness.pty.activity.bytes_out
        return out > 0 and daemon_side.bytes_out_reported == out and daemon_side.bytes_received == out

    await wait_until(reported, message="heartbeat byte counts to match what arrived")
    assert daemon_side.bytes_in_reported == len(b"ping\n")
    assert not daemon_side.stalled


async def test_reconnect_keeps_the_assigned_id_and_metadata(harness: Harness) -> None:
    link = harness.link(agent="claude", tmux_pane="%9", tmux_socket="/tmp/tmux-x/sock")
    harness.run(link)
    await wait_until(link.connected.is_set, message="welcome")
    assigned = link.hello.session_id
    assert assigned == "claude-proj-1"  # chosen by the daemon, then reused forever
    await harness.svc[TERMINALS].links[assigned].ws.close()  # the socket drops
    await wait_until(lambda: link.connections == 2, message="reconnect")
    s = await harness.session(assigned)
    assert (s["id"], s["state"], s["agent"], s["tmux_pane"], s["tmux_socket"]) == (
        assigned, "running", "claude", "%9", "/tmp/tmux-x/sock")
    sessions = await (await harness.client.get("/api/sessions")).json()
    assert [x["id"] for x in sessions] == [assigned]  # no second registration


async def test_exit_is_reported_after_the_output(harness: Harness) -> None:
    link = harness.link(session_id="lk3")
    harness.run(link)
    await wait_until(link.connected.is_set, message="welcome")
    link.mirror(b"last words\r\n")
    assert await link.report_exit(3) is True

    async def exited() -> bool:
        s = await harness.session("lk3")
        return s["state"] == "exited" and s["exit_code"] == 3

    await wait_until(exited, message="exited with 3")


async def test_exit_without_a_daemon_gives_up_quickly(harness: Harness) -> None:
    link = harness.link(session_id="lk4")
    link.endpoint = lambda: ("http://127.0.0.1:1", None)
    harness.run(link)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await link.report_exit(0) is False
    assert loop.time() - began < 3.0


async def test_replaced_owner_is_told_and_stops(harness: Harness) -> None:
    link = harness.link(session_id="lk5")
    task = harness.run(link)
    await wait_until(link.connected.is_set, message="welcome")
    ws = await harness.client.ws_connect("/api/wrap")
    await ws.send_json({"type": "hello", "session_id": "lk5", "command": "claude", "cwd": "/p",
                        "pid": os.getpid(), "replace": True})
    assert (await ws.receive_json(timeout=5))["session_id"] == "lk5-2"
    await asyncio.wait_for(task, 5.0)  # the link ends for good: no reconnect, no flapping
    assert harness.notices == [REPLACED_NOTICE]
    assert (await harness.session("lk5"))["id"] == "lk5-2"
    await ws.close()


async def test_refused_registration_stops_the_link(harness: Harness) -> None:
    ws = await harness.client.ws_connect("/api/wrap")
    await ws.send_json({"type": "hello", "session_id": "lk6", "command": "claude", "cwd": "/p",
                        "pid": os.getpid()})
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    link = harness.link(session_id="lk6")
    await asyncio.wait_for(harness.run(link), 5.0)
    assert len(harness.notices) == 1 and "session 'lk6' is already live" in harness.notices[0]
    assert (await harness.session("lk6"))["pid"] == os.getpid()
    await ws.close()


async def test_daemon_requests_are_answered_over_the_socket(harness: Harness) -> None:
    link = harness.link(session_id="lk7")
    harness.run(link)
    await wait_until(link.connected.is_set, message="welcome")
    daemon_side = harness.svc[TERMINALS].links["lk7"]
    reply = await daemon_side.paste(b"hello")
    assert reply == Result(id=reply.id, ok=True, bracketed=False)
    await wait_until(lambda: b"hello" in harness.pty.scrollback.snapshot(), message="echo of the paste")
    # The daemon saw the echo through the mirror: that is what its quiet guard reads.
    await wait_until(lambda: daemon_side.activity.bytes_out >= len(b"hello"), message="the mirrored echo")
    reply = await daemon_side.write(b"x")
    assert reply == Result(id=reply.id, ok=True)
    await wait_until(lambda: b"x" in harness.pty.scrollback.tail(4), message="the echo of the write")
