"""The Delivery record: one accepted prompt on its way into one session's terminal.

Every injection, whatever its origin, becomes one of these and is persisted before the
caller hears back, so the record (not the caller's connection) is what survives a
daemon crash. Reason codes are plain strings shared with the API, the bus and the CLI.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from telepty.clock import utc_now
from telepty.errors import ErrorCode


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    HELD = "held"  # behind an interrupted prompt whose text may still be in the input
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL: frozenset[DeliveryStatus] = frozenset(
    {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED}
)


class DeliveryKind(StrEnum):
    PROMPT = "prompt"  # text pasted and submitted
    KEYS = "keys"  # raw key names / text typed unbracketed (the payload is their JSON)


class Origin(StrEnum):
    API = "api"
    BUS_AUTO_ROUTE = "bus_auto_route"
    RELAY = "relay"
    CLI = "cli"


# -- reason codes (telepty.errors.ErrorCode: one word in the database, the API, the bus, the CLI)
PANE_DEAD = ErrorCode.PANE_DEAD
SESSION_NOT_FOUND = ErrorCode.SESSION_NOT_FOUND
SESSION_DISCONNECTED = ErrorCode.SESSION_DISCONNECTED
SESSION_EXITED = ErrorCode.SESSION_EXITED
BUSY = ErrorCode.BUSY  # a retrying record's reason while the quiet guard keeps failing
BUSY_TIMEOUT = ErrorCode.BUSY_TIMEOUT
RETRY_EXHAUSTED = ErrorCode.RETRY_EXHAUSTED
TMUX_UNAVAILABLE = ErrorCode.TMUX_UNAVAILABLE
TOO_LARGE = ErrorCode.TOO_LARGE
WRITE_FAILED = ErrorCode.WRITE_FAILED
INTERRUPTED = ErrorCode.INTERRUPTED
CANCELLED = ErrorCode.CANCELLED
AGENT_EXITED = ErrorCode.AGENT_EXITED
NOT_SUBMITTED = ErrorCode.NOT_SUBMITTED  # still in the composer after submit (and rescue)
UNCONFIRMED = ErrorCode.UNCONFIRMED  # submit key sent; the screen explained nothing afterwards
BLOCKED_DIALOG = ErrorCode.BLOCKED_DIALOG  # a permission/trust dialog is up: a paste would answer it
PANE_IN_MODE = ErrorCode.PANE_IN_MODE  # copy/view mode that would not leave
SCREEN_UNKNOWN = ErrorCode.SCREEN_UNKNOWN  # no composer in sight: nothing could be confirmed
COMPOSER_HAS_TEXT = ErrorCode.COMPOSER_HAS_TEXT  # someone else's text sits in the input box
LEFTOVER_IN_INPUT = ErrorCode.LEFTOVER_IN_INPUT  # a held record's reason: an interrupted prompt's text
HELD_TIMEOUT = ErrorCode.HELD_TIMEOUT  # held for TELEPTY_HOLD_MAX_S without the hold ending
TMUX_CMD_FAILED = ErrorCode.TMUX_CMD_FAILED
NO_TRANSPORT = ErrorCode.NO_TRANSPORT

# -- stages ---------------------------------------------------------------------------------
# The engine records the last stage an attempt entered. Stages before ``paste`` cannot
# have put a byte in front of the agent, so a crash there is safe to retry; anything
# else (``paste`` and whatever a transport reports after it) might have, and is not.
STAGE_CHECK_READY = "check_ready"
STAGE_QUIET_GUARD = "quiet_guard"
STAGE_PASTE = "paste"
# Persisted before the submit key goes out: a crash after it may have submitted the
# prompt, so a restart only looks (never presses Enter again); a crash between ``paste``
# and here left the prompt unsubmitted, and a restart finishes it (``telepty.delivery.
# recovery``).
STAGE_SUBMIT = "submit"
STAGE_CLEAR = "clear"  # recovery emptying the input of an interrupted paste's remains
# Where a restart finds a prompt that may sit unsubmitted in the input.
INPUT_STAGES: frozenset[str | None] = frozenset({STAGE_PASTE, "settle", STAGE_CLEAR})
# Where the submit key may already have gone out.
SUBMITTED_STAGES: frozenset[str | None] = frozenset({STAGE_SUBMIT, "confirm", "rescue"})
PRE_PASTE_STAGES: frozenset[str | None] = frozenset({None, STAGE_CHECK_READY, STAGE_QUIET_GUARD})
# A relayed delivery's only write is its forward to the peer, and that carries an
# Idempotency-Key derived from our delivery id: sending it again after a crash makes the
# peer answer with the delivery it already has, never paste twice. So a restart resumes
# it instead of failing it ``interrupted``.
STAGE_FORWARD = "forward"
IDEMPOTENT_STAGES: frozenset[str | None] = frozenset({STAGE_FORWARD})


def new_delivery_id() -> str:
    return f"dlv_{uuid.uuid4().hex}"


# Evidence fields that hold text read off the agent's screen: the screen shows the
# prompt as it is typed, so they are content, kept out of API answers unless the
# operator keeps content (``TELEPTY_AUDIT_CONTENT=1``), the audit log's rule.
SCREEN_TEXT_FIELDS = frozenset({"tail_before", "tail_after", "line", "lines", "text", "why"})


def withhold_screen_text(value: Any) -> tuple[Any, bool]:
    """``value`` with every screen-text field replaced by a marker saying how much there
    was; and whether anything was withheld. The structure (verdicts, patterns, timings,
    which stage saw what) stays: it is what a person debugging a delivery reads first."""
    if isinstance(value, list):
        items = [withhold_screen_text(v) for v in value]
        return [v for v, _ in items], any(w for _, w in items)
    if not isinstance(value, dict):
        return value, False
    out: dict[str, Any] = {}
    withheld = False
    for key, item in value.items():
        if key in SCREEN_TEXT_FIELDS and isinstance(item, str) and item:
            out[key] = f"[withheld: {len(item)} characters of screen text]"
            withheld = True
        elif key in SCREEN_TEXT_FIELDS and isinstance(item, list) and item:
            out[key] = [f"[withheld: {len(item)} lines of screen text]"]
            withheld = True
        else:
            out[key], inner = withhold_screen_text(item)
            withheld = withheld or inner
    return out, withheld


@dataclass
class Delivery:
    session_id: str  # the exact id the target resolved to when the prompt was accepted
    target: str  # what the caller asked for (an id or an alias)
    prompt: bytes  # byte-exact; never normalised
    origin: Origin
    id: str = field(default_factory=new_delivery_id)
    sender: str | None = None
    verified_sender: str | None = None
    spoofed: bool = False
    reply_to: str | None = None
    thread_id: str | None = None
    reply_expected: bool = False
    no_enter: bool = False
    force: bool = False
    raw: bool = False
    quiet_ms: int | None = None  # None: the daemon's configured quiet_ms
    status: DeliveryStatus = DeliveryStatus.QUEUED
    reason: str | None = None
    detail: str | None = None  # human text explaining ``reason``
    stage: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)  # what the transport saw
    attempts: int = 0
    confirmed: str | None = None  # "screen" | "echo" | "unverified" once delivered
    idempotency_key: str | None = None
    created_at: str = field(default_factory=utc_now)
    updated_at: str = ""
    next_attempt_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    seq: int = 0  # assigned by the store on insert
    kind: DeliveryKind = DeliveryKind.PROMPT

    def __post_init__(self) -> None:
        if not self.updated_at:
            self.updated_at = self.created_at

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def keys(self) -> list[Any]:
        """A keys delivery's key sequence (names, or {"text": ...} items)."""
        if self.kind is not DeliveryKind.KEYS:
            return []
        value = orjson.loads(self.prompt)
        return value if isinstance(value, list) else []

    @property
    def prompt_sha256(self) -> str:
        return hashlib.sha256(self.prompt).hexdigest()

    def to_public(self, include_prompt: bool = False, screen_text: bool = False) -> dict[str, Any]:
        """JSON-safe view; the prompt itself only on request, since it may be sensitive, and
        the screen text in the evidence only with ``screen_text`` (it shows the prompt)."""
        evidence, withheld = (self.evidence, False) if screen_text else withhold_screen_text(self.evidence)
        if withheld:
            evidence["screen_text"] = "withheld (the daemon keeps it out unless TELEPTY_AUDIT_CONTENT=1)"
        out: dict[str, Any] = {
            "delivery_id": self.id,
            "kind": str(self.kind),
            "session_id": self.session_id,
            "target": self.target,
            "from": self.sender,
            "verified_sender": self.verified_sender,
            "spoofed": self.spoofed,
            "reply_to": self.reply_to,
            "thread_id": self.thread_id,
            "reply_expected": self.reply_expected,
            "no_enter": self.no_enter,
            "force": self.force,
            "raw": self.raw,
            "quiet_ms": self.quiet_ms,
            "origin": str(self.origin),
            "status": str(self.status),
            "reason": self.reason,
            "detail": self.detail,
            "stage": self.stage,
            "evidence": evidence,
            "attempts": self.attempts,
            "confirmed": self.confirmed,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "next_attempt_at": self.next_attempt_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seq": self.seq,
            "prompt_bytes": len(self.prompt),
            "prompt_sha256": self.prompt_sha256,
        }
        if self.kind is DeliveryKind.KEYS:
            out["keys"] = self.keys
        elif include_prompt:
            out["prompt"] = self.prompt.decode("utf-8", errors="replace")
        return out


class DeliveryError(Exception):
    """A delivery attempt that did not succeed, classified for the engine.

    ``retryable`` is a promise from whoever raises it: True means nothing reached the
    target during this attempt, so trying again on the retry schedule cannot paste twice.
    """

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        stage: str | None = None,
        retryable: bool = False,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.stage = stage
        self.retryable = retryable
        self.evidence = evidence or {}
