"""The auto-router: a ``turn_request`` on the bus becomes a delivery into a session.

Flow (SPEC §5): the turn goes through the intake (``telepty.delivery.intake``) like
every prompt: ``@<this machine>`` is stripped, another machine's target is relayed,
an id or alias is resolved locally, and one delivery of ``payload.prompt`` is made with
origin ``bus_auto_route`` (``relay`` for another machine). The engine reports the
outcome (``inject_written`` / ``delivery.failed``); the router adds ``message_routed``
once the prompt is in, and ``delivery.failed`` itself for what fails before a delivery
exists (unknown session, tmux missing, unknown peer).

The delivery's idempotency key is ``bus:<message_id>``, so a turn_request published
twice — or published again after its first routing failed — is delivered at most once.

``message_routed`` is driven by the engine's ``inject_written`` (a bus listener), not
by a waiter per delivery: a delivery resumed after a daemon restart still gets its
``message_routed``, because the delivery record carries the message id in its key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telepty.bus.envelope import ROUTED_KINDS, first_given
from telepty.bus.hub import EventBus, LoggedEvent
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.intake import Intake, Submission
from telepty.delivery.model import Origin
from telepty.delivery.reply_guide import with_reply_footer
from telepty.delivery.request import InjectRequest, parse_inject
from telepty.errors import BadRequest, ErrorCode, NotFound, TeleptyError
from telepty.sessions.model import SESSION_ID_RE
from telepty.sessions.registry import SessionRegistry
from telepty.store.deliveries import DeliveryRepo

log = logging.getLogger("telepty.bus.router")

IDEMPOTENCY_PREFIX = "bus:"
STAGE_ROUTE = "route"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SHA1_RE = re.compile(r"^[0-9a-fA-F]{40}$")
# A name, an IPv4 or an IPv6 address; \Z, since "$" would let a trailing newline in.
_HOST_RE = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,253}\Z")


@dataclass(frozen=True)
class TurnRequest:
    """A validated turn_request: where it goes and what to type there."""

    message_id: str
    target: str  # as published, ``@host`` included
    session: str  # the id or alias part
    host: str | None  # the ``@host`` part, if any
    request: InjectRequest  # prompt (footer included) and delivery options
    deliberation_session_id: str | None


@dataclass(frozen=True)
class RouteOutcome:
    status: str  # "accepted" | "failed"
    delivery_id: str | None = None
    session_id: str | None = None
    delivery_status: str | None = None
    reason: str | None = None
    detail: str | None = None

    def to_public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def parse_turn_request(env: dict[str, Any], *, max_prompt_bytes: int) -> TurnRequest:
    """Validate a turn_request envelope before it is logged: a malformed or tampered one
    is refused (400) and leaves no trace, rather than being logged and failing later.

    The Node.js daemon's shapes are read too: ``target_session_id`` where ``target``
    is missing (``deliberation_route_turn``), and the prompt at the top level
    (``prompt``, else ``content``) when there is no ``payload.prompt``.
    """
    target = first_given(env, "target", "target_session_id")
    if not isinstance(target, str) or not target:
        raise BadRequest(ErrorCode.MISSING_FIELD, "a turn_request needs target (a session id or alias, "
                         "optionally with @host; target_session_id is read when target is absent)")
    session, _, host = target.rpartition("@") if "@" in target else (target, "", "")
    if not SESSION_ID_RE.match(session) or ("@" in target and not _HOST_RE.match(host)):
        raise BadRequest(ErrorCode.INVALID_TARGET, f"target must be SESSION or SESSION@HOST with SESSION "
                         f"of 1-64 characters A-Z a-z 0-9 . _ -, got {target!r}")
    raw_payload = env.get("payload")
    payload: dict[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
    prompt = _turn_prompt(env, payload)
    _check_sha1(payload, prompt)

    def pick(name: str) -> Any:
        value = env.get(name)
        return payload.get(name) if value is None else value

    body: dict[str, Any] = {
        "from": pick("from") if pick("from") is not None else env.get("source"),
        "reply_to": pick("reply_to"),
        "thread_id": pick("thread_id"),
        "reply_expected": pick("reply_expected"),
        "no_enter": payload.get("no_enter"),
        "force": payload.get("force"),
        "raw": payload.get("raw"),
        "quiet_ms": payload.get("quiet_ms"),
    }
    # Validate the options (types, control characters, size) exactly as an inject would.
    checked = parse_inject({**body, "prompt": prompt}, max_prompt_bytes=max_prompt_bytes)
    final_prompt = with_reply_footer(
        prompt, reply_to=checked.reply_to, reply_expected=checked.reply_expected
    )
    request = parse_inject({**body, "prompt": final_prompt}, max_prompt_bytes=max_prompt_bytes)
    deliberation = env.get("session_id")
    return TurnRequest(
        message_id=env["message_id"],
        target=target,
        session=session,
        host=host or None,
        request=request,
        deliberation_session_id=deliberation if isinstance(deliberation, str) else None,
    )


def _turn_prompt(env: dict[str, Any], payload: dict[str, Any]) -> str:
    """``payload.prompt``; else, as the Node.js daemon read it, a top-level ``prompt`` or
    ``content`` (never the whole event as text, which that daemon typed as a last resort)."""
    for name, value in (("payload.prompt", payload.get("prompt")), ("prompt", env.get("prompt")),
                        ("content", env.get("content"))):
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise BadRequest(ErrorCode.MISSING_FIELD, f"{name} must be a non-empty string")
        return value
    raise BadRequest(ErrorCode.MISSING_FIELD, "a turn_request needs payload.prompt (or, in the Node.js "
                     "daemon's shape, a top-level prompt)")


def _check_sha1(payload: dict[str, Any], prompt: str) -> None:
    claimed = payload.get("prompt_sha1")
    if claimed is None:
        return
    if not isinstance(claimed, str) or not _SHA1_RE.match(claimed):
        raise BadRequest(ErrorCode.INVALID_FIELD, "payload.prompt_sha1 must be 40 hexadecimal characters")
    actual = hashlib.sha1(prompt.encode("utf-8", errors="surrogatepass")).hexdigest()
    if claimed.lower() != actual:
        raise BadRequest(
            "prompt_sha1_mismatch",
            f"payload.prompt_sha1 is {claimed.lower()} but the prompt's SHA-1 is {actual}: the prompt "
            "was altered or truncated on the way; nothing was delivered",
        )


class TurnRouter:
    def __init__(
        self, bus: EventBus, intake: Intake, engine: DeliveryEngine, registry: SessionRegistry, *,
        machine_id: str,
    ) -> None:
        self.bus = bus
        self.intake = intake
        self.engine = engine
        self.registry = registry
        self.machine_id = machine_id
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        bus.add_listener(self._on_event)

    def is_local(self, host: str | None) -> bool:
        if host is None:
            return True
        h = host.lower()
        return h == self.machine_id.lower() or h in LOOPBACK_NAMES

    async def route(self, turn: TurnRequest, envelope: dict[str, Any]) -> RouteOutcome:
        try:
            accepted = await self.intake.accept(Submission(
                target=turn.target, origin=Origin.BUS_AUTO_ROUTE, request=turn.request,
                daemon_key=IDEMPOTENCY_PREFIX + turn.message_id,
            ))
        except TeleptyError as exc:
            return await self._failed(turn, exc.code, exc.detail, self._local_id(turn))
        d = accepted.delivery
        log.info("turn_request routed message_id=%s delivery=%s session=%s",
                 turn.message_id, d.id, d.session_id)
        return RouteOutcome("accepted", delivery_id=d.id, session_id=d.session_id,
                            delivery_status=str(d.status))

    def _local_id(self, turn: TurnRequest) -> str | None:
        """The local session a failed turn was for, if it names one."""
        if not self.is_local(turn.host):
            return None
        try:
            return self.registry.resolve(turn.session).id
        except NotFound:
            return None

    async def _failed(
        self, turn: TurnRequest, reason: str, detail: str, session_id: str | None = None
    ) -> RouteOutcome:
        log.warning("turn_request not routed message_id=%s target=%s reason=%s",
                    turn.message_id, turn.target, reason)
        await self.bus.emit(
            "delivery.failed",
            target=turn.target,
            delivery_id=None,
            session_id=session_id,
            request_message_id=turn.message_id,
            reason=reason,
            detail=detail,
            stage=STAGE_ROUTE,
            attempts=0,
            source_type=str(Origin.BUS_AUTO_ROUTE),
        )
        return RouteOutcome("failed", session_id=session_id, reason=reason, detail=detail)

    # -- message_routed ----------------------------------------------------------------

    def _on_event(self, event: LoggedEvent) -> None:
        env = event.envelope
        if self._closed or event.kind != "inject_written":
            return
        if env.get("source_type") not in (str(Origin.BUS_AUTO_ROUTE), str(Origin.RELAY)):
            return  # (a relayed turn_request is announced too: its key says which message)
        inject_id = env.get("inject_id")
        if isinstance(inject_id, str):
            task = asyncio.create_task(self._announce_routed(inject_id), name="telepty-bus-routed")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _announce_routed(self, delivery_id: str) -> None:
        try:
            d = await self.engine.get(delivery_id)
            key = d.idempotency_key or ""
            if not key.startswith(IDEMPOTENCY_PREFIX):
                return
            message_id = key[len(IDEMPOTENCY_PREFIX):]
            turn = await self.bus.events.by_message_id(message_id)
            deliberation = turn.get("session_id") if turn and turn.get("kind") in ROUTED_KINDS else None
            await self.bus.emit(
                "message_routed",
                target=d.session_id,
                request_message_id=message_id,
                to=d.session_id,
                reply_to=d.reply_to,
                inject_id=d.id,
                thread_id=d.thread_id,
                deliberation_session_id=deliberation if isinstance(deliberation, str) else None,
                **{"from": d.sender},
            )
        except Exception:
            log.exception("could not announce message_routed for delivery %s", delivery_id)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class TurnAckIds:
    """The engine's ``emit``, with the routed turn's ids on the acks of its delivery.

    A delivery the router made (idempotency key ``bus:<message_id>``) ends in an
    ``inject_written`` or a ``delivery.failed`` from the engine, which knows nothing of
    the bus. An orchestrator waiting for the ack of its turn matches it by the turn's
    message id, so those two events get ``request_message_id`` (and, by
    ``make_event``, ``original_message_id`` for v1 readers) and the turn's
    ``payload.turn_id``. The record is read from the store (the engine, built with this
    emitter, persisted it before anything was emitted about it).
    """

    def __init__(self, bus: EventBus, deliveries: DeliveryRepo) -> None:
        self.bus = bus
        self.deliveries = deliveries

    def wrap(self, emit: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def emit_with_ids(kind: str, *, target: str | None = None, **fields: Any) -> Any:
            if (kind in ("inject_written", "delivery.failed") and "request_message_id" not in fields
                    and fields.get("source_type") in (str(Origin.BUS_AUTO_ROUTE), str(Origin.RELAY))):
                fields.update(await self._ids(fields.get("inject_id") or fields.get("delivery_id")))
            return await emit(kind, target=target, **fields)

        return emit_with_ids

    async def _ids(self, delivery_id: object) -> dict[str, Any]:
        if not isinstance(delivery_id, str):
            return {}
        try:
            d = await self.deliveries.get(delivery_id)
            key = (d.idempotency_key if d is not None else None) or ""
            if not key.startswith(IDEMPOTENCY_PREFIX):
                return {}
            message_id = key[len(IDEMPOTENCY_PREFIX):]
            turn = await self.bus.events.by_message_id(message_id)
        except Exception:  # an ack goes out without the ids rather than not at all
            log.exception("could not find the routed message of delivery %s", delivery_id)
            return {}
        payload = turn.get("payload") if turn else None
        turn_id = payload.get("turn_id") if isinstance(payload, dict) else None
        if isinstance(turn_id, bool) or not isinstance(turn_id, str | int):
            turn_id = None
        return {"request_message_id": message_id, "turn_id": turn_id}
