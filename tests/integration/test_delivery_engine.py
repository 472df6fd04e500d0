"""The delivery engine wired to the real store and the real bus, across a daemon restart.

Unit tests cover the engine's rules against a fake; these check the seams: events land in
the durable log in the bus schema, and a fresh Database + registry + engine on the same
file (what a restarted daemon builds) picks up exactly where the last one stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from telepty.bus.hub import EventBus
from telepty.config import Config
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.model import Delivery, DeliveryError, DeliveryStatus, Origin
from telepty.delivery.profiles import SubmitProfile, load_profiles
from telepty.delivery.request import parse_inject
from telepty.delivery.transports.base import DeliveryOutcome, StageCallback, Transport, TransportBase
from telepty.sessions.model import Session, SessionType
from telepty.sessions.registry import RegisterSpec, SessionRegistry
from telepty.store.db import Database
from telepty.store.deliveries import DeliveryRepo
from telepty.store.events import EventRepo
from telepty.store.sessions import SessionRepo
from tests.helpers import wait_until


@dataclass
class Terminal:
    """What an agent's screen received, across daemon lifetimes."""

    received: list[bytes] = field(default_factory=list)
    busy_checks_left: int = 0
    hold: asyncio.Event | None = None
    fail_with: DeliveryError | None = None


class RecordingTransport(TransportBase):
    name = "recording"

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal

    async def check_ready(self, *, for_keys: bool = False) -> None:
        return None

    async def is_quiet(self, quiet_ms: int) -> bool:
        if self.terminal.busy_checks_left > 0:
            self.terminal.busy_checks_left -= 1
            return False
        return True

    async def deliver(self, d: Delivery, *, profile: SubmitProfile,
                      on_stage: StageCallback) -> DeliveryOutcome:
        await on_stage("paste")
        if self.terminal.fail_with is not None:
            raise self.terminal.fail_with
        self.terminal.received.append(d.prompt)
        if self.terminal.hold is not None:
            await self.terminal.hold.wait()
        return DeliveryOutcome("echo", {"settle_ms": profile.settle_ms})


@dataclass
class Daemon:
    """The slice of a daemon the delivery engine lives in."""

    db: Database
    bus: EventBus
    registry: SessionRegistry
    engine: DeliveryEngine
    repo: DeliveryRepo
    stopped: bool = False

    async def stop(self) -> None:
        self.stopped = True
        await self.engine.stop()
        await self.db.close()


async def boot(path: Path, config: Config, term: Terminal, *, first: bool = False) -> Daemon:
    db = Database(path)
    await db.open()
    bus = EventBus(EventRepo(db), config.machine_id)
    registry = SessionRegistry(SessionRepo(db), emit=bus.emit, pane_probe=_pane_alive)
    await registry.load()
    if first:
        await registry.register(
            RegisterSpec(type=SessionType.PANE, session_id="agent", tmux_pane="%1", agent="codex")
        )

    def resolve(_session: Session) -> Transport:
        return RecordingTransport(term)

    repo = DeliveryRepo(db)
    engine = DeliveryEngine(
        repo, registry, resolve, bus.emit, load_profiles(None, settle_ms_override=5), config
    )
    await engine.start()
    return Daemon(db, bus, registry, engine, repo)


async def _pane_alive(_session: Session, _on_output: object = None) -> bool:
    return True


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    running: list[Daemon] = []
    yield running
    for d in running:
        if not d.stopped:
            await d.stop()


def inject(prompt: str, **fields: object):  # type: ignore[no-untyped-def]
    return parse_inject({"prompt": prompt, **fields}, max_prompt_bytes=1024 * 1024)


async def test_events_land_in_the_durable_log_in_bus_schema(
    tmp_path: Path, config: Config, daemons: list[Daemon]
) -> None:
    term = Terminal()
    d = await boot(tmp_path / "telepty.db", config, term, first=True)
    daemons.append(d)
    sub = d.bus.subscribe(frozenset({"inject_written", "delivery.failed"}))

    ok = await d.engine.submit(
        inject("write the tests", **{"from": "claude-1", "reply_expected": True}),
        target="agent", origin=Origin.BUS_AUTO_ROUTE, idempotency_key="msg-1",
    )
    done = await d.engine.wait(ok.id, 5)
    assert done.status is DeliveryStatus.DELIVERED and done.confirmed == "echo"
    assert done.evidence == {"settle_ms": 5}

    term.fail_with = DeliveryError("pane_dead", "pane %1 is gone", stage="paste_buffer")
    bad = await d.engine.submit(inject("again"), target="agent", origin=Origin.API)
    failed = await d.engine.wait(bad.id, 5)
    assert failed.status is DeliveryStatus.FAILED
    assert (failed.reason, failed.stage) == ("pane_dead", "paste_buffer")

    live = [await asyncio.wait_for(sub.queue.get(), 5) for _ in range(2)]
    logged = await d.bus.events.since(0, kinds=("inject_written", "delivery.failed"))
    assert [e["kind"] for e in logged] == ["inject_written", "delivery.failed"]
    assert [e["message_id"] for e in live] == [e["message_id"] for e in logged]

    written, lost = logged
    assert written["version"] == 2 and written["source"] == "daemon"
    assert written["source_host"] == "test-machine" and written["target"] == "agent"
    assert written["inject_id"] == ok.id and written["target_agent"] == "agent"
    assert written["source_type"] == "bus_auto_route" and written["delivered"] is True
    assert written["from"] == "claude-1" and written["reply_to"] == "claude-1"
    assert written["reply_expected"] is True
    assert written["prompt_bytes"] == len(b"write the tests")
    assert written["prompt_sha256"] == done.prompt_sha256
    assert "write the tests" not in str(written)
    assert lost["delivery_id"] == bad.id and lost["session_id"] == "agent"
    assert lost["reason"] == "pane_dead" and lost["attempts"] == 1 and lost["detail"] == "pane %1 is gone"


async def test_a_restarted_daemon_resumes_on_the_same_database(
    tmp_path: Path, config: Config, daemons: list[Daemon]
) -> None:
    path = tmp_path / "telepty.db"
    term = Terminal(busy_checks_left=1)
    first = await boot(path, config.with_(retry_schedule=(30.0,)), term, first=True)
    daemons.append(first)
    parked = await first.engine.submit(
        inject("parked"), target="agent", origin=Origin.API, idempotency_key="park-1"
    )
    queued = await first.engine.submit(inject("queued"), target="agent", origin=Origin.CLI)

    async def parked_retrying() -> bool:
        return (await first.engine.get(parked.id)).status is DeliveryStatus.RETRYING

    await wait_until(parked_retrying, message="the first prompt to be parked on the schedule")
    await first.stop()

    second = await boot(path, config, term)
    daemons.append(second)
    assert second.registry.get("agent") is not None
    a = await second.engine.wait(parked.id, 5)
    b = await second.engine.wait(queued.id, 5)
    assert (a.status, a.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert b.status is DeliveryStatus.DELIVERED
    assert term.received == [b"parked", b"queued"]

    # The idempotency key outlives the daemon that accepted it.
    again = await second.engine.submit(
        inject("parked"), target="agent", origin=Origin.API, idempotency_key="park-1"
    )
    assert again.id == parked.id and again.status is DeliveryStatus.DELIVERED
    assert term.received == [b"parked", b"queued"]


async def test_a_daemon_killed_mid_paste_does_not_paste_twice(
    tmp_path: Path, config: Config, daemons: list[Daemon]
) -> None:
    path = tmp_path / "telepty.db"
    term = Terminal(hold=asyncio.Event())
    first = await boot(path, config, term, first=True)
    daemons.append(first)
    pasting = await first.engine.submit(inject("only once"), target="agent", origin=Origin.API,
                                        idempotency_key="k")
    await wait_until(lambda: term.received == [b"only once"], message="the paste")
    await first.stop()

    term.hold = None
    second = await boot(path, config, term)
    daemons.append(second)
    d = await second.engine.wait(pasting.id, 5)
    assert (d.status, d.reason) == (DeliveryStatus.FAILED, "interrupted")
    repeat = await second.engine.submit(inject("only once"), target="agent", origin=Origin.API,
                                        idempotency_key="k")
    assert repeat.id == pasting.id and repeat.status is DeliveryStatus.FAILED
    assert term.received == [b"only once"]
    [failed] = await second.bus.events.since(0, kinds=("delivery.failed",))
    assert failed["reason"] == "interrupted" and failed["delivery_id"] == pasting.id
