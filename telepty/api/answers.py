"""What the routes answer: the shapes of their JSON answers, for the API document.

Request bodies are models (``telepty.api.models``); answers are built by the handlers
from the records' own ``to_public`` and are described here, once, by their shape. The
bus event is described here too: the publish path reads it with the envelope's own
validator (``telepty.bus.envelope``), which is what keeps that path lean.
"""

from __future__ import annotations

from typing import Final

from telepty.api.spec import (
    TIMESTAMP,
    Schema,
    array,
    boolean,
    enum,
    integer,
    nullable,
    obj,
    pattern,
    ref,
    string,
)
from telepty.bus.envelope import KIND_RE, MAX_FIELD_CHARS, MESSAGE_ID_RE
from telepty.delivery.model import DeliveryKind, DeliveryStatus, Origin
from telepty.sessions.model import SessionState, SessionType
from telepty.store.handoffs import HandoffStatus
from telepty.store.threads import ThreadStatus

KIND: Final = string(pattern=pattern(KIND_RE))


def turn_request_rule(field: str) -> Schema:
    """What a turn_request (by ``kind`` or legacy ``type``) needs beyond any event: a target
    SESSION or SESSION@HOST and payload.prompt (telepty.bus.router.parse_turn_request)."""
    return {
        "if": {"properties": {field: {"const": "turn_request"}}, "required": [field]},
        "then": {"required": ["target", "payload"], "properties": {
            "target": string(pattern="^[A-Za-z0-9._-]{1,64}(@[A-Za-z0-9._:\\[\\]-]{1,253})?$"),
            "payload": obj({"prompt": string(minLength=1, description="the prompt to route"),
                             "prompt_sha1": nullable(string(pattern="^[0-9a-fA-F]{40}$"))}, ("prompt",)),
        }},
    }


def answers() -> dict[str, Schema]:
    """The answers' shapes (and the bus event, whose rules live in ``telepty.bus.envelope``)."""
    nstr = nullable(string())
    delivery = obj({
        "delivery_id": string(), "kind": enum(DeliveryKind), "session_id": string(), "target": string(),
        "from": nstr, "verified_sender": nstr, "spoofed": boolean(), "reply_to": nstr, "thread_id": nstr,
        "reply_expected": boolean(), "no_enter": boolean(), "force": boolean(), "raw": boolean(),
        "quiet_ms": nullable(integer()), "origin": enum(Origin), "status": enum(DeliveryStatus),
        "reason": nstr, "detail": nstr, "stage": nstr, "evidence": {"type": "object"},
        "attempts": integer(0), "confirmed": nstr, "idempotency_key": nstr, "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP, "next_attempt_at": nstr, "started_at": nstr, "finished_at": nstr,
        "seq": integer(), "prompt_bytes": integer(0), "prompt_sha256": string(),
        "keys": array({}, description="a keys delivery's key sequence"),
        "prompt": string(description="only with ?prompt=1"),
        "warnings": array(string()),
        "hold_released": string(description="a cancel that ended the hold this delivery put on a session"),
    }, ("delivery_id", "kind", "session_id", "target", "status", "origin", "attempts", "created_at"))
    session = obj({
        "id": string(), "type": enum(SessionType), "command": string(), "cwd": string(),
        "created_at": TIMESTAMP, "updated_at": TIMESTAMP, "state": enum(SessionState),
        "pid": nullable(integer()), "tmux_pane": nstr, "tmux_socket": nstr, "agent": string(),
        "alias": nstr, "exit_code": nullable(integer()), "last_activity_at": nstr, "meta": {"type": "object"},
        "clients": integer(0),
        "locator": obj({"machine_id": string(), "session_id": string(), "project_id": string()},
                        ("machine_id", "session_id", "project_id")),
        "idle_seconds": nullable({"type": "number"}),
        "requested": string(description="the id or alias that was looked up (GET by id only)"),
        # What the Node.js CLI reads (telepty.api.node_dialect, docs/node-compat.md).
        "healthStatus": enum(["CONNECTED", "RECONNECTING", "STALE"]), "healthReason": string(),
        "active_clients": integer(0), "createdAt": TIMESTAMP, "lastActivityAt": nstr,
        "idleSeconds": nullable(integer()), "ready": boolean(), "terminal": nstr,
        "semantic": nullable({"type": "object"}), "lastStateReportAt": nstr,
        "lastInjectReplyTo": nstr, "lastInjectFrom": nstr,
        "session_id": string(description="spawn only: the new session's id (the Node.js CLI reads it)"),
    }, ("id", "type", "command", "cwd", "created_at", "state", "agent", "locator", "healthStatus",
        "active_clients", "createdAt"))
    fan_result = obj({
        "target": string(), "session_id": string(), "delivery_id": nstr, "status": string(), "reason": nstr,
        "detail": nstr, "attempts": integer(0), "confirmed": nstr,
    }, ("target", "session_id", "delivery_id", "status"))
    fanout = obj({
        "batch_id": string(), "via": enum(["multicast", "broadcast"]), "count": integer(0),
        "verified_sender": nstr, "spoofed": boolean(),
        "summary": obj({k: integer(0) for k in ("delivered", "failed", "pending")},
                        ("delivered", "failed", "pending")),
        "results": {"anyOf": [array(fan_result), obj(
            {"successful": array(string()), "failed": array({"type": "object"})}, ("successful", "failed"),
            description="for a Node.js client: accepted ids, and {id, code, error} per failure")]},
        "deliveries": array(fan_result, description="for a Node.js client: the records results holds "
                                                   "for everyone else"),
        "success": boolean(const=True),
        "excluded": array(obj({"session_id": string(), "reason": string()}, ("session_id", "reason"))),
        "warnings": array(string()), "error": string(const="fanout_failed"), "detail": string(),
    }, ("batch_id", "via", "count", "summary", "results"))
    return {
        "Error": obj({"error": string(description="a stable code, e.g. session_not_found"),
                       "detail": string(description="human text")}, ("error", "detail")),
        "Health": obj({"status": string(const="ok"), "version": string()}, ("status", "version")),
        "Meta": obj({
            "name": string(const="telepty"), "version": string(), "pid": integer(), "host": string(),
            "port": integer(), "machine_id": string(), "started_at": TIMESTAMP, "home": string(),
            "home_id": string(description="names the home this daemon serves; the CLI checks it"),
            "capabilities": array(string()),
            "implementation_version": string(description="for a Node.js client, whose version is the "
                                                       "Node.js protocol's: this daemon's version"),
        }, ("name", "version", "pid", "host", "port", "machine_id", "started_at", "capabilities")),
        "Session": session,
        "SessionsEverywhere": obj({
            "scope": string(const="all"), "machine_id": string(),
            "sessions": array(obj({"id": string(), "host": string(), "address": string()},
                                  ("id", "host", "address"))),
            "peers": array({"type": "object"}),
        }, ("scope", "machine_id", "sessions", "peers")),
        "Delivery": delivery,
        "DeliveryAck": obj({
            "delivery_id": string(), "status": enum(DeliveryStatus), "session_id": string(),
            "verified_sender": nstr, "spoofed": boolean(), "kind": enum(DeliveryKind),
            "warnings": array(string()),
        }, ("delivery_id", "status", "session_id"),
            description="202: accepted and stored (the full Delivery when wait timed out)"),
        "DeliveryFailure": {"allOf": [ref("Delivery"), obj({"error": string()}, ("error",))],
                            "description": "wait: true and the delivery ended failed or cancelled"},
        "Fanout": fanout,
        "Identity": obj({
            "session_id": string(), "alias": nstr, "type": enum(SessionType), "agent": string(),
            "state": enum(SessionState), "verified": boolean(const=True), "reply_to": nstr,
        }, ("session_id", "type", "state", "verified", "reply_to")),
        "AuditRow": obj({
            "seq": integer(), "at": TIMESTAMP, "delivery_id": string(), "kind": string(), "origin": string(),
            "via": nstr, "batch_id": nstr, "target": string(), "session_id": string(), "from": nstr,
            "verified_sender": nstr, "spoofed": boolean(), "reply_to": nstr, "thread_id": nstr,
            "prompt_sha256": string(), "prompt_bytes": integer(0), "prompt": nstr,
        }, ("seq", "at", "delivery_id", "session_id", "prompt_sha256", "prompt_bytes")),
        "BusEvent": obj({
            "kind": nullable(KIND), "type": nullable(string(description="legacy name of kind")),
            "message_id": nullable(string(pattern=pattern(MESSAGE_ID_RE))),
            "version": nullable(integer(1, 1000)),
            "source": nullable(string(minLength=1, maxLength=MAX_FIELD_CHARS)),
            "source_host": nullable(string(minLength=1, maxLength=MAX_FIELD_CHARS)),
            "target": nullable(string(minLength=1, maxLength=MAX_FIELD_CHARS,
                                     description="turn_request: SESSION or SESSION@HOST")),
            "ts": nullable(string(minLength=1, maxLength=MAX_FIELD_CHARS, description="ISO-8601")),
            "payload": nullable({"type": "object"}),
        }, description="a version-2 envelope (BUS_EVENT_SCHEMA.md); kind (or legacy type) is "
                       "required, daemon kinds and the bus. prefix are reserved",
            allOf=[turn_request_rule("kind"), turn_request_rule("type")]),
        "BusReceipt": obj({
            "ok": boolean(const=True), "seq": integer(), "message_id": string(), "kind": string(),
            "duplicate": boolean(), "route": {"type": "object"},
        }, ("ok", "seq", "message_id", "kind", "duplicate")),
        "BusPage": obj({
            "events": array(obj({"seq": integer()}, ("seq",))), "next_since": integer(0),
            "first_seq": integer(), "last_seq": integer(), "retained": integer(0), "more": boolean(),
        }, ("events", "next_since", "first_seq", "last_seq", "retained", "more")),
        "Handoff": obj({
            "handoff_id": string(), "status": enum(HandoffStatus), "source_session_id": nstr,
            "deliberation_id": nstr, "auto_execute": boolean(), "tasks": array({}), "task_count": integer(0),
            "payload": nullable({"type": "object"}), "claimed_by": nstr, "result": {},
            "created_at": TIMESTAMP, "updated_at": TIMESTAMP, "claimed_at": nstr, "executing_at": nstr,
            "completed_at": nstr,
        }, ("handoff_id", "status", "created_at")),
        "Thread": obj({
            "thread_id": string(), "topic": string(), "status": enum(ThreadStatus),
            "orchestrator_session_id": nstr, "participant_session_ids": array(string()),
            "message_count": integer(0), "created_at": TIMESTAMP, "updated_at": TIMESTAMP, "closed_at": nstr,
            "id": string(description="thread_id again, as the Node.js CLI reads it"),
            "participant_count": integer(0),
        }, ("thread_id", "topic", "status", "message_count", "created_at")),
    }

