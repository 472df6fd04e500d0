"""Request bodies as models, and the inject body every way in shares.

Each body is declared once, as a :class:`RequestModel`: the model reads the body (a bad
one is a 400 or 413 with a code, and changes nothing) and the API document's schema for
that body is generated from the same model (``telepty.api.openapi``), so the rules a
body is checked by and the rules the document states cannot drift apart.

The rules every model keeps, as the hand parsers before them did: types are strict (a
JSON ``true`` is no number, ``"1"`` no integer); a JSON ``null`` counts as absent, so an
optional field is nullable in the document; a required field that is absent or null is
``missing_field``; any other misfit is ``invalid_field``; fields the model does not know
are ignored unless it says otherwise.

The inject body (:class:`InjectBody`) is what the HTTP routes, the bus auto-router, the
relay's work queue and the CLI's requests all carry, so all of them reject the same
things the same way. Carriage returns: the prompt is byte-exact, so ``\\r\\n`` is *not*
normalised to ``\\n``; instead ``\\r`` counts as a control character and is rejected
unless ``raw: true``. A terminal reads a bare ``\\r`` as the Enter key, so a prompt
carrying one could submit half of itself outside a bracketed paste; refusing it loudly
beats rewriting the caller's bytes silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from telepty.delivery.limits import DEFAULT_WAIT_TIMEOUT, MAX_QUIET_MS, MAX_WAIT_TIMEOUT
from telepty.errors import BadRequest, ErrorCode, TooLarge

LEGACY_PROMPT_FIELDS = ("text", "content", "message")

# C0 controls except \t (0x09) and \n (0x0A), DEL, and the C1 block U+0080–U+009F.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
NO_CONTROLS = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"  # the same, as a JSON Schema pattern

_CONTROL_NAMES = {0x0D: "carriage return", 0x1B: "escape", 0x7F: "delete", 0x00: "NUL"}


# -- the models' common ground ----------------------------------------------------------


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


class RequestModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True, frozen=True)
    # The code for a body that is no JSON object (the routes' json_object says invalid_json first).
    not_an_object: ClassVar[ErrorCode] = ErrorCode.INVALID_BODY

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @classmethod
    def parse(cls, data: object) -> Self:
        """The body as this model, or ``BadRequest``/``TooLarge`` saying what is wrong."""
        if not isinstance(data, dict):
            raise BadRequest(cls.not_an_object, "the request body must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise refusal(exc) from None


def refusal(exc: ValidationError) -> BadRequest:
    """The first thing wrong with a body, in our words and codes."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "missing":
        return BadRequest(ErrorCode.MISSING_FIELD, f"{where} is required")
    detail = f"{where}: {err['msg'][0].lower()}{err['msg'][1:]}"
    if err["type"].endswith("_type") or err["type"] in ("literal_error", "none_required"):
        detail += f", got {kind_of(err['input'])}"
    return BadRequest(ErrorCode.INVALID_FIELD, detail)


# -- the inject body ----------------------------------------------------------------------


@dataclass(frozen=True)
class InjectRequest:
    prompt: bytes  # UTF-8 of the caller's text, exactly as given
    sender: str | None = None
    reply_to: str | None = None
    thread_id: str | None = None
    reply_expected: bool = False
    no_enter: bool = False
    force: bool = False
    wait: bool = False
    raw: bool = False
    quiet_ms: int | None = None
    timeout: float = DEFAULT_WAIT_TIMEOUT
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyPress:
    """Raw keys for a session (already validated: ``telepty.delivery.keys.parse_keys``)."""

    keys: tuple[Any, ...]
    force: bool = False
    quiet_ms: int | None = None


QUIET_MS = Field(None, ge=0, le=MAX_QUIET_MS, description="the quiet window to wait for, in ms")
TIMEOUT = Field(DEFAULT_WAIT_TIMEOUT, ge=0, le=MAX_WAIT_TIMEOUT, allow_inf_nan=False,
                description="seconds to wait with wait: true")


class DeliveryOptions(RequestModel):
    """How a delivery (a prompt or keys) goes in, and whether the caller waits for it."""

    force: bool | None = Field(False, description="skip the quiet guard")
    wait: bool | None = Field(False, description="answer with the final record (200/422) instead of 202")
    quiet_ms: int | None = QUIET_MS
    timeout: float | None = TIMEOUT


class PromptOptions(DeliveryOptions):
    """A prompt's options, without the prompt and without ``from`` (a reply sets its own)."""

    reply_to: str | None = Field(None, description="where replies go; defaults to from")
    thread_id: str | None = None
    reply_expected: bool | None = Field(False, description="append the reply footer (unless a closing "
                                                           "message)")
    no_enter: bool | None = Field(False, description="paste without submitting")
    raw: bool | None = Field(False, description="allow control characters in the prompt")
    prompt: str | None = Field(None, json_schema_extra={"minLength": 1}, description=(
        "UTF-8, byte-exact, at most TELEPTY_MAX_PROMPT_BYTES (1 MiB); control characters other "
        "than \\n and \\t only with raw: true"))
    # Read (and then must be a string) only when prompt is absent; ignored with a warning otherwise.
    text: Any = Field(None, description="deprecated name for prompt")
    content: Any = Field(None, description="deprecated name for prompt")
    message: Any = Field(None, description="deprecated name for prompt")

    # The prompt (or a deprecated name) is required; control characters only with raw.
    model_config = ConfigDict(json_schema_extra={
        "anyOf": [{"required": [name]} for name in ("prompt", *LEGACY_PROMPT_FIELDS)],
        "if": {"properties": {"raw": {"const": True}}, "required": ["raw"]},
        "else": {"properties": {"prompt": {"pattern": NO_CONTROLS}}},
    })

    def request(self, *, max_prompt_bytes: int, sender: str | None = None) -> InjectRequest:
        """The prompt checked (present, not blank, valid Unicode, within the limit, no
        control characters unless raw) and the delivery's options."""
        warnings: list[str] = []
        text = self._prompt_text(warnings)
        try:
            prompt = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest(ErrorCode.INVALID_PROMPT,
                             f"prompt is not valid Unicode: lone surrogate at index {exc.start}") from exc
        if len(prompt) > max_prompt_bytes:
            raise TooLarge(ErrorCode.TOO_LARGE,
                           f"prompt is {len(prompt)} bytes of UTF-8; the limit is {max_prompt_bytes}")
        if not self.raw:
            _reject_controls(text)
        return InjectRequest(
            prompt=prompt,
            sender=sender,
            reply_to=self.reply_to if self.reply_to is not None else sender,
            thread_id=self.thread_id,
            reply_expected=bool(self.reply_expected),
            no_enter=bool(self.no_enter),
            force=bool(self.force),
            wait=bool(self.wait),
            raw=bool(self.raw),
            quiet_ms=self.quiet_ms,
            timeout=float(self.timeout if self.timeout is not None else DEFAULT_WAIT_TIMEOUT),
            warnings=tuple(warnings),
        )

    def _prompt_text(self, warnings: list[str]) -> str:
        """``prompt`` wins; a legacy name is honoured with a warning so callers can migrate."""
        name, value = "prompt", self.prompt
        if value is None:
            legacy = [(f, getattr(self, f)) for f in LEGACY_PROMPT_FIELDS if getattr(self, f) is not None]
            if legacy:
                name, value = legacy[0]
                warnings.append(f"deprecated_field: use prompt instead of {name}")
        else:
            warnings.extend(f"ignored_field: {f} (prompt was given)" for f in LEGACY_PROMPT_FIELDS
                            if getattr(self, f) is not None)
        if value is None or value == "":
            raise BadRequest(ErrorCode.MISSING_FIELD, "prompt is required and must not be empty")
        if not isinstance(value, str):
            raise BadRequest(ErrorCode.INVALID_FIELD, f"{name} must be a string, got {kind_of(value)}")
        if not value.strip():
            # Nothing to say: submitting it would only press Enter (telepty keys does that).
            raise BadRequest(ErrorCode.MISSING_FIELD, "prompt must not be only whitespace")
        return value


class InjectBody(PromptOptions):
    """``POST /api/sessions/{id}/inject``, a fan-out's prompt, a turn_request's options."""

    sender: str | None = Field(None, alias="from", description="who sends it (a session id, or any name)")

    def request(self, *, max_prompt_bytes: int, sender: str | None = None) -> InjectRequest:
        return super().request(max_prompt_bytes=max_prompt_bytes, sender=sender or self.sender)


def parse_inject(body: object, *, max_prompt_bytes: int) -> InjectRequest:
    """An inject body as an ``InjectRequest``, or a 400/413 with a code."""
    return InjectBody.parse(body).request(max_prompt_bytes=max_prompt_bytes)


def _reject_controls(text: str) -> None:
    m = _CONTROL_RE.search(text)
    if m is None:
        return
    cp = ord(m.group())
    name = _CONTROL_NAMES.get(cp)
    label = f"U+{cp:04X}" + (f" ({name})" if name else "")
    hint = "; use \\n for line breaks" if cp == 0x0D else ""
    raise BadRequest(
        ErrorCode.INVALID_PROMPT,
        f"prompt contains control character {label} at index {m.start()}{hint}; "
        "only \\n and \\t are allowed unless raw is true",
    )
