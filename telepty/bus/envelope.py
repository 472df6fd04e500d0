"""Bus envelopes (BUS_EVENT_SCHEMA.md, version 2): the daemon's own, and publishers'.

``kind`` is canonical; ``type`` is mirrored for consumers written against v1 and
accepted as the kind on input. Validation is a pure function of the published object
so that HTTP and WebSocket ingest reject exactly the same things with the same codes.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime
from typing import Any

from telepty.clock import utc_now
from telepty.errors import BadRequest, ErrorCode

ENVELOPE_VERSION = 2
TURN_REQUEST = "turn_request"
# The Node.js daemon's name for a turn an orchestrator routes (``target_session_id``):
# auto-routed exactly like a turn_request.
DELIBERATION_ROUTE_TURN = "deliberation_route_turn"
ROUTED_KINDS = frozenset({TURN_REQUEST, DELIBERATION_ROUTE_TURN})
# A session's self-reported state (``telepty status-report`` of the Node.js CLI, or
# published by an orchestrator): applied to the session it names.
SESSION_STATE_REPORT = "session_state_report"

# \Z, not $: "$" also matches before a trailing newline.
KIND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
MESSAGE_ID_RE = re.compile(r"^[\x21-\x7e]{1,200}\Z")  # printable ASCII, no spaces
MAX_FIELD_CHARS = 256

# Control frames on the bus socket (ack, error, live, gap) use this prefix. They are
# never logged, so a publisher may not use it: a subscriber must be able to tell the
# daemon's answers from events.
CONTROL_PREFIX = "bus."

# What the daemon itself emits (BUS_EVENT_SCHEMA.md). A publisher cannot forge one:
# an orchestrator waiting for ``inject_written`` must be able to trust that it came
# from the daemon that wrote the prompt.
DAEMON_KINDS = frozenset({
    "session_register",
    "session.replaced",
    "session.idle",
    "session.held",
    "session_health",
    "session_upstream_stalled",
    "inject_written",
    "message_routed",
    "delivery.failed",
    "relay.status",
    "keys_sent",
    "handoff.created",
    "handoff.claimed",
    "handoff.executing",
    "handoff.completed",
    "thread.opened",
    "thread.closed",
})

# The acknowledgements an orchestrator waits for after publishing a turn. v1 readers
# look for ``sender`` / ``timestamp`` / ``original_message_id`` in them; they carry
# those beside our ``source`` / ``ts`` / ``request_message_id``.
ACK_KINDS = frozenset({"inject_written", "message_routed", "delivery.failed"})

# Envelope fields, in the order the daemon writes them.
ENVELOPE_FIELDS = ("version", "message_id", "kind", "type", "source", "source_host", "target", "ts")
_RESERVED_BODY_FIELDS = frozenset({"version", "message_id", "kind", "type", "source_host", "ts", "seq"})


def new_message_id(kind: str) -> str:
    """``<kind>-<uuid>`` with the UUIDv7 layout (RFC 9562): 48 bits of Unix time in
    milliseconds, then 74 random bits.

    Time first, because the log indexes ``message_id``: ids made in order land next to
    each other in that index, so a commit rewrites one or two of its pages instead of
    one page in a random place per event (which was most of a commit's cost). The
    random bits are the OS's CSPRNG, as before: an id a publisher could predict is one
    it could take first, and the daemon's own event would then be dropped as its
    duplicate. Formatted without a ``UUID`` object: this runs for most events.
    """
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + _random_bytes(10))
    raw[6] = raw[6] & 0x0F | 0x70  # version 7
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 9562 variant
    h = raw.hex()
    return f"{kind}-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_ENTROPY_CHUNK = 4096
_entropy = b""
_entropy_at = 0
_entropy_lock = threading.Lock()


def _random_bytes(n: int) -> bytes:
    """``os.urandom(n)``, read from the OS 4 KiB at a time: one system call per few
    hundred ids instead of one each. Under a lock, so no two threads are ever handed
    the same bytes (that would be the same id)."""
    global _entropy, _entropy_at
    with _entropy_lock:
        at = _entropy_at
        if at + n > len(_entropy):
            _entropy, at = os.urandom(_ENTROPY_CHUNK), 0
        _entropy_at = at + n
        return _entropy[at:at + n]


def _forget_entropy() -> None:
    """A forked child starts its own: it must not hand out bytes its parent will too."""
    global _entropy, _entropy_at, _entropy_lock
    _entropy, _entropy_at, _entropy_lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_entropy)


def make_event(
    kind: str, *, source_host: str, target: str | None = None, source: str = "daemon",
    **fields: Any,
) -> dict[str, Any]:
    """One of the daemon's own events. A body field may not reuse an envelope name: a
    ``message_id`` in the body would replace the event's own id (and the log would
    drop the event as a duplicate of whatever message it was about)."""
    clash = _RESERVED_BODY_FIELDS.intersection(fields)
    if clash:
        raise ValueError(f"event body fields {sorted(clash)} would overwrite the envelope")
    env: dict[str, Any] = {
        "version": ENVELOPE_VERSION,
        "message_id": new_message_id(kind),
        "kind": kind,
        "type": kind,
        "source": source,
        "source_host": source_host,
        "target": target,
        "ts": utc_now(),
    }
    env.update(fields)
    if kind in ACK_KINDS:
        env["sender"] = source
        env["timestamp"] = env["ts"]
        if fields.get("request_message_id") is not None:
            env["original_message_id"] = fields["request_message_id"]
    return env


def first_given(env: dict[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` the event has (not null): v2 and v1 names of
    one field (``target`` / ``target_session_id``, ``session_id`` / ``target``)."""
    return next((env[n] for n in names if env.get(n) is not None), None)


def normalize_envelope(raw: object, *, machine_id: str, default_source: str) -> dict[str, Any]:
    """A published object → a complete v2 envelope, or ``BadRequest`` naming the field.

    The daemon fills what a publisher left out (``version``, ``message_id``, ``ts``,
    ``source``, ``source_host``) and never rewrites what it gave, except that ``type``
    always mirrors ``kind`` and a ``seq`` is dropped (the log assigns seqs); a
    session_state_report's ``seq`` (its own counter, in the Node.js schema) moves to
    ``report_seq``.
    """
    if not isinstance(raw, dict):
        raise BadRequest(ErrorCode.INVALID_EVENT, f"an event must be a JSON object, got {_what(raw)}")
    kind = _kind(raw)
    message_id = _optional_str(raw, "message_id")
    if message_id is not None and not MESSAGE_ID_RE.match(message_id):
        raise BadRequest(
            ErrorCode.INVALID_FIELD, "message_id must be 1-200 printable ASCII characters without spaces"
        )
    target = _optional_str(raw, "target")
    version = raw.get("version")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 1000
    ):
        raise BadRequest(ErrorCode.INVALID_FIELD, f"version must be a positive integer, got {version!r}")
    ts = _optional_str(raw, "ts")
    if ts is not None:
        try:
            datetime.fromisoformat(ts)
        except ValueError:
            raise BadRequest(ErrorCode.INVALID_FIELD,
                             f"ts must be an ISO-8601 timestamp, got {ts!r}") from None
    payload = raw.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise BadRequest(ErrorCode.INVALID_FIELD, f"payload must be a JSON object, got {_what(payload)}")
    env: dict[str, Any] = {
        "version": ENVELOPE_VERSION if version is None else version,
        "message_id": message_id or new_message_id(kind),
        "kind": kind,
        "type": kind,
        "source": _optional_str(raw, "source") or default_source,
        "source_host": _optional_str(raw, "source_host") or machine_id,
        "target": target,
        "ts": ts or utc_now(),
    }
    for key, value in raw.items():
        if key not in env and key != "seq":
            env[key] = value
    if kind == SESSION_STATE_REPORT and raw.get("seq") is not None:
        # The Node.js schema's report counter shares its name with the log's seq: kept.
        env["report_seq"] = raw["seq"]
    return env


def _kind(raw: dict[str, Any]) -> str:
    kind, legacy = raw.get("kind"), raw.get("type")
    for name, value in (("kind", kind), ("type", legacy)):
        if value is not None and not isinstance(value, str):
            raise BadRequest(ErrorCode.INVALID_FIELD, f"{name} must be a string, got {_what(value)}")
    if kind is None and legacy is None:
        raise BadRequest(ErrorCode.MISSING_FIELD, "kind is required (the legacy name type is also accepted)")
    if kind is not None and legacy is not None and kind != legacy:
        raise BadRequest(
            ErrorCode.CONFLICTING_KIND, f"kind {kind!r} and legacy type {legacy!r} disagree; send kind only"
        )
    value = kind if kind is not None else legacy
    assert value is not None
    if not KIND_RE.match(value):
        raise BadRequest(
            ErrorCode.INVALID_KIND,
            f"kind must be 1-64 characters of A-Z a-z 0-9 _ . : - starting with a letter or digit, "
            f"got {value!r}",
        )
    if value.startswith(CONTROL_PREFIX):
        raise BadRequest(ErrorCode.RESERVED_KIND, f"kinds starting with {CONTROL_PREFIX!r} are the "
                         "bus socket's control frames and cannot be published")
    if value in DAEMON_KINDS:
        raise BadRequest(ErrorCode.RESERVED_KIND, f"{value!r} is emitted by the daemon itself and "
                         "cannot be published")
    return value


def _optional_str(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(ErrorCode.INVALID_FIELD, f"{name} must be a string or null, got {_what(value)}")
    if not value or len(value) > MAX_FIELD_CHARS:
        raise BadRequest(ErrorCode.INVALID_FIELD, f"{name} must be 1-{MAX_FIELD_CHARS} characters")
    return value


def _what(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)
