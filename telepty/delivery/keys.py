"""Raw keys: tmux key names (``Down``, ``Enter``, ``C-c``) and literal text, unbracketed.

Permission menus and pickers are answered with keys, not pastes: a paste would cancel
the menu or be read as a reply. A key sequence is a list whose items are either a key
name or ``{"text": "..."}`` (characters typed as they are). tmux panes get the names
as ``send-keys`` arguments; PTYs get the bytes an xterm would send for them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from telepty.errors import BadRequest, ErrorCode

MAX_KEYS = 64
MAX_TEXT = 4096

KeyItem = str | dict[str, str]

_SPECIAL: dict[str, bytes] = {
    "Enter": b"\r",
    "Escape": b"\x1b",
    "Tab": b"\t",
    "BTab": b"\x1b[Z",
    "BSpace": b"\x7f",
    "Space": b" ",
    "Home": b"\x1b[H",
    "End": b"\x1b[F",
    "PageUp": b"\x1b[5~",
    "PgUp": b"\x1b[5~",
    "PPage": b"\x1b[5~",
    "PageDown": b"\x1b[6~",
    "PgDn": b"\x1b[6~",
    "NPage": b"\x1b[6~",
    "IC": b"\x1b[2~",
    "Insert": b"\x1b[2~",
    "DC": b"\x1b[3~",
    "Delete": b"\x1b[3~",
    "F1": b"\x1bOP",
    "F2": b"\x1bOQ",
    "F3": b"\x1bOR",
    "F4": b"\x1bOS",
    "F5": b"\x1b[15~",
    "F6": b"\x1b[17~",
    "F7": b"\x1b[18~",
    "F8": b"\x1b[19~",
    "F9": b"\x1b[20~",
    "F10": b"\x1b[21~",
    "F11": b"\x1b[23~",
    "F12": b"\x1b[24~",
}
_ARROWS = {"Up": "A", "Down": "B", "Right": "C", "Left": "D"}
# DOTALL and fullmatch: a name holding a newline ("\n", "a\n") is judged whole, never
# split at the newline (``.`` and ``$`` would otherwise stop there).
_MOD_RE = re.compile(r"((?:[CMS]-)*)(.+)", re.DOTALL)
_MOD_PARAM = {"S": 1, "M": 2, "C": 4}


def _split(name: str) -> tuple[set[str], str]:
    m = _MOD_RE.fullmatch(name)
    assert m is not None
    mods = {p for p in m.group(1).split("-") if p}
    return mods, m.group(2)


def is_key_name(name: str) -> bool:
    if not name or len(name) > 32:
        return False
    mods, base = _split(name)
    if base in _SPECIAL or base in _ARROWS:
        return True
    return len(base) == 1 and base.isprintable() and not (base == " " and mods)


def key_bytes(name: str, *, app_cursor: bool = False) -> bytes:
    """The bytes an xterm sends for one key name (raises ValueError if unknown)."""
    if not is_key_name(name):
        raise ValueError(f"unknown key name {name!r}")
    mods, base = _split(name)
    if base in _ARROWS:
        final = _ARROWS[base]
        if mods:
            param = 1 + sum(_MOD_PARAM[m] for m in mods)
            return f"\x1b[1;{param}{final}".encode()
        return f"\x1b{'O' if app_cursor else '['}{final}".encode()
    if base in _SPECIAL:
        if base == "Tab" and "S" in mods:
            return b"\x1b[Z"
        data = _SPECIAL[base]
        return (b"\x1b" + data) if "M" in mods else data
    data = base.encode("utf-8")
    if "S" in mods:
        data = base.upper().encode("utf-8")
    if "C" in mods:
        c = base.upper() if base.isalpha() else base
        if "@" <= c <= "_":
            data = bytes([ord(c) & 0x1F])
        elif c == "?":
            data = b"\x7f"
        elif c in (" ", "2"):
            data = b"\x00"
    if "M" in mods:
        data = b"\x1b" + data
    return data


def parse_keys(value: object) -> list[KeyItem]:
    """Validate a JSON ``keys`` array; raises BadRequest(invalid_keys) naming the bad item."""
    if not isinstance(value, list) or not value:
        raise BadRequest(ErrorCode.INVALID_KEYS, 'keys must be a non-empty array, e.g. ["Down", "Enter"]')
    if len(value) > MAX_KEYS:
        raise BadRequest(ErrorCode.INVALID_KEYS, f"at most {MAX_KEYS} keys per request")
    out: list[KeyItem] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not is_key_name(item):
                raise BadRequest(
                    ErrorCode.INVALID_KEYS,
                    f"keys[{i}] {item!r} is not a key name (Enter, Escape, Tab, BSpace, Up, Down, "
                    "Left, Right, Home, End, PageUp, PageDown, F1-F12, a single character, with "
                    'C-/M-/S- prefixes); send text as {"text": "..."}',
                )
            out.append(item)
        elif isinstance(item, dict) and set(item) == {"text"} and isinstance(item["text"], str):
            text = item["text"]
            if not text or len(text) > MAX_TEXT:
                raise BadRequest(ErrorCode.INVALID_KEYS, f"keys[{i}].text must be 1-{MAX_TEXT} characters")
            out.append({"text": text})
        else:
            raise BadRequest(ErrorCode.INVALID_KEYS, f'keys[{i}] must be a key name or {{"text": "..."}}')
    return out


def sequence_bytes(keys: Sequence[Any], *, app_cursor: bool = False) -> list[bytes]:
    """One chunk of bytes per item, for writing to a PTY with a gap between items."""
    return [
        item["text"].encode("utf-8") if isinstance(item, dict) else key_bytes(item, app_cursor=app_cursor)
        for item in keys
    ]


def describe(keys: Sequence[Any]) -> str:
    return " ".join(f"text:{item['text']!r}" if isinstance(item, dict) else item for item in keys)
