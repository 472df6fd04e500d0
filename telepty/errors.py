"""Error codes shared by the API, the database, the bus and the CLI.

One vocabulary everywhere: a failure recorded as ``pane_dead`` in a delivery row is
reported as ``pane_dead`` by the HTTP API and printed as ``pane_dead`` by the CLI.
Every code is a member of :class:`ErrorCode`, so a code is spelled in one place; a
``StrEnum`` member *is* its string, so records, JSON bodies and comparisons with the
words themselves need no conversion.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # -- a request the daemon refuses (nothing is stored) ---------------------------------
    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    INVALID_QUERY = "invalid_query"
    INVALID_HEADER = "invalid_header"
    INVALID_ORIGIN = "invalid_origin"
    INVALID_PROMPT = "invalid_prompt"
    INVALID_KEYS = "invalid_keys"
    INVALID_TARGET = "invalid_target"
    INVALID_SESSION_ID = "invalid_session_id"
    INVALID_CWD = "invalid_cwd"
    INVALID_HELLO = "invalid_hello"
    INVALID_EVENT = "invalid_event"
    INVALID_KIND = "invalid_kind"
    INVALID_FRAME = "invalid_frame"
    RESERVED_KIND = "reserved_kind"
    CONFLICTING_KIND = "conflicting_kind"
    PROMPT_SHA1_MISMATCH = "prompt_sha1_mismatch"
    TOO_LARGE = "too_large"
    FANOUT_TOO_LARGE = "fanout_too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL_ERROR = "internal_error"
    # -- who is asking ---------------------------------------------------------------------
    UNAUTHORIZED = "unauthorized"
    TOKEN_REQUIRED = "token_required"
    ORIGIN_FORBIDDEN = "origin_forbidden"
    HOST_FORBIDDEN = "host_forbidden"
    INVALID_SESSION_TOKEN = "invalid_session_token"
    SENDER_SPOOFED = "sender_spoofed"
    SESSION_MISMATCH = "session_mismatch"
    NO_SESSION_IDENTITY = "no_session_identity"
    NOTHING_TO_REPLY_TO = "nothing_to_reply_to"
    # -- things that are not there, or not in the state asked for --------------------------
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_EXISTS = "session_exists"
    SESSION_EXITED = "session_exited"
    SESSION_DISCONNECTED = "session_disconnected"
    DELIVERY_NOT_FOUND = "delivery_not_found"
    DELIVERIES_PENDING = "deliveries_pending"
    NOT_CANCELLABLE = "not_cancellable"
    HANDOFF_NOT_FOUND = "handoff_not_found"
    HANDOFF_EXISTS = "handoff_exists"
    THREAD_NOT_FOUND = "thread_not_found"
    THREAD_EXISTS = "thread_exists"
    ILLEGAL_TRANSITION = "illegal_transition"
    NO_TARGETS = "no_targets"
    NO_SCREEN = "no_screen"
    NOT_ATTACHABLE = "not_attachable"
    NOT_WRAPPABLE = "not_wrappable"
    WRAPPER_CONNECTED = "wrapper_connected"
    SPAWN_FAILED = "spawn_failed"
    FANOUT_FAILED = "fanout_failed"
    # -- a delivery's reasons (its record, its events, the API's answers) ------------------
    PANE_DEAD = "pane_dead"
    BUSY = "busy"  # a retrying record's reason while the quiet guard keeps failing
    BUSY_TIMEOUT = "busy_timeout"
    RETRY_EXHAUSTED = "retry_exhausted"
    TMUX_UNAVAILABLE = "tmux_unavailable"
    TMUX_CMD_FAILED = "tmux_cmd_failed"
    WRITE_FAILED = "write_failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    AGENT_EXITED = "agent_exited"
    NOT_SUBMITTED = "not_submitted"
    UNCONFIRMED = "unconfirmed"
    BLOCKED_DIALOG = "blocked_dialog"
    PANE_IN_MODE = "pane_in_mode"
    SCREEN_UNKNOWN = "screen_unknown"
    COMPOSER_HAS_TEXT = "composer_has_text"
    LEFTOVER_IN_INPUT = "leftover_in_input"
    HELD_TIMEOUT = "held_timeout"
    NO_TRANSPORT = "no_transport"
    # -- other machines ---------------------------------------------------------------------
    UNKNOWN_PEER = "unknown_peer"
    PEER_UNREACHABLE = "peer_unreachable"
    PEER_UNAUTHORIZED = "peer_unauthorized"
    HOP_LIMIT = "hop_limit"
    RELAY_UNAVAILABLE = "relay_unavailable"
    REMOTE_DELIVERY_LOST = "remote_delivery_lost"
    # -- the bus ----------------------------------------------------------------------------
    BUS_UNAVAILABLE = "bus_unavailable"
    SUBSCRIBER_OVERFLOW = "subscriber_overflow"
    DAEMON_STOPPING = "daemon_stopping"


class TeleptyError(Exception):
    """A failure with a stable code, a human detail and the HTTP status that fits it."""

    status: int = 400

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, str]:
        return {"error": str(self.code), "detail": self.detail}


class BadRequest(TeleptyError):
    status = 400


class Forbidden(TeleptyError):
    status = 403


class NotFound(TeleptyError):
    status = 404


class Conflict(TeleptyError):
    status = 409


class TooLarge(TeleptyError):
    status = 413


class Unavailable(TeleptyError):
    status = 503
