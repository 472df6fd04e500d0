"""Turning an inject request body into an ``InjectRequest``, or a 400/413 with a code.

Pure: no I/O, no registry. Everything an HTTP handler, the bus auto-router, the relay
and the CLI accept goes through here, so all four reject the same things the same way.

Carriage returns: the prompt is byte-exact, so ``\\r\\n`` is *not* normalised to
``\\n``; instead ``\\r`` counts as a control character and is rejected unless
``raw: true``. A terminal reads a bare ``\\r`` as the Enter key, so a prompt carrying
one could submit half of itself outside a bracketed paste; refusing it loudly beats
rewriting the caller's bytes silently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from telepty.errors import BadRequest, TooLarge

LEGACY_PROMPT_FIELDS = ("text", "content", "message")
MAX_QUIET_MS = 600_000
DEFAULT_WAIT_TIMEOUT = 60.0
MAX_WAIT_TIMEOUT = 3600.0

# C0 controls except \t (0x09) and \n (0x0A), DEL, and the C1 block U+0080–U+009F.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_CONTROL_NAMES = {0x0D: "carriage return", 0x1B: "escape", 0x7F: "delete", 0x00: "NUL"}


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


def parse_inject(body: object, *, max_prompt_bytes: int) -> InjectRequest:
    if not isinstance(body, dict):
        raise BadRequest("invalid_body", "the request body must be a JSON object")
    warnings: list[str] = []
    text = _prompt_text(body, warnings)
    try:
        prompt = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(
            "invalid_prompt",
            f"prompt is not valid Unicode: lone surrogate at index {exc.start}",
        ) from exc
    if len(prompt) > max_prompt_bytes:
        raise TooLarge(
            "too_large",
            f"prompt is {len(prompt)} bytes of UTF-8; the limit is {max_prompt_bytes}",
        )
    raw = _bool(body, "raw")
    if not raw:
        _reject_controls(text)
    sender = _str(body, "from")
    reply_to = _str(body, "reply_to")
    return InjectRequest(
        prompt=prompt,
        sender=sender,
        reply_to=reply_to if reply_to is not None else sender,
        thread_id=_str(body, "thread_id"),
        reply_expected=_bool(body, "reply_expected"),
        no_enter=_bool(body, "no_enter"),
        force=_bool(body, "force"),
        wait=_bool(body, "wait"),
        raw=raw,
        quiet_ms=_quiet_ms(body),
        timeout=_timeout(body),
        warnings=tuple(warnings),
    )


def _prompt_text(body: dict[str, Any], warnings: list[str]) -> str:
    """``prompt`` wins; a legacy name is honoured with a warning so callers can migrate."""
    name = "prompt"
    if body.get("prompt") is None:
        legacy = [f for f in LEGACY_PROMPT_FIELDS if body.get(f) is not None]
        if legacy:
            name = legacy[0]
            warnings.append(f"deprecated_field: use prompt instead of {name}")
    else:
        ignored = [f for f in LEGACY_PROMPT_FIELDS if body.get(f) is not None]
        warnings.extend(f"ignored_field: {f} (prompt was given)" for f in ignored)
    value = body.get(name)
    if value is None or value == "":
        raise BadRequest("missing_field", "prompt is required and must not be empty")
    if not isinstance(value, str):
        raise BadRequest("invalid_field", f"{name} must be a string, got {_kind(value)}")
    if not value.strip():
        # Nothing to say: submitting it would only press Enter (telepty keys does that).
        raise BadRequest("missing_field", "prompt must not be only whitespace")
    return value


def _reject_controls(text: str) -> None:
    m = _CONTROL_RE.search(text)
    if m is None:
        return
    cp = ord(m.group())
    name = _CONTROL_NAMES.get(cp)
    label = f"U+{cp:04X}" + (f" ({name})" if name else "")
    hint = "; use \\n for line breaks" if cp == 0x0D else ""
    raise BadRequest(
        "invalid_prompt",
        f"prompt contains control character {label} at index {m.start()}{hint}; "
        "only \\n and \\t are allowed unless raw is true",
    )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("invalid_field", f"{name} must be a string, got {_kind(value)}")
    return value


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest("invalid_field", f"{name} must be true or false, got {_kind(value)}")
    return value


def _quiet_ms(body: dict[str, Any]) -> int | None:
    value = body.get("quiet_ms")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUIET_MS:
        raise BadRequest(
            "invalid_field", f"quiet_ms must be an integer from 0 to {MAX_QUIET_MS}, got {value!r}"
        )
    return value


def _timeout(body: dict[str, Any]) -> float:
    value = body.get("timeout")
    if value is None:
        return DEFAULT_WAIT_TIMEOUT
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_WAIT_TIMEOUT
    ):
        raise BadRequest(
            "invalid_field",
            f"timeout must be a number of seconds from 0 to {MAX_WAIT_TIMEOUT:g}, got {value!r}",
        )
    return float(value)
