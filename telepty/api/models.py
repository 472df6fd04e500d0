"""The bodies the HTTP routes read, each declared once (see ``telepty.delivery.request``).

A route names its model in its entry of the route table (``telepty.api.spec.Route``);
the handler reads the body with ``await read(request, Model)`` and the API document
describes it from the same class. Checks that need a code of their own (a session id is
``invalid_session_id``, a key ``invalid_keys``) raise it from the model's validators.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self, TypeVar

from aiohttp import web
from pydantic import ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from telepty.api.body import json_object
from telepty.api.injects import parse_duration
from telepty.bus.envelope import MAX_FIELD_CHARS
from telepty.delivery.keys import MAX_KEYS, MAX_TEXT, parse_keys
from telepty.delivery.request import DeliveryOptions, InjectBody, PromptOptions, RequestModel
from telepty.errors import BadRequest, ErrorCode
from telepty.sessions.agent_names import AGENT_NAME_RE, validate_agent_name
from telepty.sessions.model import PANE_ID_RE, SESSION_ID_RE, validate_session_id
from telepty.sessions.state_report import MAX_TEXT as MAX_REPORT_TEXT

M = TypeVar("M", bound=RequestModel)

# Ids and names callers choose: session ids (maybe with @host), deliberation ids, uuids.
NAME_RE = re.compile(r"^[A-Za-z0-9._:@/-]{1,200}\Z")  # \Z: "$" would let a trailing newline in

MAX_PID = 2**31 - 1  # pid_t; anything larger would not even fit the store's INTEGER
MAX_TASKS = 1000
MAX_TASK_COUNT = 2**31 - 1  # a count given without the tasks; larger would not fit the store
MAX_TOPIC = 1000
MAX_PARTICIPANTS = 500
MAX_MESSAGE = 10_000
MAX_DIM = 1000


async def read(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model`` (an empty body is ``{}``)."""
    return model.parse(await json_object(request))


def pattern(rx: re.Pattern[str]) -> str:
    """A parser's own regex as a JSON Schema pattern: ``\\Z`` (no trailing newline) is
    Python's; JSON Schema's ``$`` already means the very end."""
    text = rx.pattern.removesuffix("\\Z") + "$"
    return text if text.startswith("^") else "^" + text


SESSION_ID_SCHEMA = {"type": "string", "pattern": pattern(SESSION_ID_RE),
                     "description": "1-64 characters of A-Z a-z 0-9 . _ -"}
# Fields checked by our own validators (their codes), documented by the pattern they keep.
SessionId = Annotated[str, WithJsonSchema(SESSION_ID_SCHEMA)]
Agent = Annotated[str, WithJsonSchema({
    "type": "string", "pattern": f"^(other|{pattern(AGENT_NAME_RE).removeprefix('^')[:-1]})$",
    "description": "a profile name (claude, codex, gemini, aider, yours) or other"})]
Name = Annotated[str, Field(pattern=pattern(NAME_RE),
                            description="1-200 characters of A-Z a-z 0-9 . _ : @ / -")]


def _name_error(field: str) -> BadRequest:
    return BadRequest(ErrorCode.INVALID_FIELD, f"{field} must be 1-200 characters of A-Z a-z 0-9 . _ : @ / -")


# -- sessions -------------------------------------------------------------------------------


class RegisterSession(RequestModel):
    """A wrapped session or an existing tmux pane (``tmux_pane`` is required for a pane)."""

    type: Literal["wrapped", "pane"] | None = Field("wrapped", description="spawn creates spawned")
    session_id: SessionId | None = None
    command: str | None = ""
    cwd: str | None = ""
    pid: int | None = Field(None, ge=1, le=MAX_PID)
    tmux_pane: Annotated[str, Field(pattern=pattern(PANE_ID_RE),
                                    description="a tmux pane id such as %3")] | None = None
    tmux_socket: str | None = None
    agent: Agent | None = None
    meta: dict[str, Any] | None = Field(default_factory=dict)
    replace: bool | None = Field(False, description="take the id over from a live session")

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("type") is not None and data["type"] not in ("wrapped", "pane"):
                raise BadRequest(ErrorCode.INVALID_FIELD,
                                 "type must be 'wrapped' or 'pane' (spawn creates spawned)")
            if data.get("session_id") is not None:
                validate_session_id(data["session_id"])
            if isinstance(data.get("tmux_pane"), str) and not PANE_ID_RE.match(data["tmux_pane"]):
                raise BadRequest(ErrorCode.INVALID_FIELD,
                                 f"tmux_pane must look like %3, got {data['tmux_pane']!r}")
        return data

    @model_validator(mode="after")
    def _agent_and_pane(self) -> Self:
        if self.agent is not None:
            validate_agent_name(self.agent)
        if self.type == "pane" and self.tmux_pane is None:
            raise BadRequest(ErrorCode.MISSING_FIELD, "tmux_pane is required for a pane session")
        return self


class SpawnSession(RequestModel):
    command: str = Field(json_schema_extra={"minLength": 1}, description=(
        "the program (with args) or a command line, split like a shell would; no shell runs it"))
    args: list[str] | None = None
    session_id: SessionId | None = None
    cwd: str | None = None
    env: dict[str, str] | None = Field(default_factory=dict)
    agent: Agent | None = None
    cols: int | None = Field(120, ge=1, le=MAX_DIM)
    rows: int | None = Field(40, ge=1, le=MAX_DIM)

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("session_id") is not None:
            validate_session_id(data["session_id"])
        return data

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        return validate_agent_name(value) if value is not None else None


class CleanSessions(RequestModel):
    exited: Literal[True] | None = Field(True, description="clean only ever removes exited sessions")
    older_than: Annotated[str, Field(pattern="^\\s*[0-9]+(\\.[0-9]+)?\\s*[smhdwSMHDW]?\\s*$",
                                     description="90s, 15m, 2h, 7d")] | Annotated[
        float, Field(ge=0, allow_inf_nan=False)] | None = None
    dry_run: bool | None = False

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("exited") is not None and data["exited"] is not True:
                raise BadRequest(ErrorCode.INVALID_FIELD,
                                 "clean only ever removes exited sessions (exited must be true)")
            older = data.get("older_than")
            if isinstance(older, str):
                data = {**data, "older_than": parse_duration(older, "older_than")}
            elif isinstance(older, int | float) and not isinstance(older, bool) and not older >= 0:
                raise BadRequest(ErrorCode.INVALID_FIELD, "older_than must not be negative")
        return data


class Rename(RequestModel):
    """The new id is judged by the registry (``invalid_session_id``, ``session_exists``)."""

    new_id: Annotated[Any, WithJsonSchema(SESSION_ID_SCHEMA)]


ReportText = Annotated[str, Field(max_length=MAX_REPORT_TEXT)]


class StateReport(RequestModel):
    """What a session says it is doing. The model holds the body to its documented shape;
    the report's own parser (``telepty.sessions.state_report``) then judges it as the bus
    event it becomes, so a report published on the bus is held to the same rules."""

    phase: Annotated[str, Field(min_length=1, max_length=MAX_REPORT_TEXT)]
    task_phase: ReportText | None = None
    current_task: ReportText | None = None
    task: ReportText | None = None
    blocker: ReportText | None = None
    needs_input: bool | None = None
    thread_id: ReportText | None = None
    source: Annotated[str, Field(min_length=1, max_length=MAX_FIELD_CHARS)] | None = None
    seq: Annotated[int, Field(ge=0, le=2**53)] | None = None


# -- deliveries -------------------------------------------------------------------------------

SessionIds = Annotated[list[SessionId], WithJsonSchema({"type": "array", "items": SESSION_ID_SCHEMA})]


def _session_names(data: Any, name: str) -> None:
    value = data.get(name) if isinstance(data, dict) else None
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(ErrorCode.INVALID_FIELD, f"{name} must be an array of strings")
    for v in value:
        if not SESSION_ID_RE.match(v):
            raise BadRequest(ErrorCode.INVALID_FIELD, f"{name} entries must be session ids or aliases "
                             f"(1-64 characters A-Z a-z 0-9 . _ -), got {v!r}")


class Multicast(InjectBody):
    session_ids: Annotated[SessionIds, WithJsonSchema({"type": "array", "items": SESSION_ID_SCHEMA,
                                                       "minItems": 1})]

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("session_ids") is None:
                raise BadRequest(ErrorCode.MISSING_FIELD,
                                 "session_ids is required: an array of session ids or aliases")
            _session_names(data, "session_ids")
            if not data["session_ids"]:
                raise BadRequest(ErrorCode.MISSING_FIELD, "session_ids must name at least one session")
        return data


class Broadcast(InjectBody):
    agent: str | None = None
    project: str | None = None
    type: Literal["spawned", "wrapped", "pane"] | None = None
    exclude: SessionIds | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("type") is not None and data["type"] not in ("spawned", "wrapped", "pane"):
                raise BadRequest(ErrorCode.INVALID_FIELD, "type must be spawned, wrapped or pane")
            _session_names(data, "exclude")
        return data


class Reply(PromptOptions):
    """A reply is always from the replying session: the token's, else ``session_id``'s."""

    session_id: SessionId | None = None
    sender: None = Field(None, alias="from", description="never: a reply is from the replying session")

    @model_validator(mode="before")
    @classmethod
    def _no_from(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("from") is not None:
                raise BadRequest(ErrorCode.INVALID_FIELD,
                                 "a reply is always from the replying session; do not set from")
            if data.get("session_id") is not None:
                validate_session_id(data["session_id"])
        return data


KEY_ITEM = {"oneOf": [
    {"type": "string", "minLength": 1,
     "description": "a key name: Enter, Escape, Up, C-c, F1-F12, a single character…"},
    {"type": "object", "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}},
     "required": ["text"], "additionalProperties": False},
]}
KEYS_FIELDS = ("keys", "force", "quiet_ms", "wait", "timeout")


class Keys(DeliveryOptions):
    """Raw keys: unknown fields are refused (a typo must not type something else)."""

    keys: Annotated[list[Any], WithJsonSchema({"type": "array", "items": KEY_ITEM, "minItems": 1,
                                               "maxItems": MAX_KEYS})]

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(KEYS_FIELDS))
            if unknown:
                raise BadRequest(ErrorCode.INVALID_FIELD, f"unknown field(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(KEYS_FIELDS))}")
            return {**data, "keys": parse_keys(data.get("keys"))}
        return data


class PressEnter(RequestModel):
    """The Node.js CLI's submit: its timings are checked and not used (the Enter is pressed
    once, after what is queued before it)."""

    pre_delay_ms: float | None = Field(None, ge=0, le=60_000, allow_inf_nan=False,
                                       description="accepted from the Node.js CLI and not used")
    retries: float | None = Field(None, ge=0, le=60_000, allow_inf_nan=False,
                                  description="accepted from the Node.js CLI and not used")
    retry_delay_ms: float | None = Field(None, ge=0, le=60_000, allow_inf_nan=False,
                                         description="accepted from the Node.js CLI and not used")


# -- handoffs and threads ----------------------------------------------------------------


def _names_ok(data: Any, *fields: str) -> None:
    if isinstance(data, dict):
        for f in fields:
            value = data.get(f)
            if isinstance(value, str) and not NAME_RE.match(value):
                raise _name_error(f)


class NewHandoff(RequestModel):
    """tasks or task_count is required; both must agree."""

    tasks: Annotated[list[Any], Field(max_length=MAX_TASKS)] | None = None
    task_count: Annotated[int, Field(ge=0, le=MAX_TASK_COUNT)] | None = None
    source_session_id: Name | None = None
    deliberation_id: Name | None = None
    handoff_id: Name | None = None
    auto_execute: bool | None = False
    payload: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        _names_ok(data, "source_session_id", "deliberation_id", "handoff_id")
        return data

    @model_validator(mode="after")
    def _tasks(self) -> Self:
        if self.tasks is None and self.task_count is None:
            raise BadRequest(ErrorCode.MISSING_FIELD, "tasks (an array) or task_count is required")
        if self.tasks is not None and self.task_count is not None and self.task_count != len(self.tasks):
            raise BadRequest(ErrorCode.INVALID_FIELD,
                             f"task_count is {self.task_count} but tasks holds {len(self.tasks)} entries")
        return self


class ClaimHandoff(RequestModel):
    claimed_by: Name

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        _names_ok(data, "claimed_by")
        return data


class Empty(RequestModel):
    """No fields yet, but a malformed body is still refused."""


class CompleteHandoff(RequestModel):
    result: Any = None


class Synthesis(RequestModel):
    tasks: Annotated[list[Any], Field(max_length=MAX_TASKS)] | None = None

    model_config = ConfigDict(extra="allow")  # the whole synthesis is kept and given back


class DropHandoff(RequestModel):
    """The Node.js CLI's ``handoff drop``: a synthesis whose tasks become the handoff's."""

    synthesis: Synthesis
    source_session_id: Name | None = None
    deliberation_id: Name | None = None
    auto_execute: bool | None = False

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if isinstance(data, dict):
            synthesis = data.get("synthesis")
            tasks = synthesis.get("tasks") if isinstance(synthesis, dict) else None
            if isinstance(tasks, list) and len(tasks) > MAX_TASKS:
                raise BadRequest(ErrorCode.INVALID_FIELD,
                                 f"synthesis.tasks may hold at most {MAX_TASKS} entries")
        _names_ok(data, "source_session_id", "deliberation_id")
        return data


class ClaimHandoffNode(RequestModel):
    agent_session_id: Name

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        _names_ok(data, "agent_session_id")
        return data


class MoveHandoffNode(RequestModel):
    """``failed`` and ``claimed`` have answers of their own (``telepty.api.handoffs_v1``)."""

    status: Annotated[str, WithJsonSchema({"type": "string",
                                           "enum": ["executing", "completed"]})] | None = None
    message: Annotated[str, Field(max_length=MAX_MESSAGE)] | None = None
    result: Any = None


class NewThread(RequestModel):
    topic: Annotated[str, Field(max_length=MAX_TOPIC, json_schema_extra={"minLength": 1},
                                description="not only whitespace")]
    participant_session_ids: Annotated[list[Name], Field(max_length=MAX_PARTICIPANTS)] | None = None
    orchestrator_session_id: Name | None = None
    thread_id: Name | None = None

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if isinstance(data, dict):
            topic = data.get("topic")
            if isinstance(topic, str) and not topic.strip():
                raise BadRequest(ErrorCode.INVALID_FIELD, "topic must not be empty")
            participants = data.get("participant_session_ids")
            for p in participants if isinstance(participants, list) else ():
                if not isinstance(p, str) or not NAME_RE.match(p):
                    raise BadRequest(ErrorCode.INVALID_FIELD,
                                     f"participant_session_ids must be session ids (strings), got {p!r}")
        _names_ok(data, "orchestrator_session_id", "thread_id")
        return data


class PatchThread(RequestModel):
    """The Node.js CLI's ``deliberate end``: ``{"status": "closed"}``."""

    status: Literal["closed"] | None = None
    message_count: int | None = None
