"""Lifecycle events about sessions that nobody asked for: ``session.idle`` and ``session_health``.

``session.idle`` is an *edge*, not a level. The Node.js telepty re-announced an idle
session on a timer and one quiet session woke its orchestrator ~70 times in a night.
Here an idle period is identified by the ``last_activity_at`` it started from: the
event fires once when the quiet time first crosses the threshold, and a session can
only fire again after new activity has moved ``last_activity_at`` and it has gone
quiet for the threshold once more. Checking often is fine; announcing is not repeated.

``session_health`` is the opposite on purpose: a heartbeat per live session every
``health_interval``, for dashboards that want a level.

``IdleWatch`` and ``health_fields`` are pure (a clock value goes in, events come out);
``SessionLifecycle`` only adds the two loops and the emitting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from telepty.clock import from_iso
from telepty.sessions.model import Session
from telepty.sessions.registry import SessionRegistry

log = logging.getLogger("telepty.lifecycle")

Emit = Callable[..., Awaitable[Any]]
Clock = Callable[[], float]


class EventLog(Protocol):
    """The durable log as the idle watch reads it back (``telepty.store.events.EventRepo``)."""

    async def since(
        self, seq: int, limit: int = ..., kinds: tuple[str, ...] = ...
    ) -> list[dict[str, Any]]: ...


_RESTORE_PAGE = 500

# How often the idle watch looks, as a fraction of the threshold, within bounds: a
# crossing is noticed within a quarter of the threshold (at most a second late).
_IDLE_CHECK_FRACTION = 0.25
_IDLE_CHECK_MIN = 0.02
_IDLE_CHECK_MAX = 1.0


@dataclass(frozen=True)
class IdleCrossing:
    session_id: str
    idle_seconds: float
    last_activity_at: str

    def event_fields(self) -> dict[str, Any]:
        """The ``session.idle`` body; the seed's camelCase names are sent too, for v1 readers."""
        return {
            "session_id": self.session_id,
            "idle_seconds": self.idle_seconds,
            "last_activity_at": self.last_activity_at,
            "idleSeconds": self.idle_seconds,
            "lastActivityAt": self.last_activity_at,
        }


class IdleWatch:
    """Decides, from successive looks at the sessions, when each one *becomes* idle."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        # session id → the last_activity_at whose idle period was already announced
        self._announced: dict[str, str] = {}

    def check(self, sessions: Iterable[Session], now_epoch: float) -> list[IdleCrossing]:
        """The sessions that crossed the threshold since the last check (each period once)."""
        crossings: list[IdleCrossing] = []
        present: set[str] = set()
        for s in sessions:
            present.add(s.id)
            # A session that is not running cannot be "idle"; its entry is kept so a
            # disconnect/reconnect blip without new activity does not announce again.
            if not s.live or not s.last_activity_at:
                continue
            if self._announced.get(s.id) == s.last_activity_at:
                continue  # this idle period was announced already
            try:
                idle = now_epoch - from_iso(s.last_activity_at)
            except ValueError:
                continue
            if idle >= self.threshold:
                self._announced[s.id] = s.last_activity_at
                crossings.append(IdleCrossing(s.id, round(idle, 3), s.last_activity_at))
        for gone in self._announced.keys() - present:
            del self._announced[gone]
        return crossings

    def mark_announced(self, session_id: str, last_activity_at: str) -> None:
        """Record a period as announced (e.g. by an earlier daemon, found in the event log)."""
        self._announced[session_id] = last_activity_at

    def forget(self, session_id: str) -> None:
        """Undo an announcement that could not be sent, so the next check tries again."""
        self._announced.pop(session_id, None)


def idle_check_interval(threshold: float) -> float:
    return min(_IDLE_CHECK_MAX, max(_IDLE_CHECK_MIN, threshold * _IDLE_CHECK_FRACTION))


def health_fields(s: Session, now_epoch: float) -> dict[str, Any]:
    """The ``session_health`` body for one session: one idle field, ``idle_seconds``
    (the v1 spelling ``idleSeconds`` was a second copy that readers had to pick from)."""
    return {
        "session_id": s.id,
        "payload": {
            "alive": s.live,
            "pid": s.pid,
            "type": str(s.type),
            "clients": s.clients,
            "idle_seconds": s.idle_seconds(now_epoch),
            "state": str(s.state),
        },
    }


class SessionLifecycle:
    """Runs the idle watch and the health heartbeat against the registry."""

    def __init__(
        self,
        registry: SessionRegistry,
        emit: Emit,
        *,
        idle_threshold: float,
        health_interval: float,
        clock: Clock = time.time,
    ) -> None:
        self.registry = registry
        self.emit = emit
        self.idle = IdleWatch(idle_threshold)
        self.health_interval = health_interval
        self.clock = clock

    async def restore(self, events: EventLog) -> int:
        """Learn which idle periods an earlier daemon already announced, from the durable log.

        Without this a restart would announce every still-idle session a second time
        for the same period. Best effort: an unreadable log only costs that dedupe.
        """
        found = 0
        seq = 0
        try:
            while True:
                page = await events.since(seq, _RESTORE_PAGE, ("session.idle",))
                for env in page:
                    seq = max(seq, int(env.get("seq", seq)))
                    sid, at = env.get("session_id"), env.get("last_activity_at")
                    if isinstance(sid, str) and isinstance(at, str):
                        self.idle.mark_announced(sid, at)
                        found += 1
                if len(page) < _RESTORE_PAGE:
                    break
        except Exception:
            log.exception("could not read earlier session.idle events; idle periods may repeat once")
        return found

    async def check_idle(self) -> list[IdleCrossing]:
        crossings = self.idle.check(self.registry.list(), self.clock())
        sent = []
        for c in crossings:
            log.info("session idle id=%s idle=%.1fs", c.session_id, c.idle_seconds)
            if await self._emit("session.idle", target=c.session_id, **c.event_fields()):
                sent.append(c)
            else:
                self.idle.forget(c.session_id)
        return sent

    async def beat(self) -> int:
        """One ``session_health`` per live session; returns how many were sent."""
        now = self.clock()
        live = [s for s in self.registry.list() if s.live]
        # Published together so the bus can commit the whole round as one batch.
        await asyncio.gather(
            *(self._emit("session_health", target=s.id, **health_fields(s, now)) for s in live)
        )
        return len(live)

    async def run_idle(self, history: EventLog | None = None) -> None:
        """Watch for idle sessions; ``history`` is read first (see ``restore``), in this
        task rather than at startup, so a long log never delays the daemon coming up."""
        if self.idle.threshold <= 0:
            return
        if history is not None:
            await self.restore(history)
        interval = idle_check_interval(self.idle.threshold)
        while True:
            await asyncio.sleep(interval)  # the check period; announcing is edge-triggered
            try:
                await self.check_idle()
            except Exception:
                log.exception("idle check failed")

    async def run_health(self) -> None:
        if self.health_interval <= 0:
            return
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await self.beat()
            except Exception:
                log.exception("health heartbeat failed")

    async def _emit(self, kind: str, **fields: Any) -> bool:
        try:
            await self.emit(kind, **fields)
        except Exception:
            # The bus is closing or the disk failed; the next period tries again.
            log.exception("could not emit %s for session %s", kind, fields.get("target"))
            return False
        return True
