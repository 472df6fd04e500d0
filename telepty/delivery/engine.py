"""The delivery engine: accepted prompts → per-session FIFO workers → one transport each.

Rules it keeps, and why:

- A delivery is persisted before ``submit`` returns, so an acknowledged prompt survives
  a crash; ``start`` resumes whatever the last daemon left unfinished.
- One worker per target session, strictly FIFO. A delivery waiting on the retry
  schedule keeps the head of its queue: a later prompt must not overtake it and reach
  the agent first. Sessions never wait on each other.
- The stage ``paste`` is persisted before a transport may write a byte, and ``submit``
  before the submit key goes out. A prompt a restart finds between the two sits
  unsubmitted in the input (or never arrived): the engine finishes it from what the
  screen shows, exactly once (``telepty.delivery.recovery``). One found past ``submit``
  is never submitted again: the screen confirms it, or it fails ``unconfirmed``.
- A worker never dies of a delivery's failure: unexpected errors fail that delivery
  (``write_failed``) and the queue moves on.
- Only when a restart cannot settle what an interrupted prompt left in the input does
  the session *hold*: every prompt behind it is ``held`` (reason, blocking delivery),
  ``session.held`` is published once, and the hold ends when the screen no longer
  shows that text, when keys are sent, when the blocking delivery is cancelled, or —
  for each held prompt — after ``hold_max_s`` (``held_timeout``). Two prompts are
  never submitted merged.
- Raw keys (``submit`` of a ``KeyPress``) are deliveries too, in the same queue. One exception to
  strict FIFO: keys may go ahead of a prompt that waits *because of the screen*
  (``blocked_dialog``, ``composer_has_text``, or held), since answering that dialog or
  clearing that composer is what the prompt is waiting for; the prompt is then tried
  again at once instead of at its next retry time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import Enum
from functools import partial
from typing import Any

import orjson

from telepty.clock import from_iso, to_iso, utc_now
from telepty.config import Config
from telepty.delivery.confirm import judge
from telepty.delivery.model import (
    BLOCKED_DIALOG,
    BUSY,
    CANCELLED,
    COMPOSER_HAS_TEXT,
    HELD_TIMEOUT,
    IDEMPOTENT_STAGES,
    INTERRUPTED,
    LEFTOVER_IN_INPUT,
    PANE_DEAD,
    PRE_PASTE_STAGES,
    RETRY_EXHAUSTED,
    SCREEN_UNKNOWN,
    SESSION_DISCONNECTED,
    SESSION_EXITED,
    SESSION_NOT_FOUND,
    STAGE_CHECK_READY,
    STAGE_CLEAR,
    STAGE_QUIET_GUARD,
    STAGE_SUBMIT,
    SUBMITTED_STAGES,
    UNCONFIRMED,
    WRITE_FAILED,
    Delivery,
    DeliveryError,
    DeliveryKind,
    DeliveryStatus,
    Origin,
)
from telepty.delivery.profiles import SubmitProfile, SubmitProfiles
from telepty.delivery.recovery import InputView, input_view, look, shows_prompt
from telepty.delivery.request import InjectRequest, KeyPress
from telepty.delivery.schedule import SYSTEM_CLOCK, Clock, RetrySchedule
from telepty.delivery.screen import echoed
from telepty.delivery.transports.base import (
    CONFIRMED_SCREEN,
    DeliveryOutcome,
    ScreenView,
    Settled,
    Transport,
)
from telepty.errors import Conflict, ErrorCode, NotFound
from telepty.sessions.identity import claims_other_sender
from telepty.sessions.model import Session, SessionState
from telepty.sessions.registry import SessionRegistry
from telepty.store.deliveries import DeliveryRepo

log = logging.getLogger("telepty.delivery")

Emit = Callable[..., Awaitable[Any]]

INTERRUPTED_DETAIL = "daemon stopped while sending keys; not sent again (a key twice is another answer)"
# A prompt retrying for one of these reasons lets a keys delivery go first (see above).
KEYS_MAY_OVERTAKE = frozenset({BLOCKED_DIALOG, COMPOSER_HAS_TEXT})
# Retry reasons that stay the final reason once the schedule runs out (a relayed
# delivery to a peer that never came back fails ``peer_unreachable``).
KEEP_REASON_WHEN_EXHAUSTED = frozenset({"peer_unreachable"})
CONFIRM_POLL_S = 0.02  # how often recovery looks at a screen it waits to see change


class _EngineState(Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"


# Why a delivery waits that the terminal itself can end: a look at the screen is worth
# taking as soon as its output stops, not only at the next slot of the retry schedule.
WAKE_WHEN_SETTLED = frozenset({BUSY, BLOCKED_DIALOG, COMPOSER_HAS_TEXT, SCREEN_UNKNOWN})


@dataclass(frozen=True)
class _RetryNeeded:
    reason: str
    detail: str
    # Resolves when the terminal's output has stopped: look again then (None: only the
    # retry schedule can tell).
    settled: Settled | None = None


@dataclass
class _Hold:
    """A session whose input may still hold an interrupted prompt's text."""

    blocking: Delivery  # the failed delivery whose text it is
    detail: str
    announced: bool = False

    def evidence(self, held_since: str) -> dict[str, Any]:
        return {"blocked_by": self.blocking.id, "held_since": held_since}


class _PasteAgain:
    """Recovery's answer when the input is clear: the prompt goes in the normal way."""


PASTE_AGAIN = _PasteAgain()


class _CancelledBeforePaste(Exception):
    """Raised inside an attempt whose delivery was cancelled before the paste stage."""


class DeliveryEngine:
    def __init__(
        self,
        repo: DeliveryRepo,
        registry: SessionRegistry,
        resolver: Callable[[Session], Transport],
        emit: Emit,
        profiles: SubmitProfiles,
        config: Config,
        rng: random.Random | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.repo = repo
        self.registry = registry
        # Which transport reaches a session (``TransportResolver``); raises DeliveryError
        # when nothing does right now.
        self.resolver = resolver
        # What the schedule, holds and recovery's looks wait on (a test's is virtual).
        self.clock = clock
        self.emit = emit
        self.profiles = profiles
        self.config = config
        self.schedule = RetrySchedule(config.retry_schedule, config.retry_jitter, rng)
        self._state = _EngineState.STOPPED
        self._active: dict[str, Delivery] = {}  # unfinished deliveries this engine drives
        self._queues: dict[str, deque[str]] = {}  # session id → delivery ids, head first
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._held: list[Delivery] = []  # accepted while start() is still resuming
        self._retry_at: dict[str, float] = {}  # delivery id → monotonic time of next attempt
        # delivery id → what resolves when its terminal settles (see WAKE_WHEN_SETTLED)
        self._settled: dict[str, Settled] = {}
        self._wakeups: dict[str, asyncio.Event] = {}  # interrupts a retry wait (cancel)
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        # delivery id → the stage a restart found it in (finished by _recover)
        self._recovering: dict[str, str] = {}
        # session id → the hold on it; delivery id → monotonic time it became held
        self._holds: dict[str, _Hold] = {}
        self._held_since: dict[str, float] = {}
        # Told of every delivery as it becomes final (metrics); synchronous and must not raise.
        self.on_final: list[Callable[[Delivery], None]] = []

    # -- accepting ------------------------------------------------------------------------

    async def submit(
        self,
        work: InjectRequest | KeyPress,
        *,
        target: str,
        origin: Origin | str,
        idempotency_key: str | None = None,
        verified_sender: str | None = None,
    ) -> Delivery:
        """Accept a prompt, or raw keys, for ``target`` (id or alias); returns once it is
        persisted. Both are deliveries in the session's one queue.

        A known ``idempotency_key`` returns the delivery it first made, even if the
        target has gone since. An unknown target raises ``NotFound`` and stores nothing.
        """
        if idempotency_key is not None:
            existing = await self.repo.by_idempotency_key(idempotency_key)
            if existing is not None:
                return self._snapshot(self._active.get(existing.id, existing))
        session = self.registry.resolve(target)
        d = self._record(work, session, target, Origin(origin), idempotency_key, verified_sender)
        hold = self._holds.get(session.id) if d.kind is DeliveryKind.PROMPT else None
        if hold is not None:
            self._mark_held(d, hold)  # behind the hold from the start, and saying so
        stored = await self.repo.insert(d)
        if stored is not d:  # another request with the same key won the race
            return self._snapshot(self._active.get(stored.id, stored))
        log.info(
            "%s accepted id=%s session=%s target=%s origin=%s bytes=%d",
            d.kind, d.id, d.session_id, target, d.origin, len(d.prompt),
        )
        if self._state is _EngineState.RUNNING:
            if d.kind is DeliveryKind.PROMPT:
                self._enqueue(d)
            else:
                self._active[d.id] = d
                if not self._overtake(d):
                    self._push(d)
        elif self._state is _EngineState.STARTING:
            self._active[d.id] = d  # cancellable now, queued behind what start() resumes
            self._held.append(d)
        # Stopped: the record is persisted as queued; the next start() picks it up.
        return self._snapshot(d)

    def _record(self, work: InjectRequest | KeyPress, session: Session, target: str, origin: Origin,
                idempotency_key: str | None, verified_sender: str | None) -> Delivery:
        if isinstance(work, KeyPress):
            return Delivery(
                session_id=session.id, target=target, prompt=orjson.dumps(list(work.keys)), origin=origin,
                kind=DeliveryKind.KEYS, sender=verified_sender, verified_sender=verified_sender,
                force=work.force, raw=True, quiet_ms=work.quiet_ms, idempotency_key=idempotency_key,
            )
        sender = work.sender if work.sender is not None else verified_sender
        return Delivery(
            session_id=session.id,
            target=target,
            prompt=work.prompt,
            origin=origin,
            sender=sender,
            verified_sender=verified_sender,
            spoofed=claims_other_sender(self.registry, sender, verified_sender),
            reply_to=work.reply_to if work.reply_to is not None else sender,
            thread_id=work.thread_id,
            reply_expected=work.reply_expected,
            no_enter=work.no_enter,
            force=work.force,
            raw=work.raw,
            quiet_ms=work.quiet_ms,
            idempotency_key=idempotency_key,
        )

    def _overtake(self, keys: Delivery) -> bool:
        """Put ``keys`` in front of a head prompt that waits on the screen; True if done."""
        queue = self._queues.get(keys.session_id)
        if not queue:
            return False
        head = self._active.get(queue[0])
        waits_on_screen = (head is not None and head.status is DeliveryStatus.RETRYING
                           and head.reason in KEYS_MAY_OVERTAKE)
        if (
            head is None
            or head.kind is not DeliveryKind.PROMPT
            or not (waits_on_screen or head.status is DeliveryStatus.HELD)
        ):
            return False
        queue.appendleft(keys.id)
        self._retry_at[head.id] = self.clock.monotonic()  # try it again right after the keys
        wake = self._wakeups.get(head.id)
        if wake is not None:
            wake.set()  # the worker leaves the wait and finds the keys at the head
        log.info("keys id=%s go ahead of id=%s (%s)", keys.id, head.id, head.reason)
        return True

    # -- queries --------------------------------------------------------------------------

    async def get(self, delivery_id: str) -> Delivery:
        """The current record; raises ``NotFound(ErrorCode.DELIVERY_NOT_FOUND)``."""
        live = self._active.get(delivery_id)
        if live is not None:
            return self._snapshot(live)
        stored = await self.repo.get(delivery_id)
        if stored is None:
            raise NotFound(ErrorCode.DELIVERY_NOT_FOUND, f"no delivery with id {delivery_id!r}")
        return stored

    def holding(self, delivery_id: str) -> str | None:
        """The session ``delivery_id`` holds (see ``_Hold``), if it holds one."""
        for session_id, hold in self._holds.items():
            if hold.blocking.id == delivery_id:
                return session_id
        return None

    def hold_of(self, session_id: str) -> dict[str, Any] | None:
        """The hold on a session, if any (``telepty explain`` shows it)."""
        hold = self._holds.get(session_id)
        if hold is None:
            return None
        return {"blocked_by": hold.blocking.id, "reason": LEFTOVER_IN_INPUT, "detail": hold.detail,
                "hold_max_s": self.config.hold_max_s}

    def pending(self, session_id: str) -> list[Delivery]:
        """This session's unfinished deliveries in the order they will be tried."""
        queue = self._queues.get(session_id, ())
        return [self._snapshot(self._active[i]) for i in queue if i in self._active]

    async def list(
        self, *, session: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        rows = await self.repo.list(session=session, status=status, limit=limit)
        # In-flight records carry stages not yet written (see _enter_stage): show the live one.
        return [self._snapshot(self._active[d.id]) if d.id in self._active else d for d in rows]

    async def wait(self, delivery_id: str, timeout: float) -> Delivery:  # noqa: ASYNC109 (API's timeout)
        """The record once it is final, or as it stands when ``timeout`` runs out.

        Also returns early (not final) when the engine stops, so a shutdown is never
        held up by a long wait.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Registered before the first await so a delivery finishing meanwhile is not missed.
        waiters = self._waiters.setdefault(delivery_id, set())
        waiters.add(fut)
        try:
            d = await self.get(delivery_id)
            if d.final or timeout <= 0:
                return d
            try:
                async with asyncio.timeout(timeout):
                    await fut
            except TimeoutError:
                pass
            return await self.get(delivery_id)
        finally:
            waiters.discard(fut)
            if not waiters and self._waiters.get(delivery_id) is waiters:
                del self._waiters[delivery_id]

    # -- cancelling -----------------------------------------------------------------------

    async def cancel(self, delivery_id: str) -> Delivery:
        """Cancel a delivery that has not started writing; 409 once it has, 404 if unknown.

        Cancelling the delivery a session is held behind (see ``_Hold``) ends that hold
        instead: whoever asks has dealt with what it left in the input.
        """
        d = self._active.get(delivery_id)
        if d is None:
            stored = await self.repo.get(delivery_id)
            if stored is None:
                raise NotFound(ErrorCode.DELIVERY_NOT_FOUND, f"no delivery with id {delivery_id!r}")
            # start() may have picked it up while we read it.
            d = self._active.get(delivery_id, stored)
        hold = self._holds.get(d.session_id)
        if hold is not None and hold.blocking.id == d.id:
            await self._release(d.session_id, "the blocking delivery was cancelled")
            return self._snapshot(d)
        # A delivery still checking readiness or quietness has written nothing: the
        # worker looks at the status before the paste stage and stops there.
        pre_paste = d.status is DeliveryStatus.DELIVERING and d.stage in PRE_PASTE_STAGES
        cancellable = (DeliveryStatus.QUEUED, DeliveryStatus.RETRYING, DeliveryStatus.HELD)
        if d.status not in cancellable and not pre_paste:
            raise Conflict(
                ErrorCode.NOT_CANCELLABLE, f"delivery {delivery_id} is {d.status}"
                f"{' (stage ' + d.stage + ')' if d.stage else ''}; only deliveries that have "
                "not started pasting can be cancelled"
            )
        now = utc_now()
        d.status = DeliveryStatus.CANCELLED
        d.reason = CANCELLED
        d.detail = "cancelled on request"
        d.next_attempt_at = None
        d.finished_at = now
        d.updated_at = now
        wake = self._wakeups.get(d.id)
        if wake is not None:
            wake.set()  # the worker leaves its retry wait and drops this delivery
        await self.repo.update(d)
        self._finish(d)
        log.info("delivery cancelled id=%s session=%s", d.id, d.session_id)
        return self._snapshot(d)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume what the previous daemon left unfinished, oldest first."""
        if self._state is not _EngineState.STOPPED:
            return
        self._state = _EngineState.STARTING
        try:
            for d in await self.repo.blocking_leftovers():
                s = self.registry.get(d.session_id)
                if s is not None and s.state is not SessionState.EXITED:
                    # Announced by the daemon that found it.
                    self._holds[d.session_id] = _Hold(d, self._hold_detail(d), announced=True)
            for d in await self.repo.unfinished():
                if self._state is not _EngineState.STARTING:
                    break  # stop() was called meanwhile; the rows stay for the next start
                if d.id in self._active:
                    continue
                caught = d.stage not in PRE_PASTE_STAGES and d.stage not in IDEMPOTENT_STAGES
                if caught and d.kind is DeliveryKind.PROMPT:
                    # On its way into the input when the daemon died: finish it from what
                    # the screen shows (``_recover``), at the head of its queue.
                    log.warning("delivery caught mid-way id=%s stage=%s: recovering", d.id, d.stage)
                    self._recovering[d.id] = str(d.stage)
                    if d.status is DeliveryStatus.RETRYING:
                        self._retry_at[d.id] = self.clock.monotonic() + self._remaining_wait(d)
                    self._enqueue(d)
                    continue
                if caught and d.status is DeliveryStatus.DELIVERING:
                    log.warning("delivery interrupted id=%s stage=%s", d.id, d.stage)
                    await self._fail(d, INTERRUPTED, INTERRUPTED_DETAIL)
                    continue
                if d.status is DeliveryStatus.HELD:
                    self._held_since[d.id] = self._held_since_mono(d)
                if d.status is DeliveryStatus.DELIVERING:
                    # It never got as far as the paste, or its write is safe to repeat.
                    d.status = DeliveryStatus.QUEUED
                    d.updated_at = utc_now()
                    await self.repo.update(d)
                if d.status is DeliveryStatus.RETRYING:
                    self._retry_at[d.id] = self.clock.monotonic() + self._remaining_wait(d)
                log.info("delivery resumed id=%s status=%s attempts=%d", d.id, d.status, d.attempts)
                self._enqueue(d)
        finally:
            held, self._held = self._held, []
            if self._state is _EngineState.STARTING:  # not stopped meanwhile
                self._state = _EngineState.RUNNING
                for d in held:
                    if not d.final:
                        self._push(d)

    def _remaining_wait(self, d: Delivery) -> float:
        """Seconds left of a resumed retry wait, bounded so a wall-clock jump cannot stall it."""
        if not d.next_attempt_at:
            return 0.0
        try:
            left = from_iso(d.next_attempt_at) - time.time()
        except ValueError:
            return 0.0
        return min(max(0.0, left), self.schedule.longest)

    async def stop(self) -> None:
        """Stop the workers without touching persisted statuses, so a restart resumes them."""
        self._state = _EngineState.STOPPED
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
        self._active.clear()
        self._held.clear()
        self._retry_at.clear()
        self._settled.clear()
        self._wakeups.clear()
        self._recovering.clear()
        self._holds.clear()
        self._held_since.clear()
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    # -- the workers ----------------------------------------------------------------------

    def _enqueue(self, d: Delivery) -> None:
        self._active[d.id] = d
        self._push(d)

    def _push(self, d: Delivery) -> None:
        self._queues.setdefault(d.session_id, deque()).append(d.id)
        if d.session_id not in self._workers:
            self._workers[d.session_id] = asyncio.create_task(
                self._work(d.session_id), name=f"telepty-delivery:{d.session_id}"
            )

    async def _work(self, session_id: str) -> None:
        queue = self._queues[session_id]
        try:
            while queue:
                head_id = queue[0]
                d = self._active.get(head_id)
                if d is not None and not d.final:
                    try:
                        await self._drive(d)
                    except Exception:
                        # Only reachable when recording the outcome itself failed (the
                        # database); the row stays unfinished and resumes on restart.
                        log.exception("delivery worker error id=%s session=%s", d.id, session_id)
                        self._active.pop(d.id, None)
                if d is not None and not d.final and d.id in self._active and queue[0] != head_id:
                    continue  # keys went ahead of it (_overtake); it stays queued behind them
                queue.remove(head_id)
        finally:
            if self._workers.get(session_id) is asyncio.current_task():
                del self._workers[session_id]
                if not queue:
                    self._queues.pop(session_id, None)

    async def _drive(self, d: Delivery) -> None:
        """Attempts on the retry schedule until ``d`` is final.

        The schedule is the upper bound of a wait. A delivery that waits because its
        terminal is busy (or shows a dialog, or someone's text) looks again as soon as
        the terminal's output stops; such an early look that still finds it not ready
        is not an attempt: the slot it waits in stays as it was.
        """
        while not d.final:
            early = False
            if d.status is DeliveryStatus.RETRYING:
                early = await self._wait_for_retry(d)
            elif d.status is DeliveryStatus.HELD:
                await self._wait_while_held(d)
            if d.final:  # cancelled (or timed out, held) while waiting
                return
            queue = self._queues.get(d.session_id)
            if queue and queue[0] != d.id:
                return  # keys were put ahead of it; the worker comes back to it
            if d.kind is DeliveryKind.PROMPT and d.id not in self._recovering:
                hold = self._holds.get(d.session_id)
                if hold is not None and await self._still_held(d, hold):
                    await self._set_held(d, hold)
                    continue
            slot_end = self._retry_at.get(d.id)
            if d.id in self._recovering:
                result = await self._recover(d, count=not early)
                retry = await self._attempt(d, count=False) if result is PASTE_AGAIN else result
            else:
                retry = await self._attempt(d, count=not early)
            if not isinstance(retry, _RetryNeeded) or d.final:
                return
            if early and slot_end is not None and slot_end - self.clock.monotonic() > 0:
                await self._set_retrying(d, retry, slot_end - self.clock.monotonic())
                continue
            delay = self.schedule.delay_for(d.attempts - 1)
            if delay is None:
                await self._fail(
                    d, retry.reason if retry.reason in KEEP_REASON_WHEN_EXHAUSTED else RETRY_EXHAUSTED,
                    f"gave up after {d.attempts} attempts; last: {retry.reason}: {retry.detail}",
                )
                return
            await self._set_retrying(d, retry, delay)

    async def _attempt(self, d: Delivery, *, count: bool = True) -> _RetryNeeded | None:
        """One try (``count=False``: an early look, see ``_drive``). Returns why to
        retry, or None once ``d`` is final."""
        now = utc_now()
        d.status = DeliveryStatus.DELIVERING
        if count or d.attempts == 0:
            d.attempts += 1
        d.started_at = d.started_at or now
        d.stage = STAGE_CHECK_READY
        d.reason = None
        d.detail = None
        d.next_attempt_at = None
        d.updated_at = now
        self._retry_at.pop(d.id, None)
        self._settled.pop(d.id, None)
        await self.repo.update(d)
        keys = d.kind is DeliveryKind.KEYS
        quiet_ms = d.quiet_ms if d.quiet_ms is not None else self.config.quiet_ms
        transport: Transport | None = None
        try:
            session = self._session(d)
            transport = self.resolver(session)
            await transport.check_ready(for_keys=keys)
            if not d.force:
                await self._enter_stage(d, STAGE_QUIET_GUARD)
                quiet = await transport.is_quiet(quiet_ms)
                if d.final:  # cancelled while we were watching the screen
                    return None
                if not quiet:
                    if transport.guard is not None:
                        d.evidence = {"quiet_guard": transport.guard}
                    return _RetryNeeded(BUSY, f"the target was not quiet for {quiet_ms} ms",
                                        transport.settled(quiet_ms, needs_output=False))
            if keys:
                outcome = await transport.send_keys(d.keys, on_stage=partial(self._enter_stage, d))
            else:
                outcome = await transport.deliver(d, profile=self._profile(transport, session),
                                                  on_stage=partial(self._enter_stage, d))
        except _CancelledBeforePaste:
            return None
        except DeliveryError as exc:
            if d.final:
                return None
            if exc.evidence:
                d.evidence = exc.evidence
            if exc.retryable:
                # The screen said no: worth another look once it has changed and settled.
                wake = (transport.settled(quiet_ms, needs_output=True)
                        if transport is not None and exc.reason in WAKE_WHEN_SETTLED else None)
                return _RetryNeeded(exc.reason, exc.detail, wake)
            await self._fail(d, exc.reason, exc.detail, stage=exc.stage)
            return None
        except Exception as exc:
            log.exception("delivery attempt crashed id=%s stage=%s", d.id, d.stage)
            await self._fail(d, WRITE_FAILED, f"{type(exc).__name__}: {exc}")
            return None
        await self._delivered(d, outcome)
        return None

    def _profile(self, transport: Transport, session: Session) -> SubmitProfile:
        """A transport that found the agent in the process tree knows the better profile
        (an "other" session running claude); otherwise the session's."""
        return transport.profile or self.profiles.profile_for(session.agent)

    # -- after a crash: finishing what was caught mid-way ------------------------------------

    async def _recover(self, d: Delivery, *, count: bool) -> _RetryNeeded | _PasteAgain | None:
        """Finish a prompt a restart found on its way in (see ``telepty.delivery.recovery``).

        Returns ``PASTE_AGAIN`` once the input is clear, a retry while the terminal is not
        ready to be looked at, None once ``d`` is final.
        """
        found = self._recovering[d.id]
        d.status = DeliveryStatus.DELIVERING
        if count or d.attempts == 0:
            d.attempts += 1
        d.reason = d.detail = d.next_attempt_at = None
        d.updated_at = utc_now()
        self._retry_at.pop(d.id, None)
        self._settled.pop(d.id, None)
        # The stage stays as found: a crash during this look finds the same and looks again.
        await self.repo.update(d)
        quiet_ms = d.quiet_ms if d.quiet_ms is not None else self.config.quiet_ms
        transport: Transport | None = None
        try:
            session = self._session(d)
            transport = self.resolver(session)
            await transport.check_ready()
            term = transport.term
            if term is None:
                raise DeliveryError(INTERRUPTED, f"the {transport.name} transport cannot show what "
                                    "reached the input; not pasted again", stage=found)
            profile = self._profile(transport, session)
            lines = await look(term, profile)
            if found in SUBMITTED_STAGES:
                await self._confirm_after_restart(d, term, profile, lines)
                return None
            view = input_view(lines, d.prompt, profile)
            d.evidence = {"recovery": {"found_at": found, "input": str(view)}}
            log.info("recovering id=%s found_at=%s input=%s", d.id, found, view)
            if view is InputView.WHOLE:
                if d.no_enter:  # what was asked for is done: the prompt sits in the input
                    outcome = DeliveryOutcome(CONFIRMED_SCREEN, {"tail_after": "\n".join(lines[-12:])})
                    action = "found it pasted, as asked (no_enter)"
                else:
                    outcome = await transport.submit_pasted(d.prompt, profile=profile,
                                                            on_stage=partial(self._enter_stage, d))
                    action = "submitted what was in the input"
                self._recovering.pop(d.id, None)
                outcome.detail["recovery"] = {"found_at": found, "input": str(view), "action": action}
                await self._delivered(d, outcome)
                return None
            if view is not InputView.EMPTY:
                why = (f"profile {profile.name} has no clear_keys" if not profile.clear_keys
                       else None if await self._clear(d, transport, term, profile)
                       else f"it stayed after {' '.join(profile.clear_keys)}")
                if why is not None:
                    await self._fail_holding(
                        d, INTERRUPTED, f"a restart found part of this prompt in the input and "
                        f"could not clear it ({why}); not pasted again, so nothing is merged", lines)
                    return None
            self._recovering.pop(d.id, None)
            return PASTE_AGAIN
        except DeliveryError as exc:
            if d.final:
                return None
            if exc.retryable:
                wake = (transport.settled(quiet_ms, needs_output=True)
                        if transport is not None and exc.reason in WAKE_WHEN_SETTLED else None)
                return _RetryNeeded(exc.reason, exc.detail, wake)
            self._recovering.pop(d.id, None)
            await self._fail(d, exc.reason, exc.detail, stage=exc.stage)
            return None
        except Exception as exc:
            log.exception("recovery crashed id=%s", d.id)
            self._recovering.pop(d.id, None)
            await self._fail(d, WRITE_FAILED, f"{type(exc).__name__}: {exc}")
            return None

    async def _clear(self, d: Delivery, transport: Transport, term: ScreenView,
                     profile: SubmitProfile) -> bool:
        """Empty the input with the profile's clear keys; True once the screen shows it empty."""
        await self._enter_stage(d, STAGE_CLEAR)
        await transport.clear_input(profile.clear_keys)
        deadline = self.clock.monotonic() + profile.confirm_ms / 1000.0
        while True:
            lines = await look(term, profile)
            if input_view(lines, d.prompt, profile) is InputView.EMPTY:
                d.evidence.setdefault("recovery", {})["action"] = (
                    f"cleared the input ({' '.join(profile.clear_keys)}) and pasted again")
                return True
            if self.clock.monotonic() >= deadline:
                return False
            await self.clock.sleep(CONFIRM_POLL_S)  # watching the screen redraw, bounded

    async def _confirm_after_restart(self, d: Delivery, term: ScreenView, profile: SubmitProfile,
                                     lines: list[str]) -> None:
        """The submit key may have gone out: never send it again; the screen decides."""
        found = self._recovering.pop(d.id, None)
        text = d.prompt.decode("utf-8", errors="replace")
        deadline = self.clock.monotonic() + profile.confirm_ms / 1000.0
        streak = 0
        while True:
            if profile.reads_screen:
                verdict = judge(lines, [], text, profile)
                state, how = verdict.state, verdict.how
            else:
                view = input_view(lines, d.prompt, profile)
                seen = view is InputView.EMPTY and echoed(text, [], await term.screen()) is not None
                state = "stuck" if view is not InputView.EMPTY else ("submitted" if seen else "unknown")
                how = "echo"
            streak = streak + 1 if state == "submitted" else 0
            if streak >= 2 or (state != "submitted" and self.clock.monotonic() >= deadline):
                break
            await self.clock.sleep(CONFIRM_POLL_S)  # a screen mid-redraw must not decide
            lines = await look(term, profile)
        tail = "\n".join(lines[-12:])
        if state == "submitted":
            await self._delivered(d, DeliveryOutcome(how or CONFIRMED_SCREEN, {
                "recovery": {"found_at": found, "action": "confirmed from the screen; not sent again"},
                "tail_after": tail}))
            return
        if state == "stuck":
            await self._fail_holding(
                d, UNCONFIRMED, "a restart found this prompt still in the input after its submit "
                "key may have gone out; not sent again", lines)
            return
        d.evidence = {"recovery": {"found_at": found}, "tail_after": tail}
        await self._fail(d, UNCONFIRMED, "the daemon stopped after the submit key; the screen "
                         "shows neither the prompt nor its submission, so it may or may not have "
                         "been submitted (not sent again)")

    # -- holds ------------------------------------------------------------------------------

    def _hold_detail(self, blocking: Delivery) -> str:
        sid = blocking.session_id
        return (f"delivery {blocking.id} may still sit in the input of {sid}; prompts are held "
                f"so none is merged with it. Submit it (telepty keys {sid} Enter), clear it "
                f"(telepty keys {sid} C-u) or release the hold (telepty deliveries {blocking.id} "
                f"--cancel); held prompts fail {HELD_TIMEOUT} after {self.config.hold_max_s:g}s")

    async def _fail_holding(self, d: Delivery, reason: str, detail: str, lines: list[str]) -> None:
        """Fail ``d``, whose text stays in the input, and hold its session behind it."""
        self._recovering.pop(d.id, None)
        d.evidence = {**d.evidence, "holds_input": True, "tail_after": "\n".join(lines[-12:])}
        await self._fail(d, reason, detail)
        hold = _Hold(d, self._hold_detail(d))
        self._holds[d.session_id] = hold
        log.warning("session %s held behind %s", d.session_id, d.id)
        await self._hold_queue(d.session_id, hold)
        await self._announce(hold)

    def _mark_held(self, d: Delivery, hold: _Hold) -> None:
        now = self.clock.monotonic()
        since = self._held_since.setdefault(d.id, now)
        since_wall = time.time() - (now - since)
        d.status = DeliveryStatus.HELD
        d.reason = LEFTOVER_IN_INPUT
        d.detail = hold.detail
        d.evidence = hold.evidence(to_iso(since_wall))
        d.next_attempt_at = to_iso(since_wall + self.config.hold_max_s)
        d.updated_at = utc_now()

    async def _set_held(self, d: Delivery, hold: _Hold) -> None:
        """``d`` (and everything queued behind it) waits for the hold to end."""
        self._mark_held(d, hold)
        await self.repo.update(d)
        self._wakeups.setdefault(d.id, asyncio.Event()).clear()
        await self._hold_queue(d.session_id, hold)
        await self._announce(hold)

    async def _hold_queue(self, session_id: str, hold: _Hold) -> None:
        """Every prompt waiting for the session says it is held, from now: one clock for
        all of them, so ``held_timeout`` comes for each at the same time."""
        for did in list(self._queues.get(session_id, ())):
            d = self._active.get(did)
            if (d is not None and d.kind is DeliveryKind.PROMPT
                    and d.status in (DeliveryStatus.QUEUED, DeliveryStatus.RETRYING)):
                self._retry_at.pop(d.id, None)
                self._mark_held(d, hold)
                await self.repo.update(d)
                wake = self._wakeups.get(d.id)
                if wake is not None:
                    wake.set()  # a head waiting for its retry slot: it waits for the hold now

    async def _announce(self, hold: _Hold) -> None:
        """``session.held``, once per hold."""
        if hold.announced:
            return
        hold.announced = True
        sid = hold.blocking.session_id
        await self._emit("session.held", target=sid, session_id=sid, blocked_by=hold.blocking.id,
                         reason=LEFTOVER_IN_INPUT, detail=hold.detail, hold_max_s=self.config.hold_max_s)

    async def _still_held(self, d: Delivery, hold: _Hold) -> bool:
        """Does the input still show the blocking prompt? (A look at the screen; a
        terminal that cannot be looked at keeps the hold, one that is gone ends it.)"""
        try:
            session = self._session(d)
            transport = self.resolver(session)
            term = transport.term
            if term is None:
                return False
            await transport.check_ready(for_keys=True)
            profile = self._profile(transport, session)
            lines = await look(term, profile)
        except DeliveryError as exc:
            if exc.retryable:
                return True
            await self._release(d.session_id, f"the terminal is gone ({exc.reason})")
            return False
        if shows_prompt(lines, hold.blocking.prompt, profile):
            return True
        await self._release(d.session_id, "the input no longer shows it")
        return False

    async def _wait_while_held(self, d: Delivery) -> None:
        """Until the hold may be over (keys, a cancel, the terminal settling after new
        output) or ``d`` has been held for ``hold_max_s`` (then it fails)."""
        since = self._held_since.setdefault(d.id, self.clock.monotonic())
        left = since + self.config.hold_max_s - self.clock.monotonic()
        if left > 0 and d.session_id in self._holds:
            wake = self._wakeups.setdefault(d.id, asyncio.Event())
            try:
                session = self._session(d)
                settled = self.resolver(session).settled(d.quiet_ms or self.config.quiet_ms,
                                                         needs_output=True)
            except DeliveryError:
                settled = None
            # Waiting out the hold is the product's bound on it, not synchronisation.
            await self._wait_for(wake, settled, left)
            if d.final or d.session_id not in self._holds:
                return
            if since + self.config.hold_max_s - self.clock.monotonic() > 0:
                return  # woken early: the caller looks at the screen again
        hold = self._holds.get(d.session_id)
        if hold is None or d.final:
            return
        await self._fail(d, HELD_TIMEOUT, f"held {self.config.hold_max_s:g}s behind delivery "
                         f"{hold.blocking.id}, whose text may still be in the input; not pasted, so "
                         "nothing was merged")

    async def _release(self, session_id: str, why: str) -> None:
        """End a hold: what was held is queued again and tried at once, in order."""
        hold = self._holds.pop(session_id, None)
        if hold is None:
            return
        log.info("hold on %s behind %s ended: %s", session_id, hold.blocking.id, why)
        # A restart must not bring it back (``blocking_leftovers``).
        hold.blocking.evidence = {**hold.blocking.evidence, "holds_input": False}
        await self.repo.update(hold.blocking)
        for did in list(self._queues.get(session_id, ())):
            d = self._active.get(did)
            if d is not None and d.status is DeliveryStatus.HELD:
                d.status = DeliveryStatus.QUEUED
                d.reason = d.detail = d.next_attempt_at = None
                d.evidence = {}
                d.updated_at = utc_now()
                self._held_since.pop(d.id, None)
                await self.repo.update(d)
                wake = self._wakeups.get(d.id)
                if wake is not None:
                    wake.set()

    def _session(self, d: Delivery) -> Session:
        s = self.registry.get(d.session_id)
        if s is None:
            raise DeliveryError(
                SESSION_NOT_FOUND, f"session {d.session_id!r} is gone", stage=STAGE_CHECK_READY
            )
        if s.state is SessionState.EXITED:
            if s.meta.get("exit_reason") == PANE_DEAD:
                raise DeliveryError(PANE_DEAD, f"the pane of session {s.id!r} ({s.tmux_pane}) is gone",
                                    stage=STAGE_CHECK_READY)
            raise DeliveryError(
                SESSION_EXITED, f"session {s.id!r} has exited", stage=STAGE_CHECK_READY
            )
        if s.state is SessionState.DISCONNECTED:
            raise DeliveryError(
                SESSION_DISCONNECTED, f"session {s.id!r} is waiting for its wrapper to reconnect",
                stage=STAGE_CHECK_READY, retryable=True,
            )
        return s

    async def _enter_stage(self, d: Delivery, stage: str) -> None:
        if d.final:
            # Cancelled while checking readiness or quietness: stop before any write.
            raise _CancelledBeforePaste
        crossing = ((d.stage in PRE_PASTE_STAGES and stage not in PRE_PASTE_STAGES)
                    or stage in (STAGE_SUBMIT, STAGE_CLEAR))
        d.stage = stage
        d.updated_at = utc_now()
        # Only the steps into writing, into submitting and into clearing decide what a
        # restart does (resume, finish the paste, only look, look again), so only those
        # must reach the disk before we go on; the stages around them live in memory
        # (GET serves the live record) and are written with the outcome, which keeps a
        # database round trip off every other stage.
        if crossing:
            await self.repo.update(d)

    async def _set_retrying(self, d: Delivery, retry: _RetryNeeded, delay: float) -> None:
        d.status = DeliveryStatus.RETRYING
        d.reason = retry.reason
        d.detail = retry.detail
        d.next_attempt_at = to_iso(time.time() + delay)
        d.updated_at = utc_now()
        self._retry_at[d.id] = self.clock.monotonic() + delay
        if retry.settled is not None:
            self._settled[d.id] = retry.settled
        # A fresh wait: a wake-up from an earlier one (keys went ahead) must not cut it short.
        self._wakeups.setdefault(d.id, asyncio.Event()).clear()
        await self.repo.update(d)
        log.info(
            "delivery retrying id=%s reason=%s attempts=%d in=%.3fs",
            d.id, retry.reason, d.attempts, delay,
        )

    async def _wait_for_retry(self, d: Delivery) -> bool:
        """Until the next slot, a wake-up (cancel, keys, session gone) or — returning
        True — the terminal settling after the output that kept ``d`` waiting."""
        wake = self._wakeups.setdefault(d.id, asyncio.Event())
        now = self.clock.monotonic()
        left = self._retry_at.get(d.id, now) - now
        s = self.registry.get(d.session_id)
        if left <= 0 or wake.is_set() or s is None or s.state is SessionState.EXITED:
            return False  # a session already gone (pane_dead, …) fails now, not at the next try
        # Waiting out the slot is the product's retry schedule, not synchronisation.
        early = await self._wait_for(wake, self._settled.get(d.id), left)
        if early and not wake.is_set():
            log.info("delivery id=%s: the terminal settled; looking again", d.id)
            return True
        return False

    async def _wait_for(self, wake: asyncio.Event, settled: Settled | None, seconds: float) -> bool:
        """Until ``wake`` is set, ``seconds`` pass on the engine's clock, or — returning
        True — the terminal settles."""
        waits: dict[asyncio.Future[Any], bool] = {
            asyncio.ensure_future(wake.wait()): False,
            asyncio.ensure_future(self.clock.sleep(seconds)): False,
        }
        if settled is not None:
            waits[asyncio.ensure_future(settled())] = True
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        return any(waits[t] for t in done if not t.cancelled() and t.exception() is None)

    def session_gone(self, session_id: str) -> None:
        """The registry's word that a session exited or was removed.

        Its head delivery, if it waits to retry, tries at once and fails with the
        session's reason (``pane_dead``, ``session_exited``…) instead of sleeping out the
        schedule; everything queued behind it follows.
        """
        queue = self._queues.get(session_id)
        if queue:
            wake = self._wakeups.get(queue[0])
            if wake is not None:
                wake.set()

    # -- outcomes -------------------------------------------------------------------------

    async def _delivered(self, d: Delivery, outcome: DeliveryOutcome) -> None:
        now = utc_now()
        recovered = {"recovery": d.evidence["recovery"]} if "recovery" in d.evidence else {}
        final = {"status": DeliveryStatus.DELIVERED, "confirmed": outcome.confirmed,
                 "evidence": {**recovered, **outcome.detail}, "finished_at": now, "updated_at": now}
        # The record on disk first, and only then ``delivered`` in memory, in the same step
        # as the on_final hooks: whoever reads ``delivered`` (a poll of GET /deliveries/ID)
        # can reply at once, since the reply bookkeeping has already run.
        await self.repo.update(replace(d, **final))
        for name, value in final.items():
            setattr(d, name, value)
        self._finish(d)
        if d.kind is DeliveryKind.KEYS:
            # Keys into a held session: someone dealt with what was in the input.
            await self._release(d.session_id, f"keys were sent ({d.id})")
        log.info(
            "delivered id=%s session=%s kind=%s attempts=%d confirmed=%s",
            d.id, d.session_id, d.kind, d.attempts, d.confirmed,
        )
        if d.kind is DeliveryKind.KEYS:
            await self._emit("keys_sent", target=d.session_id, session_id=d.session_id,
                             delivery_id=d.id, keys=d.keys, source_type=str(d.origin))
            return
        await self._emit(
            "inject_written",
            target=d.session_id,
            inject_id=d.id,
            target_agent=d.session_id,
            reply_to=d.reply_to,
            thread_id=d.thread_id,
            reply_expected=d.reply_expected,
            source_type=str(d.origin),
            delivered=True,
            confirmed=d.confirmed,
            verified_sender=d.verified_sender,
            spoofed=d.spoofed,
            prompt_bytes=len(d.prompt),
            prompt_sha256=d.prompt_sha256,
            **{"from": d.sender},
        )

    async def _fail(self, d: Delivery, reason: str, detail: str, *, stage: str | None = None) -> None:
        now = utc_now()
        d.status = DeliveryStatus.FAILED
        d.reason = reason
        d.detail = detail
        if stage is not None:
            d.stage = stage
        d.next_attempt_at = None
        d.finished_at = now
        d.updated_at = now
        await self.repo.update(d)
        self._finish(d)
        log.warning(
            "delivery failed id=%s session=%s reason=%s stage=%s attempts=%d detail=%s",
            d.id, d.session_id, reason, d.stage, d.attempts, detail,
        )
        await self._emit(
            "delivery.failed",
            target=d.session_id,
            delivery_id=d.id,
            session_id=d.session_id,
            reason=reason,
            detail=detail,
            stage=d.stage,
            attempts=d.attempts,
            source_type=str(d.origin),
        )

    def _finish(self, d: Delivery) -> None:
        self._active.pop(d.id, None)
        self._held_since.pop(d.id, None)
        self._recovering.pop(d.id, None)
        self._retry_at.pop(d.id, None)
        self._settled.pop(d.id, None)
        self._wakeups.pop(d.id, None)
        for fut in self._waiters.get(d.id, ()):
            if not fut.done():
                fut.set_result(None)
        for hook in self.on_final:
            try:
                hook(d)
            except Exception:
                log.exception("on_final hook failed for delivery %s", d.id)

    async def _emit(self, kind: str, **fields: Any) -> None:
        """Events report outcomes; failing to publish one must not undo the outcome."""
        try:
            await self.emit(kind, **fields)
        except Exception:
            log.exception("could not emit %s for delivery %s", kind, fields.get("target"))

    def _held_since_mono(self, d: Delivery) -> float:
        """A held record's start, from its evidence (a restart keeps its deadline)."""
        now = self.clock.monotonic()
        try:
            since = from_iso(str(d.evidence.get("held_since")))
        except (TypeError, ValueError):
            return now
        return now - max(0.0, time.time() - since)

    @staticmethod
    def _snapshot(d: Delivery) -> Delivery:
        """Callers get a copy: the worker keeps mutating the live record."""
        return replace(d, evidence=dict(d.evidence))
