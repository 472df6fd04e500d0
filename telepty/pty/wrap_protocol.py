"""The ``telepty wrap`` control socket (``WS /api/wrap``), declared once for both ends.

The wrapper (:mod:`telepty.pty.daemon_link`) and the daemon
(:mod:`telepty.sessions.wrapper_link`, the socket handler in :mod:`telepty.api.terminals`)
build and read these messages and nothing else: a field added, renamed or retyped here
changes both ends at once. JSON text frames carry the messages; binary frames carry the
child's output, in order.

wrapper → daemon
  :class:`Hello`      first frame, on every (re)connect, so the identity survives a
                      daemon restart. Answered by :class:`Welcome` or :class:`Refused`
                      (and a close). ``session_token_sha256`` is the hash of the
                      TELEPTY_SESSION_TOKEN the wrapper put in the child's environment
                      before starting it; the token itself never crosses this socket.
  binary              every byte the child printed (buffered while disconnected and
                      flushed on connect, so early output is not lost).
  :class:`Heartbeat`  every second: bytes read from the child, bytes mirrored on this
                      connection, bytes typed, idle time, bracketed-paste mode.
  :class:`Result`     the answer to a daemon request (same ``id``).
  :class:`Exit`       the child exited; the session becomes ``exited``.

daemon → wrapper
  :class:`Paste`      write a prompt to the PTY, bracketed when the app enabled it
                      (submitting it is a separate :class:`Write` of the submit key).
  :class:`Write`      raw bytes (keys for permission menus), never bracketed.
  :class:`Detach`     stop talking to the daemon (deleted/replaced); the agent keeps
                      running for the person using it.
  :class:`Renamed`    the session has a new id (``telepty rename``): use it in every
                      later hello. No result is expected.

Versions: a hello names its ``protocol``. Wrappers from before it (no ``protocol``)
pressed Enter after a paste unless told ``no_enter``, and keep running across an
upgrade of telepty (they reconnect to the new daemon), so the daemon pastes to them
with :class:`LegacyPaste`.

Bytes travel base64-encoded. A reader ignores fields it does not know (a newer peer may
send more) and refuses a frame whose known fields have the wrong type
(:class:`WireError`), so neither end ever acts on half-understood input.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, ClassVar, TypeVar

import orjson

__all__ = [
    "DAEMON_MESSAGES",
    "PROTOCOL",
    "WRAPPER_MESSAGES",
    "Detach",
    "Exit",
    "Heartbeat",
    "Hello",
    "LegacyPaste",
    "Message",
    "Paste",
    "Refused",
    "Renamed",
    "Request",
    "Result",
    "Welcome",
    "WireError",
    "decode",
    "encode",
]


PROTOCOL = 2  # this module's; 1 (no ``protocol`` in the hello) had paste{submit, settle_ms, no_enter}


class Message:
    """A message of this protocol; ``TYPE`` is its ``"type"`` on the wire."""

    __slots__ = ()
    TYPE: ClassVar[str]


M = TypeVar("M", bound=Message)


# -- wrapper → daemon ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello(Message):
    TYPE: ClassVar[str] = "hello"

    command: str = ""
    cwd: str = ""
    pid: int | None = None
    session_id: str | None = None  # None: the daemon picks one from the command and cwd
    agent: str | None = None
    tmux_pane: str | None = None
    tmux_socket: str | None = None
    replace: bool = False  # take the id over from a live session
    cols: int | None = None
    rows: int | None = None
    session_token_sha256: str | None = None
    meta: dict[str, Any] | None = None
    protocol: int | None = None  # None: a wrapper from before versions (1)


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """The wrapper's counters; a field left out keeps what the daemon last heard."""

    TYPE: ClassVar[str] = "heartbeat"

    bytes_out: int | None = None  # read from the child, over the wrapper's life
    bytes_mirrored: int | None = None  # sent to the daemon on this connection
    bytes_in: int | None = None  # typed into the child
    idle_ms: float | None = None  # since the child last printed
    bracketed_paste: bool | None = None


@dataclass(frozen=True, slots=True)
class Result(Message):
    TYPE: ClassVar[str] = "result"

    id: int
    ok: bool
    error: str | None = None  # a code: write_failed, bad_request, unknown_request, internal
    detail: str | None = None
    bracketed: bool | None = None  # a paste: whether it went in as a bracketed paste


@dataclass(frozen=True, slots=True)
class Exit(Message):
    TYPE: ClassVar[str] = "exit"

    code: int | None = None


# -- daemon → wrapper ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    TYPE: ClassVar[str] = "welcome"

    session_id: str
    session: dict[str, Any] | None = None  # the session record, as GET /api/sessions/{id}


@dataclass(frozen=True, slots=True)
class Refused(Message):
    """The hello was refused (``session_exists``, ``invalid_hello``, …); a close follows."""

    TYPE: ClassVar[str] = "error"

    error: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Paste(Message):
    TYPE: ClassVar[str] = "paste"

    id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class LegacyPaste(Paste):
    """A paste for a protocol-1 wrapper, which would otherwise submit it itself."""

    no_enter: bool = True


@dataclass(frozen=True, slots=True)
class Write(Message):
    TYPE: ClassVar[str] = "write"

    id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Detach(Message):
    TYPE: ClassVar[str] = "detach"

    reason: str = ""  # deleted, replaced


@dataclass(frozen=True, slots=True)
class Renamed(Message):
    TYPE: ClassVar[str] = "renamed"

    session_id: str


Request = Paste | Write  # what the daemon asks; each is answered by a Result

WRAPPER_MESSAGES: Mapping[str, type[Message]] = {m.TYPE: m for m in (Hello, Heartbeat, Result, Exit)}
DAEMON_MESSAGES: Mapping[str, type[Message]] = {
    m.TYPE: m for m in (Welcome, Refused, Paste, Write, Detach, Renamed)
}


# -- the wire -----------------------------------------------------------------------------


class WireError(ValueError):
    """A text frame that is not a message of this protocol.

    ``request_id`` is the frame's ``id`` when it had one, so a malformed or unknown
    request can still be answered; ``unknown`` says the type was not one we read.
    """

    def __init__(self, detail: str, *, field: str | None = None, request_id: int | None = None,
                 unknown: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.request_id = request_id
        self.unknown = unknown


def encode(msg: Message) -> str:
    """``msg`` as its JSON text frame (fields that are None are left out)."""
    out: dict[str, Any] = {"type": msg.TYPE}
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        value = getattr(msg, f.name)
        if value is None:
            continue
        out[f.name] = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
    return orjson.dumps(out).decode()


def decode(frame: str | bytes, kinds: Mapping[str, type[M]]) -> M:
    """The message in ``frame``, one of ``kinds`` (by its ``type``); WireError otherwise."""
    try:
        raw = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise WireError("the frame is not valid JSON") from None
    if not isinstance(raw, dict):
        raise WireError("the frame is not a JSON object")
    req_id = raw.get("id")
    req_id = req_id if isinstance(req_id, int) and not isinstance(req_id, bool) else None
    kind = raw.get("type")
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"unknown message type {kind!r}", request_id=req_id, unknown=True)
    values: dict[str, Any] = {}
    for name, (accepts, optional, required) in _fields(cls).items():
        if name not in raw or (raw[name] is None and optional):
            if required:
                raise WireError(f"{name} is required", field=name, request_id=req_id)
            continue
        values[name] = _read(name, raw[name], accepts, req_id)
    return cls(**values)


# What each field accepts: (its type, whether None is allowed, whether it is required).
_FieldSpec = tuple[type, bool, bool]
_SPECS: dict[type, dict[str, _FieldSpec]] = {}
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
          bytes: "a base64 string", dict: "a JSON object"}


def _fields(cls: type) -> dict[str, _FieldSpec]:
    spec = _SPECS.get(cls)
    if spec is None:
        hints = typing.get_type_hints(cls)
        spec = {}
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            args = typing.get_args(hint) if isinstance(hint, UnionType) else (hint,)
            accepts = next(typing.get_origin(a) or a for a in args if a is not NoneType)
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            spec[f.name] = (accepts, NoneType in args, required)
        _SPECS[cls] = spec
    return spec


def _read(name: str, value: Any, accepts: type, req_id: int | None) -> Any:
    if accepts is bytes and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise WireError(f"{name} is not valid base64", field=name, request_id=req_id) from None
    if accepts is float and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, accepts) and not (accepts is int and isinstance(value, bool)):
        return value
    raise WireError(f"{name} must be {_NAMES[accepts]}", field=name, request_id=req_id)
