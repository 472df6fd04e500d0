"""One way in for every prompt and every key press: ``Intake.accept(Submission)``.

The inject, reply, multicast/broadcast and keys routes, the bus auto-router, the NATS
work-queue worker and the Node.js compatibility routes all hand the intake a
:class:`Submission` (a frozen value: where to, what, from whom, how far it has
travelled) and get the accepted delivery back. Everything that decides whether and how
a prompt is accepted happens here, once, in one order, so no entry point can forget a
check or do it differently:

1. the caller's ``Idempotency-Key`` is within its limits (a fan-out derives one key per
   target from it, so a retried fan-out reaches nobody twice);
2. the sender: the session token it presents proves who it is (strict mode refuses a
   token the daemon does not know), and a ``from`` that the token contradicts is
   flagged spoofed, or refused in strict mode;
3. ``id@host`` on another machine is relayed (hop limit, unknown peer: refused before
   any record exists), and ``id@<this machine>`` is plain ``id``;
4. a local prompt that expects a reply gets the reply footer (the peer adds its own);
5. a pane session needs tmux: without it nothing is accepted (503 ``tmux_unavailable``);
6. the engine stores the delivery (``DeliveryEngine.submit``), and the audit log gets its
   row, tagged with the fan-out or reply that made it.

Nothing here knows HTTP: the routes turn headers and bodies into a ``Submission``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Protocol

from telepty.config import Config
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.limits import MAX_IDEMPOTENCY_KEY
from telepty.delivery.model import Delivery, Origin
from telepty.delivery.reply_guide import with_reply_footer
from telepty.delivery.request import InjectRequest, KeyPress
from telepty.errors import BadRequest, ErrorCode, Forbidden, TooLarge, Unavailable
from telepty.sessions.identity import SessionIdentities, claims_other_sender
from telepty.sessions.model import Session, SessionState
from telepty.sessions.panes import TmuxPool
from telepty.sessions.registry import SessionRegistry
from telepty.store.audit import AuditTag, InjectAuditRepo

log = logging.getLogger("telepty.intake")


class RemoteTargets(Protocol):
    """``id@host`` targets (``telepty.relay.service.Relay``)."""

    async def check_remote(self, target: str, hop_in: int) -> object | None:
        """Not None for a target on another machine; raises hop_limit / unknown_peer."""
        ...

    def note_hop(self, delivery_id: str, hop: int) -> None: ...


@dataclass(frozen=True)
class FanoutBatch:
    """One multicast or broadcast: every delivery it makes shares the batch id."""

    via: str  # "multicast" | "broadcast"
    batch_id: str


@dataclass(frozen=True)
class Submission:
    """A prompt (``request``) or key presses (``keys``) on their way to ``target``."""

    target: str  # a session id or alias, or id@host
    origin: Origin
    request: InjectRequest | None = None  # the prompt and its options; ``from`` is the claimed sender
    keys: KeyPress | None = None
    idempotency_key: str | None = None  # the caller's (an Idempotency-Key header): checked
    daemon_key: str | None = None  # one the daemon made itself (bus:<message id>, relay:…): used as is
    sender_token: str | None = None  # the x-telepty-session-token presented, if any
    hop: int = 0  # relays this request has already passed through
    via: str | None = None  # "reply": what the audit log says made it (a fan-out says so by ``batch``)
    batch: FanoutBatch | None = None


@dataclass(frozen=True)
class Sender:
    """Who a submission proves it comes from."""

    verified: str | None  # the session the presented token belongs to
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Accepted:
    delivery: Delivery
    warnings: tuple[str, ...]  # the request's and the sender's, for the caller to hear
    spoofed: bool  # the ``from`` contradicts the verified sender (lenient mode)
    verified_sender: str | None


class Intake:
    def __init__(
        self, config: Config, registry: SessionRegistry, engine: DeliveryEngine,
        identities: SessionIdentities, tmux: TmuxPool, relay: RemoteTargets, audit: InjectAuditRepo,
    ) -> None:
        self.config = config
        self.registry = registry
        self.engine = engine
        self.identities = identities
        self.tmux = tmux
        self.relay = relay
        self.audit = audit

    # -- the checks, also for callers that judge many targets before accepting any ---------

    def sender(self, token: str | None) -> Sender:
        """Who the token proves the caller is (None when it presents no usable token).

        A token of a session that is gone (removed, exited) proves nothing: its child is
        dead, so whoever holds the token now is not that agent.
        """
        token = (token or "").strip()
        if not token:
            return Sender(None)
        session_id = self.identities.verify(token)
        session = self.registry.get(session_id) if session_id is not None else None
        if session is not None and session.state is not SessionState.EXITED:
            return Sender(session.id)
        detail = ("the session token presented (x-telepty-session-token) belongs to no live session; "
                  "it is stale (the session exited or was removed) or was never issued")
        if self.config.require_token:
            raise Forbidden(ErrorCode.INVALID_SESSION_TOKEN, detail)
        log.warning("unrecognised session token presented")
        return Sender(None, (f"{ErrorCode.INVALID_SESSION_TOKEN}: {detail}; recorded as unverified",))

    def claim(self, claimed: str | None, sender: Sender) -> bool:
        """True when ``claimed`` (the ``from``) contradicts the verified sender: spoofed.

        Strict mode refuses such a request outright (403 ``sender_spoofed``) so nothing
        is delivered; otherwise the delivery goes ahead flagged ``spoofed: true``.
        """
        spoofed = claims_other_sender(self.registry, claimed, sender.verified)
        if spoofed:
            log.warning("sender %r claimed by verified session %r", claimed, sender.verified)
            if self.config.require_token:
                raise Forbidden(ErrorCode.SENDER_SPOOFED, f"from is {claimed!r}, but the session token "
                                f"presented belongs to session {sender.verified!r}; refused in strict mode")
        return spoofed

    def unreachable(self, session: Session) -> ErrorCode | None:
        """Why nothing could reach ``session`` at all (its pane needs a missing tmux)."""
        if session.tmux_pane and not self.tmux.server(session.tmux_socket).available():
            return ErrorCode.TMUX_UNAVAILABLE
        return None

    def require_reachable(self, session: Session, after: str = "") -> None:
        if self.unreachable(session) is not None:
            # Refused before a record exists: nothing was accepted, nothing is lost.
            raise Unavailable(ErrorCode.TMUX_UNAVAILABLE, f"session {session.id!r} lives in a tmux pane, "
                              f"but tmux ({self.config.tmux_bin}) is not installed or not on PATH{after}")

    def with_footer(self, req: InjectRequest, verified: str | None) -> InjectRequest:
        """``req`` with the reply footer (SPEC §5) when it expects a reply and is no closing
        message. The footer becomes part of the delivered prompt (and of its hash in the
        record and the audit log): that is what the agent actually received. A prompt the
        footer would push over the size limit is refused as too large, like any other. The
        reply goes where the delivery's ``reply_to`` will point: the caller's, else its
        ``from``, else the verified sender (the engine fills them in the same order)."""
        reply_to = req.reply_to or req.sender or verified
        if not req.reply_expected or not reply_to:
            return req
        text = req.prompt.decode("utf-8")
        final = with_reply_footer(text, reply_to=reply_to, reply_expected=True)
        if final is text:
            return req
        data = final.encode("utf-8")
        limit = self.config.max_prompt_bytes
        if len(data) > limit:
            raise TooLarge(ErrorCode.TOO_LARGE, f"prompt plus its reply footer is {len(data)} bytes of "
                           f"UTF-8; the limit is {limit}")
        return replace(req, prompt=data)

    # -- accepting -------------------------------------------------------------------------

    async def accept(self, sub: Submission) -> Accepted:
        """Check ``sub`` and store its delivery; raises a ``TeleptyError`` (nothing stored)."""
        sender = self.sender(sub.sender_token)
        key = sub.daemon_key if sub.daemon_key is not None else checked_key(sub.idempotency_key)
        target, origin = sub.target, sub.origin
        req = sub.request
        if req is None:
            if sub.keys is None:
                raise ValueError("a submission carries a request or keys")
            # Keys are never relayed: a peer's menu is answered on the peer.
            session = self.registry.resolve(target)
            self.require_reachable(session)
            work: InjectRequest | KeyPress = sub.keys
            warnings = sender.warnings
            spoofed = False
            remote = None
        else:
            remote = await self.relay.check_remote(target, sub.hop) if "@" in target else None
            if remote is None:
                target = target.rpartition("@")[0] if "@" in target else target  # id@<here> is id
                req = self.with_footer(req, sender.verified)
                session = self.registry.resolve(target)
                self.require_reachable(session)
            else:
                origin = Origin.RELAY  # the peer adds the reply footer; the local record is the relay's
            warnings = req.warnings + sender.warnings
            spoofed = self.claim(req.sender, sender)
            work = req
        if sub.batch is not None and key is not None:
            key = fanout_key(key, session.id if remote is None else target)
        delivery = await self.engine.submit(work, target=target, origin=origin, idempotency_key=key,
                                            verified_sender=sender.verified)
        if remote is not None:
            self.relay.note_hop(delivery.id, sub.hop + 1)
        await self._audit(delivery, sub)
        return Accepted(delivery, warnings, spoofed, sender.verified)

    async def _audit(self, d: Delivery, sub: Submission) -> None:
        """The audit row; an idempotent repeat returns a delivery already logged, and the
        log keeps one row per delivery id. A failure to log is reported and swallowed: the
        delivery is already on disk and promised, and losing a prompt because its audit row
        failed would be worse than a gap in the log."""
        batch = sub.batch
        tag = AuditTag(batch.via, batch.batch_id) if batch is not None else AuditTag(sub.via)
        try:
            await self.audit.append(d, tag)
        except Exception:
            log.exception("could not append delivery %s to the audit log", d.id)


def checked_key(key: str | None) -> str | None:
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        raise BadRequest(ErrorCode.INVALID_HEADER, f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} chars")
    return key


def fanout_key(key: str, session_id: str) -> str:
    """One idempotency key per target, bounded in length whatever the caller's key."""
    return f"fanout:{hashlib.sha256(key.encode()).hexdigest()[:32]}:{session_id}"
