"""DeliveryEngine against a scripted fake transport, real SQLite and a real SessionRegistry.

The fake records every prompt that "reached the terminal", in order, so each test can
assert what an agent would actually have seen. The engine runs on a virtual clock, so a
retry schedule or a hold limit takes no real time (tests that race the schedule against
a terminal's real output use the system clock).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from telepty.activity import OutputActivity
from telepty.clock import to_iso
from telepty.config import Config
from telepty.delivery.engine import INTERRUPTED_DETAIL, DeliveryEngine
from telepty.delivery.model import Delivery, DeliveryError, DeliveryKind, DeliveryStatus, Origin
from telepty.delivery.profiles import SubmitProfile, load_profiles
from telepty.delivery.request import InjectRequest, parse_inject
from telepty.delivery.schedule import SYSTEM_CLOCK, Clock
from telepty.delivery.transports.base import (
    DeliveryOutcome,
    Settled,
    StageCallback,
    Transport,
    TransportBase,
)
from telepty.errors import Conflict, NotFound
from telepty.sessions.model import Session, SessionState, SessionType
from telepty.sessions.registry import RegisterSpec, SessionRegistry
from telepty.store.db import Database
from telepty.store.deliveries import DeliveryRepo
from telepty.store.sessions import SessionRepo
from tests.helpers import wait_until
from tests.virtual_clock import VirtualClock

MIB = 1024 * 1024


@dataclass
class FakeTarget:
    """One session's terminal, scripted; shared by every transport resolved for it."""

    seen: list[bytes] = field(default_factory=list)  # prompts that reached the terminal
    quiet: list[bool] = field(default_factory=list)  # consumed per guard; empty → quiet
    always_busy: bool = False
    ready_errors: list[Exception] = field(default_factory=list)
    deliver_errors: list[Exception] = field(default_factory=list)  # raised after "paste"
    gate: asyncio.Event | None = None  # holds deliver() after the prompt landed
    on_paste: Callable[[], Awaitable[None]] | None = None
    guard_args: list[int] = field(default_factory=list)
    profiles_used: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    # When set, the guard reads it and the transport offers ``settled`` (wake-ups).
    activity: OutputActivity | None = None
    # The agent's input line, drawn as "> {input}" (the claude profile reads it): a paste
    # puts the prompt there and the submit takes it out, into ``submitted``.
    input: str = ""
    submitted: list[bytes] = field(default_factory=list)
    cleared: int = 0
    clear_works: bool = True


class FakeTransport(TransportBase):
    name = "fake"

    def __init__(self, target: FakeTarget) -> None:
        self.t = target
        self.term = self  # what recovery and holds look at

    async def screen(self) -> list[str]:
        return [f"> {self.t.input}"]

    async def input_lines(self) -> list[str]:
        return await self.screen()

    async def submit_pasted(self, prompt: bytes, *, profile: SubmitProfile,
                            on_stage: StageCallback) -> DeliveryOutcome:
        await on_stage("submit")
        self.t.submitted.append(self.t.input.encode())
        self.t.input = ""
        return DeliveryOutcome("screen", {"tail_after": "idle"})

    async def clear_input(self, keys: list[str]) -> None:
        self.t.cleared += 1
        if self.t.clear_works:
            self.t.input = ""

    async def check_ready(self, *, for_keys: bool = False) -> None:
        if self.t.ready_errors:
            raise self.t.ready_errors.pop(0)

    async def is_quiet(self, quiet_ms: int) -> bool:
        self.t.guard_args.append(quiet_ms)
        if self.t.always_busy:
            return False
        if self.t.quiet:
            return self.t.quiet.pop(0)
        return True if self.t.activity is None else self.t.activity.quiet_for(quiet_ms / 1000.0)

    def settled(self, quiet_ms: int, *, needs_output: bool) -> Settled | None:
        activity = self.t.activity
        if activity is None:
            return None
        since = activity.now() if needs_output else None
        return lambda: activity.wait_quiet(quiet_ms / 1000.0, printed_after=since)

    async def deliver(self, d: Delivery, *, profile: SubmitProfile,
                      on_stage: StageCallback) -> DeliveryOutcome:
        prompt, no_enter = d.prompt, d.no_enter
        self.t.in_flight += 1
        self.t.max_in_flight = max(self.t.max_in_flight, self.t.in_flight)
        try:
            await on_stage("paste")
            if self.t.on_paste is not None:
                await self.t.on_paste()
            if self.t.deliver_errors:
                raise self.t.deliver_errors.pop(0)
            self.t.seen.append(prompt)
            self.t.input += prompt.decode()
            self.t.profiles_used.append(profile.name)
            if self.t.gate is not None:
                await self.t.gate.wait()
            if not no_enter:
                await on_stage("submit")
                self.t.submitted.append(self.t.input.encode())
                self.t.input = ""
            await on_stage("confirm")
            return DeliveryOutcome("screen", {"tail_after": "idle", "no_enter": no_enter})
        finally:
            self.t.in_flight -= 1


class Harness:
    def __init__(self, db: Database, registry: SessionRegistry, config: Config) -> None:
        self.db = db
        self.repo = DeliveryRepo(db)
        self.registry = registry
        self.config = config
        self.targets: dict[str, FakeTarget] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.resolver_error: DeliveryError | None = None
        self.engines: list[DeliveryEngine] = []
        self.profiles = load_profiles(None, settle_ms_override=0)
        self.clock = VirtualClock()

    def target(self, session_id: str) -> FakeTarget:
        return self.targets.setdefault(session_id, FakeTarget())

    def resolve(self, session: Session) -> Transport:
        if self.resolver_error is not None:
            raise self.resolver_error
        return FakeTransport(self.target(session.id))

    async def emit(self, kind: str, **fields: Any) -> int:
        self.events.append((kind, fields))
        return len(self.events)

    def engine(self, clock: Clock | None = None, **config_changes: Any) -> DeliveryEngine:
        e = DeliveryEngine(
            self.repo, self.registry, self.resolve, self.emit, self.profiles,
            self.config.with_(**config_changes), rng=random.Random(0), clock=clock or self.clock,
        )
        self.engines.append(e)
        return e

    async def started(self, clock: Clock | None = None, **config_changes: Any) -> DeliveryEngine:
        e = self.engine(clock, **config_changes)
        await e.start()
        return e

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [f for k, f in self.events if k == kind]


@pytest.fixture
async def h(tmp_path: Path, config: Config) -> AsyncIterator[Harness]:
    db = Database(tmp_path / "telepty.db")
    await db.open()
    registry = SessionRegistry(SessionRepo(db))
    await registry.register(RegisterSpec(type=SessionType.PANE, session_id="s1", tmux_pane="%1",
                                         agent="claude", command="claude"))
    await registry.register(RegisterSpec(type=SessionType.PANE, session_id="s2", tmux_pane="%2",
                                         agent="codex", command="codex"))
    harness = Harness(db, registry, config)
    yield harness
    for e in harness.engines:
        await e.stop()
    await db.close()


def mixed_utf8_text(size: int) -> str:
    """Exactly ``size`` bytes of UTF-8 mixing 1- to 4-byte characters."""
    rng = random.Random(11)
    chars: list[str] = []
    used = 0
    while used < size - 4:
        c = rng.choice("ab \n\t—é한국어✓\U0001f600")
        chars.append(c)
        used += len(c.encode())
    chars.append("x" * (size - used))
    return "".join(chars)


def req(prompt: str = "hello", **fields: Any) -> InjectRequest:
    return parse_inject({"prompt": prompt, **fields}, max_prompt_bytes=MIB)


async def submit(engine: DeliveryEngine, prompt: str = "hello", target: str = "s1", **kw: Any) -> Delivery:
    fields = {k: kw.pop(k) for k in list(kw) if k not in ("idempotency_key", "verified_sender")}
    return await engine.submit(req(prompt, **fields), target=target, origin=Origin.API, **kw)


async def final(engine: DeliveryEngine, delivery_id: str, timeout: float = 5.0) -> Delivery:
    """The final record; on a virtual clock, time runs (wait to wait) until it is final."""
    if isinstance(engine.clock, VirtualClock):
        async def finished() -> Delivery | None:
            d = await engine.get(delivery_id)
            return d if d.final else None

        return await engine.clock.run_until(finished, timeout)
    d = await engine.wait(delivery_id, timeout)
    assert d.final, f"delivery still {d.status} after {timeout}s"
    return d


async def status_is(engine: DeliveryEngine, delivery_id: str, status: DeliveryStatus) -> Delivery:
    async def check() -> Delivery | None:
        d = await engine.get(delivery_id)
        return d if d.status is status else None

    return await wait_until(check, message=f"{delivery_id} to be {status}")  # type: ignore[no-any-return]


# -- the happy path and what it records ---------------------------------------------------


async def test_delivers_persists_and_announces(h: Harness) -> None:
    engine = await h.started()
    accepted = await submit(engine, "hello", **{"from": "s2", "thread_id": "t1", "reply_expected": True})
    assert accepted.status is DeliveryStatus.QUEUED and accepted.id.startswith("dlv_")
    stored = await h.repo.get(accepted.id)
    assert stored is not None and stored.seq == 1  # persisted before submit returned

    d = await final(engine, accepted.id)
    assert d.status is DeliveryStatus.DELIVERED
    assert (d.attempts, d.confirmed, d.reason) == (1, "screen", None)
    assert d.finished_at and d.started_at and d.evidence["tail_after"] == "idle"
    assert h.target("s1").seen == [b"hello"]
    assert h.target("s1").profiles_used == ["claude"]
    assert h.target("s1").guard_args == [h.config.quiet_ms]

    [ev] = h.kinds("inject_written")
    assert ev["inject_id"] == d.id and ev["target_agent"] == "s1" and ev["target"] == "s1"
    assert ev["from"] == "s2" and ev["reply_to"] == "s2" and ev["thread_id"] == "t1"
    assert ev["reply_expected"] is True and ev["delivered"] is True and ev["source_type"] == "api"
    assert ev["prompt_bytes"] == 5 and ev["prompt_sha256"] == d.prompt_sha256
    assert "hello" not in repr(ev)  # the prompt text never goes on the bus
    assert h.kinds("delivery.failed") == []


async def test_paste_stage_is_persisted_before_any_byte(h: Harness) -> None:
    engine = await h.started()
    observed: list[tuple[DeliveryStatus, str | None]] = []

    async def look() -> None:
        [row] = await h.repo.list(session="s1")
        observed.append((row.status, row.stage))

    h.target("s1").on_paste = look
    await final(engine, (await submit(engine)).id)
    assert observed == [(DeliveryStatus.DELIVERING, "paste")]


async def test_to_public_hides_the_prompt_unless_asked(h: Harness) -> None:
    engine = await h.started()
    d = await final(engine, (await submit(engine, "secret ✓")).id)
    pub = d.to_public()
    assert "prompt" not in pub and pub["prompt_bytes"] == len("secret ✓".encode())
    assert pub["status"] == "delivered" and pub["delivery_id"] == d.id and pub["origin"] == "api"
    assert d.to_public(include_prompt=True)["prompt"] == "secret ✓"


async def test_quiet_ms_and_no_enter_are_passed_through(h: Harness) -> None:
    engine = await h.started()
    d = await final(engine, (await submit(engine, quiet_ms=1234, no_enter=True)).id)
    assert h.target("s1").guard_args == [1234]
    assert d.evidence["no_enter"] is True


# -- ordering -----------------------------------------------------------------------------


async def test_fifo_per_session_while_another_session_proceeds(h: Harness) -> None:
    engine = await h.started()
    t1 = h.target("s1")
    t1.gate = asyncio.Event()
    prompts = [f"prompt {i}" for i in range(20)]
    accepted = await asyncio.gather(*(submit(engine, p, "s1") for p in prompts))

    # s1 is stuck on its first prompt; s2 is not held up by it.
    other = await final(engine, (await submit(engine, "for s2", "s2")).id)
    assert other.status is DeliveryStatus.DELIVERED
    assert t1.seen == [b"prompt 0"]
    assert (await engine.get(accepted[1].id)).status is DeliveryStatus.QUEUED

    t1.gate.set()
    done = [await final(engine, d.id) for d in accepted]
    assert all(d.status is DeliveryStatus.DELIVERED for d in done)
    assert t1.seen == [p.encode() for p in prompts]
    assert [d.seq for d in done] == sorted(d.seq for d in done)
    assert t1.max_in_flight == 1
    assert h.target("s2").seen == [b"for s2"]


# -- the quiet guard and the retry schedule -----------------------------------------------


async def test_busy_then_quiet_retries_and_delivers(h: Harness) -> None:
    engine = await h.started()
    h.target("s1").quiet = [False]
    accepted = await submit(engine)
    retrying = await status_is(engine, accepted.id, DeliveryStatus.RETRYING)
    assert retrying.reason == "busy" and retrying.next_attempt_at and retrying.attempts == 1
    d = await final(engine, accepted.id)
    assert d.status is DeliveryStatus.DELIVERED and d.attempts == 2 and d.reason is None
    assert h.target("s1").seen == [b"hello"]


async def test_busy_forever_exhausts_the_schedule(h: Harness) -> None:
    engine = await h.started()
    h.target("s1").always_busy = True
    d = await final(engine, (await submit(engine)).id)
    assert d.status is DeliveryStatus.FAILED and d.reason == "retry_exhausted"
    assert d.attempts == len(h.config.retry_schedule) + 1
    assert "busy" in (d.detail or "")
    assert h.target("s1").seen == [] and len(h.target("s1").guard_args) == d.attempts
    [ev] = h.kinds("delivery.failed")
    assert ev["delivery_id"] == d.id and ev["reason"] == "retry_exhausted" and ev["attempts"] == d.attempts
    assert h.kinds("inject_written") == []


async def test_a_busy_terminal_is_served_when_its_output_stops_not_at_the_next_slot(h: Harness) -> None:
    engine = await h.started(SYSTEM_CLOCK, retry_schedule=(30.0,), quiet_ms=200)
    t = h.target("s1")
    t.activity = OutputActivity()
    printing = True

    async def prints() -> None:
        while printing:
            t.activity.note_output(10)  # type: ignore[union-attr]
            await asyncio.sleep(0.02)

    task = asyncio.create_task(prints())
    d = await submit(engine)
    busy = await status_is(engine, d.id, DeliveryStatus.RETRYING)
    assert busy.reason == "busy" and busy.attempts == 1
    printing = False
    await task
    done = await final(engine, d.id, timeout=5.0)  # the slot would have been 30 s
    assert done.status is DeliveryStatus.DELIVERED and t.seen == [b"hello"]
    assert done.attempts == 1  # the look when the output stopped was not another attempt


async def test_early_looks_that_still_find_it_busy_keep_the_slot(h: Harness) -> None:
    # One slot of 30 s: were early looks attempts, the second would exhaust the schedule.
    engine = await h.started(SYSTEM_CLOCK, retry_schedule=(30.0,), quiet_ms=50)
    t = h.target("s1")
    t.activity = OutputActivity()
    t.quiet = [False, False, False]
    d = await submit(engine)
    done = await final(engine, d.id, timeout=5.0)
    assert done.status is DeliveryStatus.DELIVERED and done.attempts == 1
    assert len(t.guard_args) == 4 and t.seen == [b"hello"]


async def test_a_terminal_that_cannot_tell_waits_for_the_slot(h: Harness) -> None:
    engine = await h.started(retry_schedule=(0.3, 0.3), quiet_ms=50)
    t = h.target("s1")
    t.quiet = [False]
    done = await final(engine, (await submit(engine)).id)
    assert done.status is DeliveryStatus.DELIVERED and done.attempts == 2


async def test_a_retrying_delivery_holds_the_head_of_its_queue(h: Harness) -> None:
    engine = await h.started()
    h.target("s1").quiet = [False]
    first = await submit(engine, "first")
    second = await submit(engine, "second")
    await status_is(engine, first.id, DeliveryStatus.RETRYING)
    assert (await engine.get(second.id)).status is DeliveryStatus.QUEUED
    await final(engine, second.id)
    assert h.target("s1").seen == [b"first", b"second"]


async def test_force_skips_the_guard(h: Harness) -> None:
    engine = await h.started()
    h.target("s1").always_busy = True
    d = await final(engine, (await submit(engine, force=True)).id)
    assert d.status is DeliveryStatus.DELIVERED and d.attempts == 1
    assert h.target("s1").guard_args == []


# -- failures -----------------------------------------------------------------------------


async def test_non_retryable_error_fails_with_reason_and_stage(h: Harness) -> None:
    engine = await h.started()
    h.target("s1").deliver_errors = [
        DeliveryError("not_submitted", "prompt still in the composer", stage="confirm",
                      evidence={"tail_after": "> hello"}),
    ]
    d = await final(engine, (await submit(engine)).id)
    assert (d.status, d.reason, d.stage) == (DeliveryStatus.FAILED, "not_submitted", "confirm")
    assert d.detail == "prompt still in the composer" and d.evidence == {"tail_after": "> hello"}
    assert d.attempts == 1
    [ev] = h.kinds("delivery.failed")
    assert ev["reason"] == "not_submitted" and ev["stage"] == "confirm"
    # The queue moves on.
    assert (await final(engine, (await submit(engine, "next")).id)).status is DeliveryStatus.DELIVERED


async def test_error_without_a_stage_keeps_the_last_stage_entered(h: Harness) -> None:
    engine = await h.started()
    h.target("s1").deliver_errors = [DeliveryError("pane_dead", "pane %1 is gone")]
    d = await final(engine, (await submit(engine)).id)
    assert (d.reason, d.stage) == ("pane_dead", "paste")


async def test_retryable_error_goes_on_the_schedule(h: Harness) -> None:
    engine = await h.started()
    h.target("s1").ready_errors = [DeliveryError("tmux_cmd_failed", "flake", retryable=True)]
    accepted = await submit(engine)
    retrying = await status_is(engine, accepted.id, DeliveryStatus.RETRYING)
    assert retrying.reason == "tmux_cmd_failed"
    d = await final(engine, accepted.id)
    assert d.status is DeliveryStatus.DELIVERED and d.attempts == 2


async def test_unexpected_exception_fails_the_delivery_not_the_worker(h: Harness) -> None:
    engine = await h.started()
    h.target("s1").deliver_errors = [RuntimeError("boom")]
    d = await final(engine, (await submit(engine, "one")).id)
    assert d.status is DeliveryStatus.FAILED and d.reason == "write_failed" and "boom" in (d.detail or "")
    assert (await final(engine, (await submit(engine, "two")).id)).status is DeliveryStatus.DELIVERED
    assert h.target("s1").seen == [b"two"]


async def test_resolver_without_transport_fails(h: Harness) -> None:
    engine = await h.started()
    h.resolver_error = DeliveryError("no_transport", "nothing can reach s1")
    d = await final(engine, (await submit(engine)).id)
    assert (d.status, d.reason) == (DeliveryStatus.FAILED, "no_transport")


async def test_disconnected_session_waits_for_its_wrapper(h: Harness) -> None:
    engine = await h.started()
    await h.registry.set_state("s1", SessionState.DISCONNECTED)
    accepted = await submit(engine)
    retrying = await status_is(engine, accepted.id, DeliveryStatus.RETRYING)
    assert retrying.reason == "session_disconnected"
    await h.registry.set_state("s1", SessionState.RUNNING)
    assert (await final(engine, accepted.id)).status is DeliveryStatus.DELIVERED


async def test_exited_session_fails(h: Harness) -> None:
    engine = await h.started()
    await h.registry.set_state("s1", SessionState.EXITED)
    d = await final(engine, (await submit(engine)).id)
    assert (d.status, d.reason) == (DeliveryStatus.FAILED, "session_exited")
    assert h.target("s1").seen == []


# -- accepting ----------------------------------------------------------------------------


async def test_unknown_target_is_not_found_and_stores_nothing(h: Harness) -> None:
    engine = await h.started()
    with pytest.raises(NotFound) as e:
        await submit(engine, target="nobody")
    assert e.value.code == "session_not_found"
    assert await h.repo.list() == []


async def test_alias_resolves_to_the_exact_session(h: Harness) -> None:
    engine = await h.started()
    await h.registry.register(
        RegisterSpec(type=SessionType.PANE, session_id="s1", tmux_pane="%9", pid=1), replace=True
    )  # s1 becomes s1-2, alias s1
    d = await final(engine, (await submit(engine, target="s1")).id)
    assert d.target == "s1" and d.session_id == "s1-2"
    assert h.target("s1-2").seen == [b"hello"]


async def test_idempotency_key_returns_the_same_delivery(h: Harness) -> None:
    engine = await h.started()
    first = await submit(engine, "once", idempotency_key="k-1")
    again = await submit(engine, "twice?", idempotency_key="k-1")
    racing = await asyncio.gather(*(submit(engine, "race", idempotency_key="k-2") for _ in range(5)))
    assert again.id == first.id
    assert len({d.id for d in racing}) == 1
    await final(engine, first.id)
    await final(engine, racing[0].id)
    await h.registry.remove("s1")  # the target going away does not change the answer
    assert (await submit(engine, "later", idempotency_key="k-1")).id == first.id
    assert len(await h.repo.list()) == 2
    assert h.target("s1").seen == [b"once", b"race"]


async def test_sender_identity_and_spoofing(h: Harness) -> None:
    engine = await h.started()
    honest = await submit(engine, verified_sender="s2", **{"from": "s2"})
    implicit = await submit(engine, verified_sender="s2")
    liar = await submit(engine, verified_sender="s2", **{"from": "s1"})
    unverified = await submit(engine, **{"from": "s1"})
    assert (honest.spoofed, honest.verified_sender) == (False, "s2")
    assert (implicit.sender, implicit.reply_to, implicit.spoofed) == ("s2", "s2", False)
    assert liar.spoofed is True and liar.sender == "s1"
    assert unverified.spoofed is False and unverified.verified_sender is None
    assert (await h.repo.get(liar.id)).spoofed is True  # type: ignore[union-attr]


async def test_megabyte_of_mixed_utf8_arrives_byte_exact(h: Harness) -> None:
    engine = await h.started()
    text = mixed_utf8_text(MIB)
    prompt = text.encode()
    assert len(prompt) == MIB and len(text) < MIB  # exactly at the limit, multi-byte heavy
    d = await final(engine, (await submit(engine, text)).id)
    assert d.status is DeliveryStatus.DELIVERED
    assert h.target("s1").seen == [prompt]
    stored = await h.repo.get(d.id)
    assert stored is not None and stored.prompt == prompt


# -- waiting and cancelling ---------------------------------------------------------------


async def test_wait_returns_the_final_record_or_the_current_one_on_timeout(h: Harness) -> None:
    engine = await h.started()
    t = h.target("s1")
    t.gate = asyncio.Event()
    accepted = await submit(engine)
    await wait_until(lambda: t.seen == [b"hello"], message="the paste")
    current = await engine.wait(accepted.id, 0.05)
    assert current.status is DeliveryStatus.DELIVERING and current.stage == "paste"
    waiter = asyncio.create_task(engine.wait(accepted.id, 5))
    t.gate.set()
    d = await waiter
    assert d.status is DeliveryStatus.DELIVERED
    assert (await engine.wait(accepted.id, 5)).status is DeliveryStatus.DELIVERED  # already final
    with pytest.raises(NotFound):
        await engine.wait("dlv_missing", 1)


async def test_cancel_while_queued(h: Harness) -> None:
    engine = await h.started()
    t = h.target("s1")
    t.gate = asyncio.Event()
    head = await submit(engine, "head")
    behind = await submit(engine, "behind")
    await wait_until(lambda: t.seen == [b"head"])

    cancelled = await engine.cancel(behind.id)
    assert (cancelled.status, cancelled.reason) == (DeliveryStatus.CANCELLED, "cancelled")
    with pytest.raises(Conflict) as e:
        await engine.cancel(head.id)  # already writing
    assert e.value.code == "not_cancellable"

    t.gate.set()
    assert (await final(engine, head.id)).status is DeliveryStatus.DELIVERED
    after = await final(engine, (await submit(engine, "after")).id)
    assert after.status is DeliveryStatus.DELIVERED
    assert t.seen == [b"head", b"after"]
    assert (await h.repo.get(behind.id)).status is DeliveryStatus.CANCELLED  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        await engine.cancel(head.id)  # final
    with pytest.raises(NotFound) as nf:
        await engine.cancel("dlv_missing")
    assert nf.value.code == "delivery_not_found"


async def test_cancel_while_retrying_interrupts_the_wait(h: Harness) -> None:
    engine = await h.started(retry_schedule=(60.0,))
    t = h.target("s1")
    t.always_busy = True
    stuck = await submit(engine, "stuck")
    behind = await submit(engine, "behind")
    await status_is(engine, stuck.id, DeliveryStatus.RETRYING)
    waiter = asyncio.create_task(engine.wait(stuck.id, 30))

    t.always_busy = False
    started = h.clock.now
    cancelled = await engine.cancel(stuck.id)
    assert cancelled.status is DeliveryStatus.CANCELLED
    assert (await waiter).status is DeliveryStatus.CANCELLED
    # The 60 s wait was interrupted: the next prompt goes through now.
    assert (await final(engine, behind.id)).status is DeliveryStatus.DELIVERED
    assert t.seen == [b"behind"]
    assert h.clock.now - started < 60


# -- stopping and resuming ----------------------------------------------------------------


async def test_accepted_while_stopped_is_delivered_after_start(h: Harness) -> None:
    engine = h.engine()
    accepted = await submit(engine)
    assert (await h.repo.get(accepted.id)).status is DeliveryStatus.QUEUED  # type: ignore[union-attr]
    await engine.start()
    assert (await final(engine, accepted.id)).status is DeliveryStatus.DELIVERED


async def test_restart_mid_schedule_resumes_and_delivers_exactly_once(h: Harness) -> None:
    first_engine = await h.started(retry_schedule=(30.0,))
    t = h.target("s1")
    t.quiet = [False]
    waiting = await submit(first_engine, "waiting")
    behind = await submit(first_engine, "behind")
    await status_is(first_engine, waiting.id, DeliveryStatus.RETRYING)
    await first_engine.stop()
    rows = {d.id: d for d in await h.repo.list()}
    assert rows[waiting.id].status is DeliveryStatus.RETRYING and rows[waiting.id].attempts == 1
    assert rows[behind.id].status is DeliveryStatus.QUEUED

    # The new daemon's schedule bounds the remaining wait, so this does not take 30 s.
    second_engine = await h.started()
    started = h.clock.now
    a = await final(second_engine, waiting.id)
    assert h.clock.now - started <= second_engine.schedule.longest + 1e-6
    b = await final(second_engine, behind.id)
    assert (a.status, a.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert b.status is DeliveryStatus.DELIVERED
    assert t.seen == [b"waiting", b"behind"]
    assert len(h.kinds("inject_written")) == 2


async def test_a_prompt_caught_in_the_input_by_a_stop_is_submitted_once(h: Harness) -> None:
    first_engine = await h.started()
    t = h.target("s1")
    t.gate = asyncio.Event()  # the prompt is in the input; the daemon dies before submitting
    pasting = await submit(first_engine, "pasting")
    queued = await submit(first_engine, "queued")
    await wait_until(lambda: t.seen == [b"pasting"])
    await first_engine.stop()
    row = await h.repo.get(pasting.id)
    assert row is not None and (row.status, row.stage) == (DeliveryStatus.DELIVERING, "paste")

    t.gate = None
    second_engine = await h.started()
    d = await final(second_engine, pasting.id)
    assert (d.status, d.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert d.evidence["recovery"]["input"] == "whole"
    assert (await final(second_engine, queued.id)).status is DeliveryStatus.DELIVERED
    assert t.seen == [b"pasting", b"queued"]  # pasted once each…
    assert t.submitted == [b"pasting", b"queued"]  # …and submitted once each, apart
    assert h.kinds("delivery.failed") == []


async def test_a_no_enter_prompt_found_whole_in_the_input_is_not_submitted(h: Harness) -> None:
    t = h.target("s1")
    row = await h.repo.insert(Delivery(session_id="s1", target="s1", prompt=b"a draft to keep",
                                       origin=Origin.CLI, status=DeliveryStatus.DELIVERING,
                                       stage="paste", attempts=1, no_enter=True))
    t.input = "a draft to keep"
    engine = await h.started()
    d = await final(engine, row.id)
    assert (d.status, d.confirmed) == (DeliveryStatus.DELIVERED, "screen")
    assert t.submitted == [] and t.input == "a draft to keep"


async def test_part_of_a_prompt_in_the_input_is_cleared_and_pasted_again(h: Harness) -> None:
    t = h.target("s1")
    part = await h.repo.insert(Delivery(session_id="s1", target="s1", prompt=b"the whole prompt text",
                                        origin=Origin.CLI, status=DeliveryStatus.DELIVERING,
                                        stage="paste", attempts=1))
    t.input = "the whole pro"
    engine = await h.started()
    d = await final(engine, part.id)
    assert (d.status, d.attempts, t.cleared) == (DeliveryStatus.DELIVERED, 2, 1)
    assert t.submitted == [b"the whole prompt text"]
    assert d.evidence["recovery"]["input"] == "part"


async def test_an_input_that_will_not_clear_holds_the_session(h: Harness) -> None:
    t = h.target("s1")
    t.clear_works = False
    part = await h.repo.insert(Delivery(session_id="s1", target="s1", prompt=b"the whole prompt text",
                                        origin=Origin.CLI, status=DeliveryStatus.DELIVERING,
                                        stage="paste", attempts=1))
    t.input = "the whole pro"
    engine = await h.started(hold_max_s=60.0)
    d = await final(engine, part.id)
    assert (d.status, d.reason) == (DeliveryStatus.FAILED, "interrupted")
    behind = await submit(engine, "behind")
    held = await status_is(engine, behind.id, DeliveryStatus.HELD)
    assert held.reason == "leftover_in_input" and held.evidence["blocked_by"] == part.id
    later = await submit(engine, "later")
    assert (await engine.get(later.id)).status is DeliveryStatus.HELD  # held from the start
    [ev] = h.kinds("session.held")
    assert ev["blocked_by"] == part.id and t.submitted == []

    # Cancelling the blocking delivery ends the hold: both go, in order, apart.
    await engine.cancel(part.id)
    t.input = ""
    assert (await final(engine, behind.id)).status is DeliveryStatus.DELIVERED
    assert (await final(engine, later.id)).status is DeliveryStatus.DELIVERED
    assert t.submitted == [b"behind", b"later"]
    assert len(h.kinds("session.held")) == 1


async def test_held_prompts_fail_after_the_hold_limit(h: Harness) -> None:
    t = h.target("s1")
    t.clear_works = False
    await h.repo.insert(Delivery(session_id="s1", target="s1", prompt=b"the whole prompt text",
                                 origin=Origin.CLI, status=DeliveryStatus.DELIVERING, stage="paste",
                                 attempts=1))
    # One was waiting for its next retry slot (30 s away) when the daemon died.
    waiting = await h.repo.insert(Delivery(
        session_id="s1", target="s1", prompt=b"was retrying", origin=Origin.CLI,
        status=DeliveryStatus.RETRYING, stage="quiet_guard", attempts=1, reason="busy",
        next_attempt_at=to_iso(time.time() + 30)))
    t.input = "the whole pro"
    engine = await h.started(hold_max_s=0.3, retry_schedule=(30.0,))
    a = await submit(engine, "first behind")
    b = await submit(engine, "second behind")
    for d in (await final(engine, waiting.id), await final(engine, a.id), await final(engine, b.id)):
        assert (d.status, d.reason) == (DeliveryStatus.FAILED, "held_timeout"), d
    assert t.submitted == [] and t.seen == []


async def test_start_sorts_out_rows_left_by_a_crash(h: Harness) -> None:
    def row(prompt: bytes, status: DeliveryStatus, stage: str | None, attempts: int) -> Delivery:
        return Delivery(session_id="s1", target="s1", prompt=prompt, origin=Origin.CLI,
                        status=status, stage=stage, attempts=attempts)

    at_paste = await h.repo.insert(row(b"at paste", DeliveryStatus.DELIVERING, "paste", 1))
    at_confirm = await h.repo.insert(row(b"at confirm", DeliveryStatus.DELIVERING, "confirm", 1))
    at_guard = await h.repo.insert(row(b"at guard", DeliveryStatus.DELIVERING, "quiet_guard", 1))
    retrying = await h.repo.insert(row(b"retrying", DeliveryStatus.RETRYING, "quiet_guard", 1))
    queued = await h.repo.insert(row(b"queued", DeliveryStatus.QUEUED, None, 0))
    done = await h.repo.insert(row(b"done", DeliveryStatus.DELIVERED, "confirm", 1))

    engine = await h.started()
    results = {d.id: await final(engine, d.id) for d in (at_paste, at_confirm, at_guard, retrying, queued)}
    # The paste never landed (the input is empty): pasted again. The one past its submit
    # key is not sent again: the empty input confirms it went.
    assert (results[at_paste.id].status, results[at_paste.id].attempts) == (DeliveryStatus.DELIVERED, 2)
    assert results[at_confirm.id].status is DeliveryStatus.DELIVERED
    assert results[at_confirm.id].evidence["recovery"]["action"].startswith("confirmed from the screen")
    assert results[at_guard.id].status is DeliveryStatus.DELIVERED and results[at_guard.id].attempts == 2
    assert results[retrying.id].status is DeliveryStatus.DELIVERED
    assert results[queued.id].status is DeliveryStatus.DELIVERED
    assert h.target("s1").seen == [b"at paste", b"at guard", b"retrying", b"queued"]
    assert (await engine.get(done.id)).status is DeliveryStatus.DELIVERED
    assert h.kinds("delivery.failed") == []


async def test_keys_caught_mid_way_are_never_sent_again(h: Harness) -> None:
    keys = await h.repo.insert(Delivery(session_id="s1", target="s1", prompt=b'["Enter"]', origin=Origin.CLI,
                                        status=DeliveryStatus.DELIVERING, stage="keys", attempts=1,
                                        kind=DeliveryKind.KEYS, raw=True))
    engine = await h.started()
    d = await final(engine, keys.id)
    assert (d.status, d.reason, d.detail) == (DeliveryStatus.FAILED, "interrupted", INTERRUPTED_DETAIL)


async def test_get_and_list(h: Harness) -> None:
    engine = await h.started()
    a = await final(engine, (await submit(engine, "a")).id)
    b = await final(engine, (await submit(engine, "b", "s2")).id)
    assert [d.id for d in await engine.list()] == [b.id, a.id]
    assert [d.id for d in await engine.list(session="s2")] == [b.id]
    assert [d.id for d in await engine.list(status="failed")] == []
    assert (await engine.get(a.id)).prompt == b"a"
    with pytest.raises(NotFound):
        await engine.get("dlv_missing")


async def test_whoever_sees_delivered_finds_the_final_hooks_done(h: Harness) -> None:
    """``telepty reply`` right after a poll says ``delivered`` must find the reply
    bookkeeping (an on_final hook) done: the record must not read ``delivered`` while it
    is still being written."""
    engine = await h.started()
    hooked: set[str] = set()
    engine.on_final.append(lambda d: hooked.add(d.id))
    seen_early: list[str] = []
    write = h.repo.update

    async def slow_update(d: Delivery) -> None:
        if d.status is DeliveryStatus.DELIVERED:
            seen = await engine.get(d.id)  # a poll while the final row is being written
            if seen.status is DeliveryStatus.DELIVERED and d.id not in hooked:
                seen_early.append(d.id)
        await write(d)

    h.repo.update = slow_update  # type: ignore[method-assign]
    d = await submit(engine, "hello")
    assert (await final(engine, d.id)).status is DeliveryStatus.DELIVERED
    assert d.id in hooked and seen_early == []
