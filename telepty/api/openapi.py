"""``GET /api/openapi.json``: an OpenAPI 3.1 description of every route the daemon serves.

Why it exists: callers (orchestrators, peers, MCP glue, people with curl) get one
machine-readable contract, and the tests hold the daemon to it:
``tests/unit/test_openapi.py`` fails when a route is registered without being described
here (or described without being registered), and
``tests/integration/test_api_schemathesis.py`` fuzzes a real daemon from this document,
so a request body the document calls valid must not crash a handler and every answer
must be one the document announces.

Why a generator rather than a YAML file: the shapes that recur (the ``{error, detail}``
body, a session id, "null counts as absent" for optional fields, the auth errors) are
small helpers used by every operation, and the identifier patterns and body limits
come from the regexes and constants the parsers use (``SESSION_ID_RE``,
``MAX_QUIET_MS``, ``MAX_KEYS``…), so those cannot drift from the code that enforces
them. Query ``limit`` ranges are still written here beside the handlers' own numbers.

Extensions: ``x-websocket: true`` marks routes that upgrade to a WebSocket (listed for
completeness; an HTTP fuzzer should skip them); ``x-spawns-process: true`` marks the one
operation that starts a program, which a fuzzer must never feed arbitrary commands.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any, Final

import orjson
from aiohttp import web

from telepty import __version__
from telepty.api.bus import MAX_KINDS, MAX_SEQ
from telepty.api.handoffs import MAX_TASK_COUNT, MAX_TASKS, NAME_RE
from telepty.api.handoffs_v1 import MAX_MESSAGE
from telepty.api.injects import MAX_NAME
from telepty.api.node_dialect import COMPAT_HEADER
from telepty.api.sessions import MAX_PID
from telepty.api.threads import MAX_PARTICIPANTS, MAX_TOPIC
from telepty.bus.envelope import KIND_RE, MAX_FIELD_CHARS, MESSAGE_ID_RE
from telepty.delivery.keys import MAX_KEYS, MAX_TEXT
from telepty.delivery.model import DeliveryKind, DeliveryStatus, Origin
from telepty.delivery.request import MAX_QUIET_MS, MAX_WAIT_TIMEOUT
from telepty.sessions.agents import AGENT_NAME_RE
from telepty.sessions.model import PANE_ID_RE, SESSION_ID_RE, SessionState, SessionType
from telepty.sessions.state_report import MAX_TEXT as MAX_REPORT_TEXT
from telepty.store.audit import DEFAULT_LIMIT as AUDIT_DEFAULT_LIMIT
from telepty.store.audit import MAX_LIMIT as AUDIT_MAX_LIMIT
from telepty.store.handoffs import HandoffStatus
from telepty.store.threads import ThreadStatus

__all__ = ["OPENAPI_PATH", "add_routes", "build_document", "openapi_json"]

OPENAPI_PATH: Final = "/api/openapi.json"
OPENAPI_VERSION: Final = "3.1.0"

Schema = dict[str, Any]
_JSON: Final = "application/json"

# -- schema helpers ------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _str(**kw: Any) -> Schema:
    return {"type": "string", **kw}


def _int(lo: int | None = None, hi: int | None = None, **kw: Any) -> Schema:
    out: Schema = {"type": "integer", **kw}
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


def _bool(**kw: Any) -> Schema:
    return {"type": "boolean", **kw}


def _enum(values: Any, **kw: Any) -> Schema:
    return {"type": "string", "enum": [str(v) for v in values], **kw}


def _arr(items: Schema, **kw: Any) -> Schema:
    return {"type": "array", "items": items, **kw}


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), **kw: Any) -> Schema:
    """An object; unknown properties stay allowed unless the caller says otherwise, since
    most parsers ignore fields they do not know (``keys`` is the exception)."""
    out: Schema = {"type": "object", "properties": props, **kw}
    if required:
        out["required"] = list(required)
    return out


def _nullable(schema: Schema) -> Schema:
    """``schema`` or ``null``: the body parsers (``telepty.api.body.opt``) read a JSON null
    as "absent", so every optional request field is nullable, and so are response
    fields the daemon leaves empty."""
    out = copy.deepcopy(schema)
    kind = out.get("type")
    if "$ref" in out or kind is None:
        return {"anyOf": [out, {"type": "null"}]}
    out["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    if "const" in out:
        out["enum"] = [out.pop("const"), None]
    return out


def _pattern(rx: re.Pattern[str]) -> str:
    """A parser's own regex as a JSON Schema pattern: ``\\Z`` (no trailing newline) is
    Python's; JSON Schema's ``$`` already means the very end."""
    return rx.pattern.removesuffix("\\Z") + "$"


# Identifiers, from the regexes the parsers apply.
SESSION_ID: Final = _str(pattern=_pattern(SESSION_ID_RE),
                         description="1-64 characters of A-Z a-z 0-9 . _ -")
NAME: Final = _str(pattern=_pattern(NAME_RE),
                   description="1-200 characters of A-Z a-z 0-9 . _ : @ / -")
PANE_ID: Final = _str(pattern=_pattern(PANE_ID_RE), description="a tmux pane id such as %3")
AGENT: Final = _str(pattern=_pattern(AGENT_NAME_RE),
                    description="a profile name (claude, codex, gemini, aider, yours) or other")
KIND: Final = _str(pattern=_pattern(KIND_RE))
TIMESTAMP: Final = _str(description="UTC ISO-8601 with Z")
# What ?since= and ?until= take (telepty.api.injects.parse_instant). The last branch
# says the handler judges the rest (fromisoformat and float() read more than these).
INSTANT: Final = {"anyOf": [
    _str(format="date-time", description="an ISO-8601 instant with a time zone"),
    _str(pattern="^[0-9]+(\\.[0-9]+)?$", description="epoch seconds"),
    _str(pattern="^[0-9]+(\\.[0-9]+)?[smhdw]$", description="a duration ago: 90s, 15m, 2h, 7d, 1w"),
    _str(),
]}
# C0 controls but \t and \n, DEL and C1 (telepty.delivery.request._CONTROL_RE).
NO_CONTROLS: Final = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"


# -- parameters -----------------------------------------------------------------------


def _param(where: str, name: str, schema: Schema, description: str, *, required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": description}


def _path(name: str = "id", description: str = "a session id or alias") -> Schema:
    # Any non-empty segment reaches the handler (aiohttp's ``[^{}/]+``); the handler judges it.
    return _param("path", name, _str(minLength=1), description)


def _query(name: str, schema: Schema, description: str, *, empty_ok: bool = True) -> Schema:
    """A query parameter; the handlers read an empty value (``?status=``) as absent."""
    if empty_ok:
        schema = {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
    return _param("query", name, schema, description)


def _limit(default: int, hi: int) -> Schema:
    return _query("limit", _int(1, hi, default=default), f"at most this many items (1-{hi})")


IDEMPOTENCY: Final = _param("header", "Idempotency-Key", _str(minLength=1, maxLength=200),
                            "a repeated request with the same key returns the first delivery")
ORIGIN_QUERY: Final = _query("origin", _enum([Origin.API, Origin.CLI], default="api"),
                             "who is asking (also the x-telepty-origin header)")
SESSION_TOKEN: Final = _param("header", "x-telepty-session-token", _str(),
                              "the calling session's own token (TELEPTY_SESSION_TOKEN): proves the sender")
COMPAT: Final = _param("header", COMPAT_HEADER, _str(),
                       "node: answer in the Node.js telepty's shapes (docs/node-compat.md); the "
                       "Node.js CLI is recognised by its User-Agent, node")
HOP: Final = _param("header", "x-telepty-hop", _str(description="an integer, read with int()"),
                    "relays this request has passed through (set by peer daemons)")


# -- responses ------------------------------------------------------------------------


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(codes: str) -> Schema:
    return _json(_ref("Error"), codes)


# Answers any authenticated route can give (telepty.api.auth.decide).
AUTH_ERRORS: Final = {
    401: "unauthorized / token_required: send the daemon token (x-telepty-token, Bearer, or ?token=)",
    403: "origin_forbidden / host_forbidden: browser origins and foreign Host headers are refused",
}
# Answers any route that reads a JSON body can give (telepty.api.body.json_object).
BODY_ERRORS: Final = {
    400: "invalid_json: the body is not a JSON object",
    413: "too_large: the body is over TELEPTY_MAX_BODY_BYTES",
}
# A path parameter aiohttp's router cannot match (e.g. an encoded slash) is a 404 too.
PATH_404: Final = "not_found: no such route"


# -- the shapes -----------------------------------------------------------------------


def _turn_request_rule(field: str) -> Schema:
    """What a turn_request (by ``kind`` or legacy ``type``) needs beyond any event: a target
    SESSION or SESSION@HOST and payload.prompt (telepty.bus.router.parse_turn_request)."""
    return {
        "if": {"properties": {field: {"const": "turn_request"}}, "required": [field]},
        "then": {"required": ["target", "payload"], "properties": {
            "target": _str(pattern="^[A-Za-z0-9._-]{1,64}(@[A-Za-z0-9._:\\[\\]-]{1,253})?$"),
            "payload": _obj({"prompt": _str(minLength=1, description="the prompt to route"),
                             "prompt_sha1": _nullable(_str(pattern="^[0-9a-fA-F]{40}$"))}, ("prompt",)),
        }},
    }


def _prompt_rule(body: Schema) -> Schema:
    """The prompt (or, deprecated, text, content or message) is required, and may hold
    control characters other than \\n and \\t only with raw: true
    (telepty.delivery.request.parse_inject)."""
    return {**body, "anyOf": [{"required": [name]} for name in ("prompt", "text", "content", "message")],
            "if": {"properties": {"raw": {"const": True}}, "required": ["raw"]},
            "else": {"properties": {"prompt": {"pattern": NO_CONTROLS}}}}


def _components() -> dict[str, Any]:
    nstr = _nullable(_str())
    delivery = _obj({
        "delivery_id": _str(), "kind": _enum(DeliveryKind), "session_id": _str(), "target": _str(),
        "from": nstr, "verified_sender": nstr, "spoofed": _bool(), "reply_to": nstr, "thread_id": nstr,
        "reply_expected": _bool(), "no_enter": _bool(), "force": _bool(), "raw": _bool(),
        "quiet_ms": _nullable(_int()), "origin": _enum(Origin), "status": _enum(DeliveryStatus),
        "reason": nstr, "detail": nstr, "stage": nstr, "evidence": {"type": "object"},
        "attempts": _int(0), "confirmed": nstr, "idempotency_key": nstr, "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP, "next_attempt_at": nstr, "started_at": nstr, "finished_at": nstr,
        "seq": _int(), "prompt_bytes": _int(0), "prompt_sha256": _str(),
        "keys": _arr({}, description="a keys delivery's key sequence"),
        "prompt": _str(description="only with ?prompt=1"),
        "warnings": _arr(_str()),
        "hold_released": _str(description="a cancel that ended the hold this delivery put on a session"),
    }, ("delivery_id", "kind", "session_id", "target", "status", "origin", "attempts", "created_at"))
    session = _obj({
        "id": _str(), "type": _enum(SessionType), "command": _str(), "cwd": _str(),
        "created_at": TIMESTAMP, "updated_at": TIMESTAMP, "state": _enum(SessionState),
        "pid": _nullable(_int()), "tmux_pane": nstr, "tmux_socket": nstr, "agent": _str(),
        "alias": nstr, "exit_code": _nullable(_int()), "last_activity_at": nstr, "meta": {"type": "object"},
        "clients": _int(0),
        "locator": _obj({"machine_id": _str(), "session_id": _str(), "project_id": _str()},
                        ("machine_id", "session_id", "project_id")),
        "idle_seconds": _nullable({"type": "number"}),
        "requested": _str(description="the id or alias that was looked up (GET by id only)"),
        # What the Node.js CLI reads (telepty.api.node_dialect, docs/node-compat.md).
        "healthStatus": _enum(["CONNECTED", "RECONNECTING", "STALE"]), "healthReason": _str(),
        "active_clients": _int(0), "createdAt": TIMESTAMP, "lastActivityAt": nstr,
        "idleSeconds": _nullable(_int()), "ready": _bool(), "terminal": nstr,
        "semantic": _nullable({"type": "object"}), "lastStateReportAt": nstr,
        "lastInjectReplyTo": nstr, "lastInjectFrom": nstr,
        "session_id": _str(description="spawn only: the new session's id (the Node.js CLI reads it)"),
    }, ("id", "type", "command", "cwd", "created_at", "state", "agent", "locator", "healthStatus",
        "active_clients", "createdAt"))
    inject_options = {
        "from": _nullable(_str(description="who sends it (a session id, or any name)")),
        "reply_to": _nullable(_str(description="where replies go; defaults to from")),
        "thread_id": _nullable(_str()),
        "reply_expected": _nullable(_bool(description="append the reply footer (unless a closing message)")),
        "no_enter": _nullable(_bool(description="paste without submitting")),
        "force": _nullable(_bool(description="skip the quiet guard")),
        "wait": _nullable(_bool(description="answer with the final record (200/422) instead of 202")),
        "raw": _nullable(_bool(description="allow control characters in the prompt")),
        "quiet_ms": _nullable(_int(0, MAX_QUIET_MS)),
        "timeout": _nullable({"type": "number", "minimum": 0, "maximum": MAX_WAIT_TIMEOUT,
                              "description": "seconds to wait with wait: true"}),
    }
    prompt = _nullable(_str(minLength=1,
                            description="UTF-8, byte-exact, at most TELEPTY_MAX_PROMPT_BYTES (1 MiB); "
                                        "control characters other than \\n and \\t only with raw: true"))
    # Read (and then must be a string) only when prompt is absent; ignored with a warning otherwise.
    legacy = {name: {"description": "deprecated name for prompt"} for name in ("text", "content", "message")}
    inject = _prompt_rule(_obj({"prompt": prompt, **legacy, **inject_options}))
    fan_result = _obj({
        "target": _str(), "session_id": _str(), "delivery_id": nstr, "status": _str(), "reason": nstr,
        "detail": nstr, "attempts": _int(0), "confirmed": nstr,
    }, ("target", "session_id", "delivery_id", "status"))
    fanout = _obj({
        "batch_id": _str(), "via": _enum(["multicast", "broadcast"]), "count": _int(0),
        "verified_sender": nstr, "spoofed": _bool(),
        "summary": _obj({k: _int(0) for k in ("delivered", "failed", "pending")},
                        ("delivered", "failed", "pending")),
        "results": {"anyOf": [_arr(fan_result), _obj(
            {"successful": _arr(_str()), "failed": _arr({"type": "object"})}, ("successful", "failed"),
            description="for a Node.js client: accepted ids, and {id, code, error} per failure")]},
        "deliveries": _arr(fan_result, description="for a Node.js client: the records results holds "
                                                   "for everyone else"),
        "success": _bool(const=True),
        "excluded": _arr(_obj({"session_id": _str(), "reason": _str()}, ("session_id", "reason"))),
        "warnings": _arr(_str()), "error": _str(const="fanout_failed"), "detail": _str(),
    }, ("batch_id", "via", "count", "summary", "results"))
    key_item = {"oneOf": [
        _str(minLength=1, description="a key name: Enter, Escape, Up, C-c, F1-F12, a single character…"),
        _obj({"text": _str(minLength=1, maxLength=MAX_TEXT)}, ("text",), additionalProperties=False),
    ]}
    return {
        "schemas": {
            "Error": _obj({"error": _str(description="a stable code, e.g. session_not_found"),
                           "detail": _str(description="human text")}, ("error", "detail")),
            "Health": _obj({"status": _str(const="ok"), "version": _str()}, ("status", "version")),
            "Meta": _obj({
                "name": _str(const="telepty"), "version": _str(), "pid": _int(), "host": _str(),
                "port": _int(), "machine_id": _str(), "started_at": TIMESTAMP, "home": _str(),
                "home_id": _str(description="names the home this daemon serves; the CLI checks it"),
                "capabilities": _arr(_str()),
                "implementation_version": _str(description="for a Node.js client, whose version is the "
                                                           "Node.js protocol's: this daemon's version"),
            }, ("name", "version", "pid", "host", "port", "machine_id", "started_at", "capabilities")),
            "Session": session,
            "SessionsEverywhere": _obj({
                "scope": _str(const="all"), "machine_id": _str(),
                "sessions": _arr(_obj({"id": _str(), "host": _str(), "address": _str()},
                                      ("id", "host", "address"))),
                "peers": _arr({"type": "object"}),
            }, ("scope", "machine_id", "sessions", "peers")),
            "RegisterSession": _obj({
                "type": _nullable(_enum(["wrapped", "pane"], default="wrapped")),
                "session_id": _nullable(SESSION_ID),
                "command": _nullable(_str()), "cwd": _nullable(_str()), "pid": _nullable(_int(1, MAX_PID)),
                "tmux_pane": _nullable(PANE_ID), "tmux_socket": _nullable(_str()),
                "agent": _nullable(AGENT), "meta": _nullable({"type": "object"}),
                "replace": _nullable(_bool(description="take the id over from a live session")),
            }, description="tmux_pane is required when type is pane"),
            "SpawnSession": _obj({
                "command": _str(minLength=1, description="the program (with args) or a command line, "
                                                         "split like a shell would; no shell runs it"),
                "args": _nullable(_arr(_str())), "session_id": _nullable(SESSION_ID),
                "cwd": _nullable(_str()),
                "env": _nullable({"type": "object", "additionalProperties": _str()}),
                "agent": _nullable(AGENT), "cols": _nullable(_int(1, 1000)), "rows": _nullable(_int(1, 1000)),
            }, ("command",)),
            "Inject": inject,
            "Multicast": _prompt_rule(_obj(
                {**inject["properties"], "session_ids": _arr(SESSION_ID, minItems=1)},
                ("session_ids",),
            )),
            "Broadcast": _prompt_rule(_obj({
                **inject["properties"], "agent": _nullable(_str()), "project": _nullable(_str()),
                "type": _nullable(_enum(SessionType)), "exclude": _nullable(_arr(SESSION_ID)),
            })),
            "Reply": _prompt_rule(_obj({
                **{k: v for k, v in inject["properties"].items() if k != "from"},
                "session_id": _nullable(SESSION_ID.copy()),
                "from": {"type": "null", "description": "never: a reply is from the replying session"},
            })),
            "Keys": _obj({
                "keys": _arr(key_item, minItems=1, maxItems=MAX_KEYS),
                "force": _nullable(_bool()), "wait": _nullable(_bool()),
                "quiet_ms": _nullable(_int(0, MAX_QUIET_MS)),
                "timeout": _nullable({"type": "number", "minimum": 0, "maximum": MAX_WAIT_TIMEOUT}),
            }, ("keys",), additionalProperties=False),
            "Delivery": delivery,
            "DeliveryAck": _obj({
                "delivery_id": _str(), "status": _enum(DeliveryStatus), "session_id": _str(),
                "verified_sender": nstr, "spoofed": _bool(), "kind": _enum(DeliveryKind),
                "warnings": _arr(_str()),
            }, ("delivery_id", "status", "session_id"),
                description="202: accepted and stored (the full Delivery when wait timed out)"),
            "DeliveryFailure": {"allOf": [_ref("Delivery"), _obj({"error": _str()}, ("error",))],
                                "description": "wait: true and the delivery ended failed or cancelled"},
            "Fanout": fanout,
            "Identity": _obj({
                "session_id": _str(), "alias": nstr, "type": _enum(SessionType), "agent": _str(),
                "state": _enum(SessionState), "verified": _bool(const=True), "reply_to": nstr,
            }, ("session_id", "type", "state", "verified", "reply_to")),
            "AuditRow": _obj({
                "seq": _int(), "at": TIMESTAMP, "delivery_id": _str(), "kind": _str(), "origin": _str(),
                "via": nstr, "batch_id": nstr, "target": _str(), "session_id": _str(), "from": nstr,
                "verified_sender": nstr, "spoofed": _bool(), "reply_to": nstr, "thread_id": nstr,
                "prompt_sha256": _str(), "prompt_bytes": _int(0), "prompt": nstr,
            }, ("seq", "at", "delivery_id", "session_id", "prompt_sha256", "prompt_bytes")),
            "BusEvent": _obj({
                "kind": _nullable(KIND), "type": _nullable(_str(description="legacy name of kind")),
                "message_id": _nullable(_str(pattern=_pattern(MESSAGE_ID_RE))),
                "version": _nullable(_int(1, 1000)),
                "source": _nullable(_str(minLength=1, maxLength=MAX_FIELD_CHARS)),
                "source_host": _nullable(_str(minLength=1, maxLength=MAX_FIELD_CHARS)),
                "target": _nullable(_str(minLength=1, maxLength=MAX_FIELD_CHARS,
                                         description="turn_request: SESSION or SESSION@HOST")),
                "ts": _nullable(_str(minLength=1, maxLength=MAX_FIELD_CHARS, description="ISO-8601")),
                "payload": _nullable({"type": "object"}),
            }, description="a version-2 envelope (BUS_EVENT_SCHEMA.md); kind (or legacy type) is "
                           "required, daemon kinds and the bus. prefix are reserved",
                allOf=[_turn_request_rule("kind"), _turn_request_rule("type")]),
            "BusReceipt": _obj({
                "ok": _bool(const=True), "seq": _int(), "message_id": _str(), "kind": _str(),
                "duplicate": _bool(), "route": {"type": "object"},
            }, ("ok", "seq", "message_id", "kind", "duplicate")),
            "BusPage": _obj({
                "events": _arr(_obj({"seq": _int()}, ("seq",))), "next_since": _int(0),
                "first_seq": _int(), "last_seq": _int(), "retained": _int(0), "more": _bool(),
            }, ("events", "next_since", "first_seq", "last_seq", "retained", "more")),
            "NewHandoff": _obj({
                "tasks": _nullable(_arr({}, maxItems=MAX_TASKS)),
                "task_count": _nullable(_int(0, MAX_TASK_COUNT)),
                "source_session_id": _nullable(NAME), "deliberation_id": _nullable(NAME),
                "handoff_id": _nullable(NAME), "auto_execute": _nullable(_bool()),
                "payload": _nullable({"type": "object"}),
            }, description="tasks or task_count is required; both must agree"),
            "Handoff": _obj({
                "handoff_id": _str(), "status": _enum(HandoffStatus), "source_session_id": nstr,
                "deliberation_id": nstr, "auto_execute": _bool(), "tasks": _arr({}), "task_count": _int(0),
                "payload": _nullable({"type": "object"}), "claimed_by": nstr, "result": {},
                "created_at": TIMESTAMP, "updated_at": TIMESTAMP, "claimed_at": nstr, "executing_at": nstr,
                "completed_at": nstr,
            }, ("handoff_id", "status", "created_at")),
            "NewThread": _obj({
                "topic": _str(minLength=1, maxLength=MAX_TOPIC, description="not only whitespace"),
                "participant_session_ids": _nullable(_arr(NAME, maxItems=MAX_PARTICIPANTS)),
                "orchestrator_session_id": _nullable(NAME), "thread_id": _nullable(NAME),
            }, ("topic",)),
            "Thread": _obj({
                "thread_id": _str(), "topic": _str(), "status": _enum(ThreadStatus),
                "orchestrator_session_id": nstr, "participant_session_ids": _arr(_str()),
                "message_count": _int(0), "created_at": TIMESTAMP, "updated_at": TIMESTAMP, "closed_at": nstr,
                "id": _str(description="thread_id again, as the Node.js CLI reads it"),
                "participant_count": _int(0),
            }, ("thread_id", "topic", "status", "message_count", "created_at")),
        },
        "securitySchemes": {
            "token": {"type": "apiKey", "in": "header", "name": "x-telepty-token",
                      "description": "the daemon token ($TELEPTY_HOME/token)"},
            "bearer": {"type": "http", "scheme": "bearer", "description": "the daemon token"},
            "tokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                           "description": "the daemon token, for WebSocket clients that cannot set headers"},
        },
    }


# -- operations -----------------------------------------------------------------------

# Loopback callers with a local Host are trusted without a token ({}), unless
# TELEPTY_REQUIRE_TOKEN=1; everyone else presents the token one of three ways.
AUTHENTICATED: Final = [{}, {"token": []}, {"bearer": []}, {"tokenQuery": []}]


def _op(
    op_id: str, summary: str, tag: str, *, ok: dict[int, Schema], errors: dict[int, str] | None = None,
    params: tuple[Schema, ...] = (), body: Schema | None = None, body_required: bool = True,
    public: bool = False, **extensions: Any,
) -> Schema:
    """One operation; the auth errors, the body errors and the router's 404 for an
    unmatchable path parameter are added here so no operation can forget them."""
    responses: dict[str, Schema] = {str(code): resp for code, resp in sorted(ok.items())}
    every: dict[int, str] = {}
    if body is not None:
        every.update(BODY_ERRORS)
    if any(p["in"] == "path" for p in params):
        every[404] = PATH_404
    if not public:
        every.update(AUTH_ERRORS)
    for code, text in (errors or {}).items():
        every[code] = f"{text}; {every[code]}" if code in every else text
    for code, text in sorted(every.items()):
        responses.setdefault(str(code), _error(text))
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [tag],
                  "responses": dict(sorted(responses.items()))}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {_JSON: {"schema": body}}}
    op["security"] = [] if public else AUTHENTICATED
    op.update({f"x-{k.replace('_', '-')}": v for k, v in extensions.items()})
    return op


def _websocket(op_id: str, summary: str, tag: str, *, errors: dict[int, str] | None = None,
               params: tuple[Schema, ...] = ()) -> Schema:
    """A route that upgrades to a WebSocket; a plain HTTP GET is refused with 400."""
    errs = {400: "http_400: not a WebSocket upgrade request"}
    for code, text in (errors or {}).items():
        errs[code] = f"{text}; {errs[code]}" if code in errs else text
    return _op(op_id, summary, tag, ok={101: {"description": "switching to the WebSocket protocol"}},
               errors=errs, params=params, websocket=True)


def _ok(name: str, description: str = "OK") -> Schema:
    return _json(_ref(name), description)


def _list(name: str, description: str = "OK") -> Schema:
    return _json(_arr(_ref(name)), description)


def _delivery_answers() -> dict[int, Schema]:
    """What a delivery-creating route answers: 202 at once, or with wait: true the final
    record (200 delivered; 409 cancelled, 422 failed, 503 tmux_unavailable)."""
    failure = _ref("DeliveryFailure")
    return {
        200: _ok("Delivery", "wait: true and the delivery was delivered"),
        202: _ok("DeliveryAck", "accepted and stored; delivery continues in the background"),
        409: _json({"anyOf": [_ref("Error"), failure]}, "cancelled while waiting; or a conflict"),
        422: _json(failure, "wait: true and the delivery failed (reason in error)"),
    }


def _sessions() -> dict[str, Schema]:
    sid = _path()
    nstr = _nullable(_str())
    exact = _param("path", "id", SESSION_ID, "an exact session id (never an alias)")
    return {
        "/api/sessions": {"get": _op(
            "listSessions", "List sessions (this machine's, or with scope=all every peer's too)", "sessions",
            params=(
                _query("type", _str(), "only this type (spawned, wrapped, pane)"),
                _query("agent", _str(), "only this agent kind"),
                _query("project", _str(), "only sessions whose cwd ends in this name"),
                _query("state", _str(), "only this state (running, disconnected, exited)"),
                _query("all", _str(), "0 or false: leave exited sessions out"),
                _query("scope", _enum(["local", "all"], default="local"), "all: ask every peer too",
                       empty_ok=False),
            ),
            ok={200: _json({"anyOf": [_arr(_ref("Session")), _ref("SessionsEverywhere")]},
                           "an array (scope=local) or sessions with their peers (scope=all)")},
            errors={400: "invalid_query: scope is not local or all"},
        )},
        "/api/sessions/register": {"post": _op(
            "registerSession", "Register a wrapped session or an existing tmux pane", "sessions",
            body=_ref("RegisterSession"), body_required=False, ok={201: _ok("Session", "registered")},
            errors={400: "invalid_field / missing_field / invalid_session_id",
                    409: "session_exists: the id is live (pass replace: true to take it over)"},
        )},
        "/api/sessions/spawn": {"post": _op(
            "spawnSession", "Start a program in a PTY the daemon owns", "sessions",
            body=_ref("SpawnSession"), ok={201: _ok("Session", "spawned")},
            errors={400: "missing_field / invalid_field / invalid_cwd / spawn_failed / invalid_session_id",
                    409: "session_exists: a live session has that id"},
            spawns_process=True,
        )},
        "/api/sessions/clean": {"post": _op(
            "cleanSessions", "Forget exited sessions (never running or disconnected ones)", "sessions",
            body=_obj({
                "exited": _nullable(_bool(const=True)),
                "older_than": _nullable({"anyOf": [
                    _str(pattern="^\\s*[0-9]+(\\.[0-9]+)?\\s*[smhdwSMHDW]?\\s*$",
                         description="90s, 15m, 2h, 7d"),
                    {"type": "number", "minimum": 0}]}),
                "dry_run": _nullable(_bool()),
            }), body_required=False,
            ok={200: _json(_obj({"removed": _arr(_str()), "count": _int(0), "dry_run": _bool()},
                                ("removed", "count", "dry_run")), "what was (or would be) removed")},
            errors={400: "invalid_field / invalid_query"},
        )},
        "/api/sessions/{id}": {
            "get": _op("getSession", "One session by id or alias (a WebSocket upgrade here is the "
                       "Node.js CLI's terminal socket: its allow wrapper with ?owner=1, else its attach)",
                       "sessions", params=(sid, _query("owner", _str(), "1: the Node.js allow wrapper")),
                       ok={200: _ok("Session")},
                       errors={404: "session_not_found",
                               409: "WebSocket only: not_wrappable / wrapper_connected / session_exited / "
                                    "session_disconnected / not_attachable"}),
            "patch": _op(
                "renameSessionNode", "Rename a session, as the Node.js CLI asks (same as …/rename)",
                "sessions", params=(exact,), body=_obj({"new_id": SESSION_ID}, ("new_id",)),
                ok={200: _json(_obj({"old_id": _str(), "new_id": _str(), "success": _bool(),
                                     "session": _ref("Session")}, ("old_id", "new_id", "session")),
                               "renamed")},
                errors={400: "missing_field / invalid_session_id / invalid_field", 404: "session_not_found",
                        409: "session_exists / deliveries_pending / session_disconnected"},
            ),
            "delete": _op(
                "deleteSession", "Remove a session (kills a spawned PTY, detaches a wrapper)", "sessions",
                params=(exact,),
                ok={200: _json(_obj({"session_id": _str(), "removed": _bool(const=True), "type": _str()},
                                    ("session_id", "removed", "type")), "removed")},
                errors={400: "invalid_session_id", 404: "session_not_found"},
            ),
        },
        "/api/sessions/{id}/rename": {"post": _op(
            "renameSession", "Give a session a new id (exact ids only)", "sessions", params=(exact,),
            body=_obj({"new_id": SESSION_ID}, ("new_id",)),
            ok={200: _json(_obj({"old_id": _str(), "new_id": _str(), "success": _bool(),
                                 "session": _ref("Session")}, ("old_id", "new_id", "session")), "renamed")},
            errors={400: "missing_field / invalid_session_id / invalid_field", 404: "session_not_found",
                    409: "session_exists / deliveries_pending / session_disconnected"},
        )},
        "/api/sessions/{id}/screen": {"get": _op(
            "getScreen", "The session's recent screen (pane capture or PTY scrollback)", "sessions",
            params=(sid, _query("lines", _int(1, 10_000, default=40), "how many lines")),
            ok={200: _json(_obj({"session_id": _str(), "source": _enum(["pane", "scrollback"]),
                                 "lines": _int(1), "text": _str(),
                                 "screen": _str(description="text again, as the Node.js CLI reads it")},
                                ("session_id", "source", "lines", "text", "screen")), "the screen's tail")},
            errors={400: "invalid_query", 404: "session_not_found / no_screen"},
        )},
        "/api/sessions/{id}/explain": {"get": _op(
            "explainSession", "What the daemon sees on the screen and why it counts it idle or busy",
            "sessions", params=(sid, _query("lines", _int(1, 1000, default=20), "screen lines to show")),
            ok={200: _json(_obj({"session_state": _enum(SessionState), "pending": _arr({"type": "object"})},
                                ("session_state", "pending")), "the transport's view (fields vary)")},
            errors={400: "invalid_query", 404: "session_not_found",
                    409: "no_screen, or the transport's reason (pane_dead, session_disconnected, …)"},
        )},
        "/api/sessions/{id}/state": {
            "get": _op(
                "getSessionState", "What the session is doing, in the Node.js CLI's terms (status)",
                "sessions", params=(sid,),
                ok={200: _json(_obj({
                    "session_id": _str(), "state": _enum(SessionState),
                    "auto": _obj({"state": _str(), "confidence": {"type": "number"},
                                  "detail": {"type": "object"}}, ("state", "confidence", "detail")),
                    "self_report": _nullable({"type": "object"}), "last_state_report_at": nstr,
                }, ("session_id", "auto", "self_report")), "what the screen shows, and what it reported")},
                errors={404: "session_not_found"},
            ),
            "post": _op(
                "reportSessionState", "The session says what it is doing (the Node.js CLI's status-report; "
                "published as a session_state_report event)", "sessions", params=(sid,),
                body=_obj({
                    "phase": _str(minLength=1, maxLength=MAX_REPORT_TEXT),
                    "task_phase": _nullable(_str(maxLength=MAX_REPORT_TEXT)),
                    "current_task": _nullable(_str(maxLength=MAX_REPORT_TEXT)),
                    "task": _nullable(_str(maxLength=MAX_REPORT_TEXT)),
                    "blocker": _nullable(_str(maxLength=MAX_REPORT_TEXT)),
                    "needs_input": _nullable(_bool()),
                    "thread_id": _nullable(_str(maxLength=MAX_REPORT_TEXT)),
                    "source": _nullable(_str(minLength=1, maxLength=MAX_FIELD_CHARS)),
                    "seq": _nullable(_int(0, 2**53)),
                }, ("phase",)),
                ok={200: _json(_obj({"success": _bool(const=True), "session_id": _str(),
                                     "semantic": _nullable({"type": "object"}), "seq": _int(),
                                     "message_id": _str()}, ("success", "session_id", "seq")),
                               "logged and applied")},
                errors={400: "missing_field / invalid_field", 404: "session_not_found"},
            ),
        },
        "/api/sessions/{id}/attach": {"get": _websocket(
            "attachSession", "WebSocket: a spawned session's output (scrollback, then live) and input",
            "sessions", params=(sid, _query("replay", _str(), "0 or false: no scrollback replay")),
            errors={400: "not_attachable: only spawned sessions can be attached",
                    404: "session_not_found", 409: "session_exited"},
        )},
        "/api/wrap": {"get": _websocket(
            "wrapSocket", "WebSocket: a telepty wrap process's control socket (hello, output, results)",
            "sessions",
        )},
    }


def _deliveries() -> dict[str, Schema]:
    sid = _path(description="a session id or alias; id@host relays to a peer")
    failure = _ref("DeliveryFailure")
    inject_errors = {
        400: "missing_field / invalid_field / invalid_prompt / invalid_header / invalid_origin / "
             "invalid_target",
        403: "sender_spoofed / invalid_session_token (strict mode)",
        404: "session_not_found / unknown_peer",
        413: "too_large: the prompt (with its reply footer) is over the limit",
        503: "tmux_unavailable: the session's pane needs tmux, which is missing",
    }
    answers = _delivery_answers()
    answers[503] = _json({"anyOf": [_ref("Error"), failure]}, inject_errors[503])
    fan = {
        200: _ok("Fanout", "wait: true and every delivery was delivered"),
        202: _ok("Fanout", "accepted: one delivery per target"),
        422: _ok("Fanout", "some deliveries failed (error: fanout_failed)"),
    }
    fan_errors = {**inject_errors, 404: "session_not_found / no_targets",
                  400: inject_errors[400] + " / fanout_too_large"}
    return {
        "/api/sessions/{id}/inject": {"post": _op(
            "inject", "Deliver a prompt into a session's terminal", "deliveries",
            params=(sid, IDEMPOTENCY, SESSION_TOKEN, HOP, ORIGIN_QUERY, COMPAT), body=_ref("Inject"),
            ok=answers,
            errors={**inject_errors, 508: "hop_limit: relaying again would pass TELEPTY_HOP_LIMIT"},
        )},
        "/api/sessions/{id}/submit": {"post": _op(
            "submit", "Press Enter in a session: a keys delivery, waited for up to 15 s (the Node.js "
            "CLI's enter, send-key enter and inject --submit)", "deliveries",
            params=(sid, IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY),
            body=_obj({name: _nullable({"type": "number", "minimum": 0, "maximum": 60_000,
                                        "description": "accepted from the Node.js CLI and not used"})
                       for name in ("pre_delay_ms", "retries", "retry_delay_ms")}),
            body_required=False, ok=answers,
            errors={400: "invalid_field / invalid_header / invalid_origin", 404: "session_not_found",
                    503: inject_errors[503]},
        )},
        "/api/sessions/multicast/inject": {"post": _op(
            "multicast", "Deliver one prompt to each listed session", "deliveries",
            params=(IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY, COMPAT), body=_ref("Multicast"), ok=fan,
            errors={k: v for k, v in fan_errors.items() if k != 404} | {404: "session_not_found"},
        )},
        "/api/sessions/broadcast/inject": {"post": _op(
            "broadcast", "Deliver one prompt to every live session but the sender", "deliveries",
            params=(IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY, COMPAT), body=_ref("Broadcast"), ok=fan,
            errors={k: v for k, v in fan_errors.items() if k != 503} | {404: "no_targets"},
        )},
        "/api/reply": {"post": _op(
            "reply", "Answer the last prompt the calling session received", "deliveries",
            params=(IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY), body=_ref("Reply"),
            ok={**answers, 202: _json(_obj(
                {"delivery_id": _str(), "status": _enum(DeliveryStatus), "session_id": _str(),
                 "in_reply_to": _str(), "reply_to": _str()},
                ("delivery_id", "status", "session_id", "in_reply_to", "reply_to")), "accepted")},
            errors={**inject_errors, 400: inject_errors[400] + " / no_session_identity / session_mismatch",
                    404: "nothing_to_reply_to / session_not_found"},
        )},
        "/api/sessions/{id}/keys": {"post": _op(
            "sendKeys", "Type raw keys (tmux key names or text) into a session, unbracketed", "deliveries",
            params=(sid, IDEMPOTENCY, SESSION_TOKEN, ORIGIN_QUERY), body=_ref("Keys"), ok=answers,
            errors={400: "invalid_keys / invalid_field / invalid_header / invalid_origin",
                    404: "session_not_found", 503: inject_errors[503]},
        )},
        "/api/deliveries": {"get": _op(
            "listDeliveries", "Recent deliveries, newest first", "deliveries",
            params=(_query("session", _str(), "only this session id"),
                    _query("status", _enum(DeliveryStatus), "only this status"), _limit(50, 1000)),
            ok={200: _list("Delivery")}, errors={400: "invalid_query"},
        )},
        "/api/deliveries/{id}": {
            "get": _op("getDelivery", "One delivery record", "deliveries",
                       params=(_path(description="a delivery id"),
                               _query("prompt", _str(), "1 or true: include the prompt text")),
                       ok={200: _ok("Delivery")}, errors={404: "delivery_not_found"}),
            "delete": _op(
                "cancelDelivery", "Cancel a delivery that has not been written yet, or end the hold a "
                "failed one put on its session", "deliveries",
                params=(_path(description="a delivery id"),), ok={200: _ok("Delivery", "cancelled")},
                errors={404: "delivery_not_found", 409: "not_cancellable: already final or writing"},
            ),
        },
        "/api/injects": {"get": _op(
            "listInjects", "The audit log of every accepted injection, newest first", "deliveries",
            params=(
                _query("since", INSTANT, "ISO-8601 instant, epoch seconds, or a duration ago (15m, 2h, 7d)"),
                _query("until", INSTANT, "same forms as since"),
                _query("to", _str(maxLength=MAX_NAME), "the target session"),
                _query("from", _str(maxLength=MAX_NAME), "the claimed or verified sender"),
                _limit(AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT),
            ),
            ok={200: _list("AuditRow")}, errors={400: "invalid_query"},
        )},
        "/api/identity": {"get": _op(
            "whoami", "Which session the presented session token belongs to", "deliveries",
            params=(SESSION_TOKEN,), ok={200: _ok("Identity")},
            errors={400: "no_session_identity", 403: "invalid_session_token (strict mode)",
                    404: "session_not_found"},
        )},
    }


def _bus() -> dict[str, Schema]:
    since = _query("since", _int(0, MAX_SEQ), "the last seq already seen")
    kinds = _query("kinds", _str(), f"comma-separated kinds to keep (at most {MAX_KINDS})")
    return {
        "/api/bus/publish": {"post": _op(
            "publishEvent", "Publish an event; a turn_request is routed into its target session", "bus",
            body=_ref("BusEvent"), ok={202: _ok("BusReceipt", "logged (and routed)")},
            errors={400: "invalid_event / missing_field / invalid_field / invalid_kind / reserved_kind / "
                         "conflicting_kind / invalid_target",
                    413: "too_large: the turn_request prompt is over the limit"},
        )},
        "/api/bus/events": {"get": _op(
            "listEvents", "Page through the durable event log", "bus",
            params=(since, _limit(100, 1000), kinds), ok={200: _ok("BusPage")},
            errors={400: "invalid_query"},
        )},
        "/api/bus": {"get": _websocket(
            "busSocket", "WebSocket: replay from since, then every live event; frames sent are published",
            "bus", params=(since, kinds, _query("receive", _str(), "0, false or no: publish only")),
            errors={400: "invalid_query"},
        )},
    }


def _handoffs_threads() -> dict[str, Schema]:
    hid = _path(description="a handoff id")
    tid = _path(description="a thread id")
    advance_errors = {404: "handoff_not_found",
                      409: "illegal_transition: created → claimed → executing → completed only"}
    steps = {
        "claim": ("claimHandoff", "Claim a handoff", _obj({"claimed_by": NAME}, ("claimed_by",))),
        "executing": ("startHandoff", "Mark a claimed handoff executing", _obj({})),
        "complete": ("completeHandoff", "Complete an executing handoff", _obj({"result": {}})),
    }
    paths: dict[str, Schema] = {
        "/api/handoffs": {
            "post": _op("createHandoff", "Create a handoff", "handoffs", body=_ref("NewHandoff"),
                        ok={201: _ok("Handoff", "created")},
                        errors={400: "missing_field / invalid_field",
                                409: "handoff_exists: that handoff_id is taken"}),
            "get": _op("listHandoffs", "Handoffs, newest first", "handoffs",
                       params=(_query("status", _enum(HandoffStatus), "only this status"), _limit(100, 1000)),
                       ok={200: _list("Handoff")}, errors={400: "invalid_query"}),
        },
        "/api/handoffs/{id}": {"get": _op(
            "getHandoff", "One handoff", "handoffs", params=(hid,), ok={200: _ok("Handoff")},
            errors={404: "handoff_not_found"},
        )},
        "/api/threads": {
            "post": _op("openThread", "Open a thread", "threads", body=_ref("NewThread"),
                        ok={201: _ok("Thread", "opened")},
                        errors={400: "missing_field / invalid_field", 409: "thread_exists"}),
            "get": _op("listThreads", "Threads, newest first", "threads",
                       params=(_query("status", _enum(ThreadStatus), "open or closed"), _limit(100, 1000)),
                       ok={200: _list("Thread")}, errors={400: "invalid_query"}),
        },
        "/api/threads/{id}": {
            "get": _op("getThread", "One thread", "threads", params=(tid,), ok={200: _ok("Thread")},
                       errors={404: "thread_not_found"}),
            "patch": _op(
                "patchThread", "Close a thread the Node.js CLI's way ({status: closed}; closing a closed "
                "thread is no error)", "threads", params=(tid,),
                body=_obj({"status": _nullable(_str(const="closed")), "message_count": _nullable(_int())}),
                body_required=False,
                ok={200: _json({"allOf": [_ref("Thread"), _obj({"success": _bool(const=True)},
                                                               ("success",))]}, "the thread")},
                errors={400: "invalid_field", 404: "thread_not_found"},
            ),
        },
        "/api/threads/{id}/close": {"post": _op(
            "closeThread", "Close a thread", "threads", params=(tid,), body=_obj({}), body_required=False,
            ok={200: _ok("Thread", "closed")},
            errors={404: "thread_not_found", 409: "illegal_transition: already closed"},
        )},
    }
    v1_status = _enum(["pending", "claimed", "executing", "completed", "failed"])
    v1_summary = _obj({
        "id": _str(), "status": _str(), "deliberation_id": _nullable(_str()),
        "source_session_id": _nullable(_str()), "auto_execute": _bool(), "claimed_by": _nullable(_str()),
        "task_count": _int(0), "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
    }, ("id", "status", "task_count", "created_at"))
    v1_moved = _json(_obj({"success": _bool(const=True), "handoff_id": _str(), "status": _str()},
                          ("success", "handoff_id", "status")), "moved")
    paths["/api/handoff"] = {
        "post": _op("dropHandoffNode", "Create a handoff from a synthesis (the Node.js CLI's handoff drop)",
                    "handoffs", body=_obj({
                        "synthesis": _obj({"tasks": _nullable(_arr({}, maxItems=MAX_TASKS))}),
                        "source_session_id": _nullable(NAME), "deliberation_id": _nullable(NAME),
                        "auto_execute": _nullable(_bool()),
                    }, ("synthesis",)),
                    ok={201: _json(_obj({"handoff_id": _str(), "status": _str(const="pending")},
                                        ("handoff_id", "status")), "created")},
                    errors={400: "missing_field / invalid_field"}),
        "get": _op("listHandoffsNode", "Handoffs in the Node.js CLI's words (pending = created)", "handoffs",
                   params=(_query("status", v1_status, "only this status"),),
                   ok={200: _json(_arr(v1_summary), "newest first")}, errors={400: "invalid_query"}),
    }
    paths["/api/handoff/{id}"] = {
        "get": _op("getHandoffNode", "One handoff with its synthesis (the Node.js CLI's handoff status/get)",
                   "handoffs", params=(hid,),
                   ok={200: _json({"allOf": [v1_summary, _obj({
                       "synthesis": {"type": "object"}, "progress": _arr({}), "result": {}},
                       ("synthesis", "progress"))]}, "the handoff")},
                   errors={404: "handoff_not_found"}),
        "patch": _op("moveHandoffNode", "Move a handoff on: executing, completed (there is no failed here)",
                     "handoffs", params=(hid,), body=_obj({
                         "status": _nullable(_enum(["executing", "completed"])),
                         "message": _nullable(_str(maxLength=MAX_MESSAGE)), "result": {}}),
                     body_required=False, ok={200: v1_moved},
                     errors={400: "invalid_field", 404: "handoff_not_found",
                             409: "illegal_transition (failed is one: no such state here)"}),
    }
    paths["/api/handoff/{id}/claim"] = {"post": _op(
        "claimHandoffNode", "Claim a pending handoff (the Node.js CLI's handoff claim)", "handoffs",
        params=(hid,), body=_obj({"agent_session_id": NAME}, ("agent_session_id",)), ok={200: v1_moved},
        errors={400: "missing_field / invalid_field", 404: "handoff_not_found",
                409: "illegal_transition: not pending"},
    )}
    for action, (op_id, summary, body) in steps.items():
        body_required = action == "claim"  # only a claim has a required field (claimed_by)
        paths[f"/api/handoffs/{{id}}/{action}"] = {"post": _op(
            op_id, summary, "handoffs", params=(hid,), body=body, body_required=body_required,
            ok={200: _ok("Handoff")},
            errors={**advance_errors, **({400: "missing_field / invalid_field"} if body_required else {})},
        )}
    return paths


def _meta() -> dict[str, Schema]:
    return {
        "/api/health": {"get": _op(
            "health", "Liveness; the one route that needs no credentials", "meta", public=True,
            ok={200: _ok("Health")},
        )},
        "/api/meta": {"get": _op("meta", "Who this daemon is", "meta", params=(COMPAT,),
                                 ok={200: _ok("Meta")})},
        OPENAPI_PATH: {"get": _op(
            "openapi", "This document", "meta",
            ok={200: _json({"type": "object", "required": ["openapi", "info", "paths"]}, "OpenAPI 3.1")},
        )},
        "/metrics": {"get": _op(
            "metrics", "Prometheus metrics", "meta",
            ok={200: {"description": "Prometheus text exposition",
                      "content": {"text/plain": {"schema": _str()}}}},
        )},
        "/api/peers": {"get": _op(
            "listPeers", "Peers from peers.json, with reachability (never their tokens)", "meta",
            ok={200: _json(_obj({"machine_id": _str(), "hop_limit": _int(), "peers_file": _str(),
                                 "peers": _arr({"type": "object"})},
                                ("machine_id", "hop_limit", "peers_file", "peers")), "OK")},
        )},
    }


def build_document(version: str = __version__) -> dict[str, Any]:
    """The whole document, freshly built (callers may change their copy)."""
    paths: dict[str, Schema] = {}
    for part in (_meta(), _sessions(), _deliveries(), _bus(), _handoffs_threads()):
        paths.update(part)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "telepty daemon API",
            "version": version,
            "description": (
                "Deliver prompts into AI agent terminals. Every error is JSON "
                '{"error": "<code>", "detail": "<human text>"}. Loopback callers are trusted '
                "unless TELEPTY_REQUIRE_TOKEN=1; others send the daemon token."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": _components(),
        "tags": [{"name": t} for t in ("meta", "sessions", "deliveries", "bus", "handoffs", "threads")],
    }


@functools.cache
def _document_bytes() -> bytes:
    # Built once per process: the document depends on nothing but the code.
    return orjson.dumps(build_document())


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_document_bytes(), content_type=_JSON)


def add_routes(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi_json)
