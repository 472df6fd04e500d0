"""The idle watch and the health heartbeat, against a fake clock: no sleeping, no I/O."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from telepty.clock import to_iso
from telepty.sessions.lifecycle import (
    IdleWatch,
    SessionLifecycle,
    health_fields,
    idle_check_interval,
)
from telepty.sessions.model import Session, SessionState, SessionType
from tests.helpers import wait_until

T0 = 1_800_000_000.0  # an arbitrary wall-clock epoch


def make_session(
    sid: str = "s1", *, active_at: float | None = T0, state: SessionState = SessionState.RUNNING,
    type: SessionType = SessionType.WRAPPED, pid: int | None = 4242, clients: int = 0,
) -> Session:
    return Session(
        id=sid, type=type, command="claude", cwd="/tmp/proj", created_at=to_iso(T0 - 100),
        updated_at=to_iso(T0 - 100), state=state, pid=pid, clients=clients,
        last_activity_at=to_iso(active_at) if active_at is not None else None,
    )


# -- IdleWatch: the edge-triggered state machine --------------------------------------------


def test_fires_once_when_the_threshold_is_crossed() -> None:
    w = IdleWatch(60)
    s = make_session()
    assert w.check([s], T0 + 59.9) == []
    [c] = w.check([s], T0 + 60)
    assert (c.session_id, c.idle_seconds, c.last_activity_at) == ("s1", 60.0, to_iso(T0))


def test_a_whole_night_of_checks_announces_one_idle_period_once() -> None:
    """The Node.js telepty re-notified ~70 times a night; one quiet night is one event."""
    w = IdleWatch(60)
    s = make_session()
    events = [c for t in range(0, 8 * 3600, 1) for c in w.check([s], T0 + t)]
    assert [(c.session_id, c.last_activity_at) for c in events] == [("s1", to_iso(T0))]


def test_new_activity_then_quiet_again_is_a_new_period() -> None:
    w = IdleWatch(10)
    s = make_session()
    assert len(w.check([s], T0 + 10)) == 1
    s.last_activity_at = to_iso(T0 + 30)  # output arrived
    assert w.check([s], T0 + 31) == []  # active, not idle
    assert w.check([s], T0 + 39.99) == []  # still under the threshold since the activity
    [c] = w.check([s], T0 + 40)
    assert c.last_activity_at == to_iso(T0 + 30)
    assert w.check([s], T0 + 500) == []


def test_activity_while_never_idle_announces_nothing() -> None:
    w = IdleWatch(10)
    s = make_session()
    for t in range(0, 100, 5):  # activity every 5 s, threshold 10 s
        s.last_activity_at = to_iso(T0 + t)
        assert w.check([s], T0 + t + 4) == []


def test_sessions_are_watched_independently() -> None:
    w = IdleWatch(10)
    a, b = make_session("a"), make_session("b", active_at=T0 + 5)
    assert [c.session_id for c in w.check([a, b], T0 + 10)] == ["a"]
    assert [c.session_id for c in w.check([a, b], T0 + 15)] == ["b"]
    assert w.check([a, b], T0 + 100) == []


@pytest.mark.parametrize("state", [SessionState.DISCONNECTED, SessionState.EXITED])
def test_sessions_that_are_not_running_are_never_idle(state: SessionState) -> None:
    w = IdleWatch(10)
    assert w.check([make_session(state=state)], T0 + 1000) == []


def test_a_disconnect_blip_without_new_activity_does_not_announce_again() -> None:
    w = IdleWatch(10)
    s = make_session()
    assert len(w.check([s], T0 + 10)) == 1
    s.state = SessionState.DISCONNECTED
    assert w.check([s], T0 + 20) == []
    s.state = SessionState.RUNNING
    assert w.check([s], T0 + 30) == []


def test_a_session_without_any_activity_timestamp_is_not_judged() -> None:
    assert IdleWatch(10).check([make_session(active_at=None)], T0 + 1000) == []


def test_an_unreadable_timestamp_is_skipped_not_fatal() -> None:
    s = make_session()
    s.last_activity_at = "not a time"
    assert IdleWatch(10).check([s, make_session("ok")], T0 + 10)[0].session_id == "ok"


def test_removed_sessions_are_forgotten() -> None:
    w = IdleWatch(10)
    s = make_session()
    w.check([s], T0 + 10)
    w.check([], T0 + 11)
    assert w._announced == {}  # the watch does not grow with every session ever seen


def test_mark_announced_suppresses_a_period_an_earlier_daemon_announced() -> None:
    w = IdleWatch(10)
    w.mark_announced("s1", to_iso(T0))
    assert w.check([make_session()], T0 + 100) == []


def test_idle_event_carries_both_spellings() -> None:
    [c] = IdleWatch(1).check([make_session()], T0 + 2.5)
    assert c.event_fields() == {
        "session_id": "s1", "idle_seconds": 2.5, "last_activity_at": to_iso(T0),
        "idleSeconds": 2.5, "lastActivityAt": to_iso(T0),
    }


def test_check_interval_is_a_fraction_of_the_threshold_within_bounds() -> None:
    assert idle_check_interval(60) == 1.0
    assert idle_check_interval(2) == 0.5
    assert idle_check_interval(0.01) == 0.02


def test_health_fields() -> None:
    s = make_session(active_at=T0, pid=77, clients=2)
    assert health_fields(s, T0 + 12.5) == {
        "session_id": "s1",
        "payload": {"alive": True, "pid": 77, "type": "wrapped", "clients": 2, "idle_seconds": 12.5,
                    "state": "running"},  # one idle field: no idleSeconds copy
    }
    assert health_fields(make_session(active_at=None), T0)["payload"]["idle_seconds"] is None


# -- SessionLifecycle: emitting, against a fake registry, clock and bus ----------------------


@dataclass
class FakeRegistry:
    sessions: list[Session] = field(default_factory=list)

    def list(self) -> list[Session]:
        return list(self.sessions)


@dataclass
class RecordingBus:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail: bool = False

    async def emit(self, kind: str, **fields: Any) -> int:
        if self.fail:
            raise RuntimeError("disk full")
        self.events.append((kind, fields))
        return len(self.events)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lifecycle(reg: FakeRegistry, bus: RecordingBus, clock: Clock, threshold: float = 10) -> SessionLifecycle:
    return SessionLifecycle(reg, bus.emit, idle_threshold=threshold, health_interval=5,  # type: ignore[arg-type]
                            clock=clock)


async def test_check_idle_emits_session_idle_once() -> None:
    reg, bus, clock = FakeRegistry([make_session()]), RecordingBus(), Clock(T0 + 10)
    lc = lifecycle(reg, bus, clock)
    await lc.check_idle()
    clock.now += 100
    await lc.check_idle()
    assert bus.events == [("session.idle", {
        "target": "s1", "session_id": "s1", "idle_seconds": 10.0, "last_activity_at": to_iso(T0),
        "idleSeconds": 10.0, "lastActivityAt": to_iso(T0),
    })]


async def test_an_idle_event_that_could_not_be_sent_is_sent_on_the_next_check() -> None:
    reg, bus, clock = FakeRegistry([make_session()]), RecordingBus(fail=True), Clock(T0 + 10)
    lc = lifecycle(reg, bus, clock)
    assert await lc.check_idle() == []
    bus.fail = False
    clock.now += 1
    assert [c.session_id for c in await lc.check_idle()] == ["s1"]
    await lc.check_idle()
    assert [k for k, _ in bus.events] == ["session.idle"]


async def test_beat_reports_each_live_session_only() -> None:
    reg = FakeRegistry([
        make_session("run"), make_session("disc", state=SessionState.DISCONNECTED),
        make_session("gone", state=SessionState.EXITED),
    ])
    bus = RecordingBus()
    lc = lifecycle(reg, bus, Clock(T0 + 3))
    assert await lc.beat() == 1
    assert bus.events == [("session_health", {"target": "run", **health_fields(reg.sessions[0], T0 + 3)})]


@dataclass
class FakeLog:
    envelopes: list[dict[str, Any]]
    calls: list[tuple[int, int, tuple[str, ...]]] = field(default_factory=list)

    async def since(self, seq: int, limit: int = 100, kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        self.calls.append((seq, limit, kinds))
        return [e for e in self.envelopes if e["seq"] > seq and e["kind"] in kinds][:limit]


async def test_restore_reads_every_page_of_earlier_idle_events() -> None:
    envs = [{"seq": i, "kind": "session.idle", "session_id": f"s{i}", "last_activity_at": to_iso(T0)}
            for i in range(1, 1202)]
    envs.append({"seq": 5000, "kind": "session.idle", "session_id": "broken"})  # no timestamp
    log = FakeLog(envs)
    reg, bus = FakeRegistry([make_session("s7"), make_session("new")]), RecordingBus()
    lc = lifecycle(reg, bus, Clock(T0 + 10))
    assert await lc.restore(log) == 1201
    assert [c[0] for c in log.calls] == [0, 500, 1000]
    assert {c[2] for c in log.calls} == {("session.idle",)}
    await lc.check_idle()
    assert [f["session_id"] for _, f in bus.events] == ["new"]  # s7's period was announced before


async def test_run_idle_reads_the_history_before_its_first_check() -> None:
    log = FakeLog([{"seq": 1, "kind": "session.idle", "session_id": "s7", "last_activity_at": to_iso(T0)}])
    reg, bus = FakeRegistry([make_session("s7"), make_session("new")]), RecordingBus()
    lc = lifecycle(reg, bus, Clock(T0 + 10), threshold=0.08)  # checks every 0.02 s of real time
    task = asyncio.create_task(lc.run_idle(history=log))
    try:
        await wait_until(lambda: bus.events, 5, message="the first idle event")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [f["session_id"] for _, f in bus.events] == ["new"]


async def test_restore_survives_an_unreadable_log() -> None:
    class Broken:
        async def since(self, *a: Any, **k: Any) -> list[dict[str, Any]]:
            raise RuntimeError("database is not open")

    lc = lifecycle(FakeRegistry(), RecordingBus(), Clock(T0))
    assert await lc.restore(Broken()) == 0


async def test_zero_threshold_or_interval_switches_the_loops_off() -> None:
    lc = SessionLifecycle(FakeRegistry(), RecordingBus().emit, idle_threshold=0,  # type: ignore[arg-type]
                          health_interval=0)
    await lc.run_idle()  # returns at once instead of looping forever
    await lc.run_health()


# -- configuration ---------------------------------------------------------------------------


def test_idle_and_health_settings_from_the_environment() -> None:
    from telepty.config import Config, ConfigError

    default = Config.from_env({})
    assert (default.idle_seconds, default.health_interval) == (60.0, 10.0)
    c = Config.from_env({"TELEPTY_IDLE_SECONDS": "0.5", "TELEPTY_HEALTH_INTERVAL": "0"})
    assert (c.idle_seconds, c.health_interval) == (0.5, 0.0)
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(ConfigError, match="TELEPTY_IDLE_SECONDS"):
            Config.from_env({"TELEPTY_IDLE_SECONDS": bad})
    with pytest.raises(ConfigError, match="TELEPTY_HEALTH_INTERVAL"):
        Config.from_env({"TELEPTY_HEALTH_INTERVAL": "-0.1"})
