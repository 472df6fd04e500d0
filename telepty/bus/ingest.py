"""Accepting a published event: validate → log and fan out → route.

HTTP publish and the bus socket both come through ``BusIngest.accept``, so they reject
the same input with the same codes, and a rejected event (malformed, or a turn_request
whose prompt fails its SHA-1) is never logged, never fanned out, never delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple, Protocol

from telepty.bus.envelope import ROUTED_KINDS, normalize_envelope
from telepty.bus.hub import EventBus
from telepty.bus.router import RouteOutcome, TurnRequest, TurnRouter, parse_turn_request


class Receipt(NamedTuple):
    """A published event's place in the log (a tuple: one is made per event)."""

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
    def __init__(self, bus: EventBus, router: TurnRouter, *, max_prompt_bytes: int,
                 checks: Mapping[str, Callable[[dict[str, Any]], None]] | None = None) -> None:
        self.bus = bus
        self.router = router
        self.max_prompt_bytes = max_prompt_bytes
        # Kinds whose events must agree with the daemon's state to be accepted (a
        # session_state_report names a known session): each check raises to refuse.
        self.checks: dict[str, Callable[[dict[str, Any]], None]] = dict(checks or {})

    async def accept(self, raw: object, *, transport: str) -> Receipt:
        """Raises ``BadRequest``/``TooLarge`` for input that changes nothing."""
        return await self.accept_soon(raw, transport=transport)

    def accept_soon(self, raw: object, *, transport: str) -> asyncio.Future[Receipt]:
        """``accept`` for callers that answer from a callback: refusals raise here, at
        once; the future resolves with the receipt once the event has committed."""
        env, turn = self._admit(raw, transport)
        if turn is not None:
            return asyncio.ensure_future(self._publish_and_route(env, turn))
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self.bus.publish_then(env, _Receipting(env["message_id"], env["kind"], _FutureAnswer(fut)))
        return fut

    def accept_then(self, raw: object, *, transport: str, answer: ReceiptWaiter) -> None:
        """``accept_soon`` without a future: refusals raise here, at once; ``answer``
        hears the receipt (or the failure) once the event has committed, by a plain call
        (see ``CommitWaiter`` for when)."""
        env, turn = self._admit(raw, transport)
        if turn is not None:
            routed = asyncio.ensure_future(self._publish_and_route(env, turn))
            routed.add_done_callback(partial(_settle, answer))
            return
        self.bus.publish_then(env, _Receipting(env["message_id"], env["kind"], answer))

    def _admit(self, raw: object, transport: str) -> tuple[dict[str, Any], TurnRequest | None]:
        """The complete envelope, and the turn to route if it is one (a turn_request or
        its Node.js name); raises ``BadRequest``/``TooLarge`` (or what a kind's check
        raises) for anything that must change nothing."""
        env = normalize_envelope(raw, machine_id=self.bus.machine_id, default_source=f"bus:{transport}")
        if env["kind"] in ROUTED_KINDS:
            return env, parse_turn_request(env, max_prompt_bytes=self.max_prompt_bytes)
        check = self.checks.get(env["kind"])
        if check is not None:
            check(env)
        return env, None

    async def _publish_and_route(self, env: dict[str, Any], turn: TurnRequest) -> Receipt:
        seq, inserted = await self.bus.publish(env)
        # Routed again on a duplicate too: the delivery's idempotency key makes that
        # return the first delivery, and lets a retry succeed where the first
        # routing failed before any delivery existed (target not registered yet).
        route = await self.router.route(turn, env)
        return Receipt(seq, env["message_id"], env["kind"], not inserted, route)


class ReceiptWaiter(Protocol):
    """Whoever is answered with a published event's receipt, or why it has none."""

    def receipt(self, receipt: Receipt) -> None: ...

    def refused(self, exc: BaseException) -> None: ...


class _Receipting:
    """The bus's ``CommitWaiter`` for one event, turning its commit into a receipt."""

    __slots__ = ("answer", "kind", "message_id")

    def __init__(self, message_id: str, kind: str, answer: ReceiptWaiter) -> None:
        self.message_id = message_id
        self.kind = kind
        self.answer = answer

    def committed(self, seq: int, inserted: bool) -> None:
        self.answer.receipt(Receipt(seq, self.message_id, self.kind, not inserted))

    def failed(self, exc: BaseException) -> None:
        self.answer.refused(exc)


class _FutureAnswer:
    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[Receipt]) -> None:
        self.fut = fut

    def receipt(self, receipt: Receipt) -> None:
        if not self.fut.done():
            self.fut.set_result(receipt)

    def refused(self, exc: BaseException) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


def _settle(answer: ReceiptWaiter, routed: asyncio.Future[Receipt]) -> None:
    if routed.cancelled():
        answer.refused(asyncio.CancelledError())
    elif (exc := routed.exception()) is not None:
        answer.refused(exc)
    else:
        answer.receipt(routed.result())
