"""session.idle (once per idle period) and session_health (every interval), on a running
daemon with short intervals; and no repeated idle event across a daemon restart."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from telepty.api.keys import BUS, REGISTRY
from telepty.clock import from_iso
from telepty.config import Config
from telepty.sessions.model import SessionState
from tests.helpers import DaemonProcess, wait_until_sync
from tests.integration.test_handoffs import logged_events

IDLE = 0.4
HEALTH = 0.1
MS = 0.002  # record timestamps carry milliseconds; allow for their rounding


@pytest.fixture
def config(config: Config) -> Config:
    return config.with_(idle_seconds=IDLE, health_interval=HEALTH)


@pytest.fixture
def svc(client):  # type: ignore[no-untyped-def]
    return client.server.app


class Events:
    """Reads a bus subscription in order, keeping everything it has read."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub
        self.seen: list[dict[str, Any]] = []

    async def until(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                env = (await self.sub.queue.get()).envelope
                self.seen.append(env)
                if pred(env):
                    return env

    async def beats(self, session_id: str, n: int) -> None:
        """Let ``n`` health beats of ``session_id`` go by: the daemon's own clock ticking."""
        for _ in range(n):
            await self.until(lambda e: e["kind"] == "session_health" and e["session_id"] == session_id)

    def kinds_for(self, kind: str, session_id: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e["kind"] == kind and e.get("session_id") == session_id]


def is_idle(session_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["kind"] == "session.idle" and e["session_id"] == session_id


async def register(client, sid: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.post("/api/sessions/register", json={"type": "wrapped", "session_id": sid})
    assert r.status == 201, await r.text()
    return await r.json()


async def test_idle_fires_once_per_idle_period(client, svc) -> None:  # type: ignore[no-untyped-def]
    events = Events(svc[BUS].subscribe())
    session = await register(client, "w1")

    first = await events.until(is_idle("w1"))
    assert first["last_activity_at"] == first["lastActivityAt"] == session["last_activity_at"]
    assert first["idle_seconds"] == first["idleSeconds"] >= IDLE
    assert first["target"] == "w1"
    assert from_iso(first["ts"]) - from_iso(session["last_activity_at"]) >= IDLE - MS

    # Quiet for many more thresholds' worth of beats: still the one event.
    await events.beats("w1", int(3 * IDLE / HEALTH))
    assert len(events.kinds_for("session.idle", "w1")) == 1

    # New activity starts a new period, announced once it has been quiet for the threshold.
    svc[REGISTRY].touch("w1")
    touched = svc[REGISTRY].get("w1").last_activity_at
    second = await events.until(is_idle("w1"))
    assert second["last_activity_at"] == touched
    assert from_iso(second["ts"]) - from_iso(touched) >= IDLE - MS
    await events.beats("w1", int(3 * IDLE / HEALTH))
    assert [e["last_activity_at"] for e in events.kinds_for("session.idle", "w1")] == [
        session["last_activity_at"], touched]


async def test_a_busy_session_is_never_idle(client, svc) -> None:  # type: ignore[no-untyped-def]
    events = Events(svc[BUS].subscribe())
    await register(client, "busy")
    await register(client, "quiet")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3 * IDLE

    async def keep_busy() -> None:
        while loop.time() < deadline:
            svc[REGISTRY].touch("busy")
            await asyncio.sleep(IDLE / 8)  # producing output, not synchronising

    busy = asyncio.create_task(keep_busy())
    await events.until(is_idle("quiet"))
    await busy
    assert events.kinds_for("session.idle", "busy") == []


async def test_health_beats_for_live_sessions_only(client, svc) -> None:  # type: ignore[no-untyped-def]
    events = Events(svc[BUS].subscribe())
    await register(client, "alive")
    await register(client, "doomed")
    beat = await events.until(lambda e: e["kind"] == "session_health" and e["session_id"] == "doomed")
    assert beat["target"] == "doomed"
    payload = beat["payload"]
    assert set(payload) == {"alive", "pid", "type", "clients", "idle_seconds", "state"}  # one idle field
    assert (payload["alive"], payload["pid"], payload["type"], payload["clients"], payload["state"]) == (
        True, None, "wrapped", 0, "running")
    assert payload["idle_seconds"] >= 0

    await svc[REGISTRY].set_state("doomed", SessionState.EXITED, reason="process_gone")
    # A round already under way may still carry it; from the second round on it is gone.
    await events.beats("alive", 2)
    mark = len(events.seen)
    await events.beats("alive", 3)
    assert [e for e in events.seen[mark:] if e.get("session_id") == "doomed"] == []


async def test_health_interval_is_kept(client, svc) -> None:  # type: ignore[no-untyped-def]
    events = Events(svc[BUS].subscribe())
    await register(client, "tick")
    await events.beats("tick", 6)
    stamps = [from_iso(e["ts"]) for e in events.kinds_for("session_health", "tick")]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(g >= HEALTH * 0.8 for g in gaps), gaps  # a heartbeat, not a flood
    assert time.time() - stamps[-1] < 5


def _pane_socket(session) -> str:  # type: ignore[no-untyped-def]
    return session.server.cmd("display-message", "-p", "#{socket_path}").stdout[0]


def test_no_second_idle_event_for_the_same_period_after_a_restart(daemon_factory, session) -> None:  # type: ignore[no-untyped-def]
    env = {"TELEPTY_IDLE_SECONDS": "0.3", "TELEPTY_HEALTH_INTERVAL": "0.1"}
    d = daemon_factory(**env).start()
    pane = session.new_window(window_name="quiet", window_shell="sleep 300").active_pane
    status, body = d.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": "p1", "tmux_pane": pane.pane_id, "tmux_socket": _pane_socket(session),
        "command": "claude"})
    assert status == 201, body

    def idle_events() -> list[dict[str, Any]]:
        return [e for e in logged_events(d.home, "session.idle") if e["session_id"] == "p1"]

    def beats() -> int:
        return len([e for e in logged_events(d.home, "session_health") if e["session_id"] == "p1"])

    wait_until_sync(lambda: idle_events(), 10, message="the first session.idle")
    before = beats()
    wait_until_sync(lambda: beats() >= before + 8, 10, message="eight more health beats")
    assert len(idle_events()) == 1
    d.stop()

    d2 = DaemonProcess(home=d.home, env=d.env).start()
    assert d2.request("GET", "/api/sessions/p1")[1]["state"] == "running"  # the pane lived on
    before = beats()
    wait_until_sync(lambda: beats() >= before + 8, 10, message="health beats after the restart")
    assert [e["last_activity_at"] for e in idle_events()] == [body["last_activity_at"]]
    d2.stop()
