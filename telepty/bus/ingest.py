"""Accepting a published event: validate → log and fan out → route.

HTTP publish and the bus socket both come through ``BusIngest.accept``, so they reject
the same input with the same codes, and a rejected event (malformed, or a turn_request
whose prompt fails its SHA-1) is never logged, never fanned out, never delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from telepty.bus.envelope import ROUTED_KINDS, normalize_envelope
from telepty.bus.hub import EventBus
from telepty.bus.router import RouteOutcome, TurnRequest, TurnRouter, parse_turn_request


@dataclass(frozen=True)
class Receipt:
    seq: int
    message_id: str
    kind: str
    duplicate: bool  # the message_id was already in the log; nothing new was fanned out
    route: RouteOutcome | None = None

    def to_public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": True,
            "seq": self.seq,
            "message_id": self.message_id,
            "kind": self.kind,
            "duplicate": self.duplicate,
        }
        if self.route is not None:
            out["route"] = self.route.to_public()
        return out


class BusIngest:
    def __init__(self, bus: EventBus, router: TurnRouter, *, max_prompt_bytes: int) -> None:
        self.bus = bus
        self.router = router
        self.max_prompt_bytes = max_prompt_bytes
        # Kinds whose events must agree with the daemon's state to be accepted (a
        # session_state_report names a known session): each check raises to refuse.
        self.checks: dict[str, Callable[[dict[str, Any]], None]] = {}

    async def accept(self, raw: object, *, transport: str) -> Receipt:
        """Raises ``BadRequest``/``TooLarge`` for input that changes nothing."""
        return await self.accept_soon(raw, transport=transport)

    def accept_soon(self, raw: object, *, transport: str) -> asyncio.Future[Receipt]:
        """``accept`` for callers that answer from a callback: refusals raise here, at
        once; the future resolves with the receipt once the event has committed."""
        env = normalize_envelope(raw, machine_id=self.bus.machine_id, default_source=f"bus:{transport}")
        if env["kind"] in ROUTED_KINDS:
            turn = parse_turn_request(env, max_prompt_bytes=self.max_prompt_bytes)
            return asyncio.ensure_future(self._publish_and_route(env, turn))
        check = self.checks.get(env["kind"])
        if check is not None:
            check(env)
        return self.bus.publish_soon(env, partial(_receipt, env["message_id"], env["kind"]))

    async def _publish_and_route(self, env: dict[str, Any], turn: TurnRequest) -> Receipt:
        seq, inserted = await self.bus.publish(env)
        # Routed again on a duplicate too: the delivery's idempotency key makes that
        # return the first delivery, and lets a retry succeed where the first
        # routing failed before any delivery existed (target not registered yet).
        route = await self.router.route(turn, env)
        return Receipt(seq, env["message_id"], env["kind"], not inserted, route)


def _receipt(message_id: str, kind: str, seq: int, inserted: bool) -> Receipt:
    return Receipt(seq, message_id, kind, not inserted)
