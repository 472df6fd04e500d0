"""Bracketed paste: knowing whether the app asked for it, and framing a prompt for it.

When a PTY is ours (spawned or wrapped) there is no tmux to frame a paste for us, so we
must do what a terminal does: watch the app's output for DECSET/DECRST 2004 and, when it
is on, surround pasted text with ``ESC[200~`` … ``ESC[201~``. The app then treats
newlines inside the prompt as text rather than as "submit", which is what makes a
multi-line prompt arrive as one message.

Output arrives in arbitrary chunks, so a mode switch can be split across reads
(``…\\x1b[?20`` | ``04h…``); the tracker carries an unfinished sequence over to the
next chunk. Apps also combine private modes in one sequence (``ESC[?1049;2004h``), so
the parameter list is parsed rather than matched literally.
"""

from __future__ import annotations

import re

BRACKET_START = b"\x1b[200~"
BRACKET_END = b"\x1b[201~"

# Full terminal reset (RIS) puts a real terminal back to "bracketed paste off".
_RIS = b"\x1bc"
# A complete private-mode set/reset (CSI ? Pm h|l), or RIS.
_EVENT_RE = re.compile(rb"\x1b\[\?([0-9;]*)([hl])|\x1bc")
# The end of a chunk that could still become one of the sequences above.
_INCOMPLETE_TAIL_RE = re.compile(rb"\x1b(?:\[(?:\?[0-9;]*)?)?\Z")
# Longer than any sane mode list; a "sequence" this long is noise, not worth carrying.
_MAX_CARRY = 64


class BracketedPasteTracker:
    """Follows DECSET/DECRST 2004 in an app's output stream."""

    __slots__ = ("_carry", "_enabled")

    def __init__(self, enabled: bool = False) -> None:
        self._enabled = enabled
        self._carry = b""

    @property
    def enabled(self) -> bool:
        return self._enabled

    def reset(self) -> None:
        self._enabled = False
        self._carry = b""

    def feed(self, chunk: bytes) -> None:
        if self._carry:
            data = self._carry + chunk
            self._carry = b""
        else:
            data = bytes(chunk)
        if not data:
            return
        esc = data.rfind(b"\x1b")
        if esc < 0:
            return  # hot path: plain text, nothing to track or carry
        if b"\x1b[?" in data or _RIS in data:
            for m in _EVENT_RE.finditer(data):
                if m.group(0) == _RIS:
                    self._enabled = False
                    continue
                params = m.group(1).split(b";")
                if b"2004" in params:
                    self._enabled = m.group(2) == b"h"
        tail = data[esc:]
        if len(tail) <= _MAX_CARRY and _INCOMPLETE_TAIL_RE.match(tail):
            self._carry = tail


def strip_paste_markers(data: bytes) -> bytes:
    """Remove every ESC[200~ / ESC[201~ so a prompt cannot end the paste early.

    A single replace is not enough: removing an inner marker can join its neighbours
    into a new one (``ESC[20`` + ``ESC[201~`` + ``1~``), so this repeats until stable.
    A few passes settle every realistic input; deliberately nested input falls back to
    a single linear stack pass so a hostile prompt cannot make this quadratic.
    """
    if b"\x1b[20" not in data:
        return data
    for _ in range(8):
        cleaned = data.replace(BRACKET_START, b"").replace(BRACKET_END, b"")
        if cleaned == data:
            return data
        data = cleaned
    return _strip_markers_linear(data)


def _strip_markers_linear(data: bytes) -> bytes:
    out = bytearray()
    mlen = len(BRACKET_START)
    for byte in data:
        out.append(byte)
        if byte == 0x7E and len(out) >= mlen:  # "~" ends both markers
            tail = out[-mlen:]
            if tail in (BRACKET_START, BRACKET_END):
                del out[-mlen:]
    return bytes(out)


def frame_paste(data: bytes, enabled: bool) -> bytes:
    """The bytes to write for a paste: markers stripped from ``data``, framed if enabled.

    Markers are stripped even when bracketed paste is off: an app that never enabled
    it may still parse them as keys, and a prompt should never carry terminal control
    that the sender did not mean.
    """
    body = strip_paste_markers(bytes(data))
    if enabled:
        return BRACKET_START + body + BRACKET_END
    return body
