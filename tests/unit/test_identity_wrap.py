"""The wrapper's side of identity: the token hash in every hello, and the ``renamed`` frame.

DaemonLink against the daemon's real ``/api/wrap`` (in-process app, real sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import orjson
import pytest

from telepty.api.keys import TERMINALS
from telepty.pty.daemon_link import DaemonLink, WrapTimings
from telepty.pty.env import child_env
from telepty.pty.spawned import SpawnedPty
from telepty.pty.wrap_protocol import Hello, encode
from telepty.pty.wrapper import WrappedChild
from telepty.sessions.identity import new_session_token, token_sha256
from tests.helpers import wait_until

FAST = WrapTimings(heartbeat_s=0.05, backoff_max_s=0.2)
HEADER = "x-telepty-session-token"


@pytest.fixture
async def cat() -> AsyncIterator[SpawnedPty]:
    pty = await SpawnedPty.start(["cat"], cwd=None, env=child_env(os.environ), cols=80, rows=24)
    yield pty
    await pty.terminate(0.5)
    pty.close()


def test_hello_carries_the_hash_never_the_token() -> None:
    token = new_session_token()
    frame = orjson.loads(encode(Hello(command="c", cwd="/", pid=1, session_token_sha256=token_sha256(token))))
    assert frame["session_token_sha256"] == token_sha256(token)
    assert token not in str(frame)
    assert "session_token_sha256" not in orjson.loads(encode(Hello(command="c", cwd="/", pid=1)))


async def test_token_verifies_and_a_rename_reaches_the_wrapper(client, config, cat) -> None:  # type: ignore[no-untyped-def]
    token = new_session_token()
    base = str(client.make_url("")).rstrip("/")
    hello = Hello(command="claude", cwd="/p", pid=cat.pid, session_id="w1",
                  session_token_sha256=token_sha256(token))
    link = DaemonLink(hello, WrappedChild(cat), timings=FAST, size=lambda: (80, 24),
                      notice=lambda _t: None, endpoint=lambda: (base, None))
    task = asyncio.ensure_future(link.run())
    try:
        await wait_until(link.connected.is_set, message="connected")
        me = await (await client.get("/api/identity", headers={HEADER: token})).json()
        assert me["session_id"] == "w1"

        resp = await client.post("/api/sessions/w1/rename", json={"new_id": "w2"})
        assert resp.status == 200, await resp.text()
        await wait_until(lambda: link.hello.session_id == "w2", message="the wrapper learnt its new id")

        # Cut the connection: the wrapper comes back as w2, not w1, and is still itself.
        svc = client.server.app
        await svc[TERMINALS].links["w2"].ws.close()

        async def back() -> bool:
            r = await client.get("/api/sessions/w2")
            return r.status == 200 and (await r.json())["state"] == "running" and link.connections >= 2

        await wait_until(back, 10, message="reconnected as w2")
        assert (await client.get("/api/sessions/w1")).status == 404
        me = await (await client.get("/api/identity", headers={HEADER: token})).json()
        assert me["session_id"] == "w2"
    finally:
        link.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
