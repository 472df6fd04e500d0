"""Reading an agent's screen: where its composer is, and whether it is idle, busy or blocked.

Pure functions over a list of screen lines (a tmux capture, or a PTY's recent output
rendered by ``telepty.delivery.terminal_screen``), driven by the patterns of a
``SubmitProfile``.
Agent TUIs change monthly, so nothing here knows any agent: every decision names the
profile pattern that made it, and a screen no pattern explains is ``unknown`` — never
"busy forever", and never evidence that a prompt was submitted.

How a screen is read (see ``read_screen``):

- the **composer** is the *last* line matching a composer pattern: transcripts echo past
  user turns with the same marker (``> fix the bug``), but the live input box is always
  the one at the bottom. Its text is what follows the marker on that line plus the
  continuation lines under it, up to a border-only line (``╰────╯``, ``────``);
- a **dialog** (permission, trust) counts only below the composer, or anywhere when no
  composer is visible: agents replace the input box with the dialog, and an old dialog's
  words higher up in a transcript must not block anything;
- **busy** patterns count only in the bottom lines (spinners live right above the input
  box), so a transcript that merely mentions "esc to interrupt" is not busy;
- a composer line matching an **idle** pattern (``> Try "…"``, ``› Ask Codex to do
  anything``: placeholder suggestions) is empty.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from telepty.delivery.profiles import SubmitProfile

IDLE = "idle"
BUSY = "busy"
BLOCKED = "blocked"
COMPOSER_HAS_TEXT = "composer-has-text"
UNKNOWN = "unknown"

# Spinners and footers sit within this many non-blank lines of the bottom.
BOTTOM_LINES = 10
# Box-drawing and rule characters: a line made only of these (and spaces) ends a composer.
_BORDER_CHARS = "─━═╌╍┄┅┈┉╭╮╰╯┌┐└┘├┤┬┴┼│┃|▔▁▏▕▀▄-_=~+"
_BORDER_ONLY_RE = re.compile(r"^[\s" + re.escape(_BORDER_CHARS) + r"]*$")
_SIDE_BORDERS = "│┃|▏▕"
_NORMALISE_DROP = re.compile(r"[\s" + re.escape(_BORDER_CHARS) + r"]+")
# How much of a prompt must show in the composer to count as "our text is there".
FINGERPRINT_CHARS = 16
MIN_WINDOW_CHARS = 8


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True)
class Match:
    """One pattern that matched one screen line."""

    pattern: str
    line: str
    index: int  # line number on the screen, 0 = top

    def to_public(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "line": self.line, "index": self.index}


@dataclass(frozen=True)
class Composer:
    index: int  # the marker line
    end: int  # one past the last continuation line
    pattern: str
    lines: tuple[str, ...]
    text: str  # what follows the marker, continuation lines joined with "\n"
    idle: Match | None = None  # an idle pattern matched: placeholder text, not input

    @property
    def empty(self) -> bool:
        return self.idle is not None or not self.text.strip()

    def to_public(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pattern": self.pattern,
            "lines": list(self.lines),
            "text": self.text,
            "empty": self.empty,
            "idle_pattern": self.idle.pattern if self.idle else None,
        }


@dataclass(frozen=True)
class ScreenReading:
    verdict: str  # idle | busy | blocked | composer-has-text | unknown
    pattern: str | None  # the pattern that decided it (None: nothing matched)
    line: str | None  # the line it matched
    composer: Composer | None = None
    dialog: Match | None = None
    busy: Match | None = None
    lines: tuple[str, ...] = field(default=(), repr=False)

    @property
    def why(self) -> str:
        if self.pattern is None:
            if self.verdict == UNKNOWN:
                return "no composer, busy, dialog or idle pattern matched the screen"
            return f"{self.verdict}: the composer is empty"
        return f"{self.verdict}: {self.pattern!r} matched {self.line!r}"

    def to_public(self, tail: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "pattern": self.pattern,
            "line": self.line,
            "why": self.why,
            "composer": self.composer.to_public() if self.composer else None,
        }
        if tail:
            out["lines"] = list(self.lines[-tail:])
        return out


# -- finding things on a screen ---------------------------------------------------------


def trim(lines: Iterable[str]) -> list[str]:
    """Right-strip every line and drop trailing blank ones (cursor rows, unused screen)."""
    rows = [line.rstrip() for line in lines]
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _first_match(patterns: Sequence[str], lines: Sequence[str], start: int = 0,
                 stop: int | None = None) -> Match | None:
    stop = len(lines) if stop is None else stop
    for i in range(start, stop):
        for pattern in patterns:
            if _compiled(pattern).search(lines[i]):
                return Match(pattern, lines[i], i)
    return None


def _last_match(patterns: Sequence[str], lines: Sequence[str],
                skip: Sequence[str] = ()) -> tuple[Match, re.Match[str]] | None:
    for i in range(len(lines) - 1, -1, -1):
        if skip and any(_compiled(p).search(lines[i]) for p in skip):
            continue
        for pattern in patterns:
            m = _compiled(pattern).search(lines[i])
            if m:
                return Match(pattern, lines[i], i), m
    return None


def _strip_sides(text: str) -> str:
    text = text.strip()
    while text and text[-1] in _SIDE_BORDERS:
        text = text[:-1].rstrip()
    while text and text[0] in _SIDE_BORDERS:
        text = text[1:].lstrip()
    return text


def find_composer(lines: Sequence[str], profile: SubmitProfile) -> Composer | None:
    # A menu option drawn like a prompt ("❯ 1. Yes", "› 1. Yes, proceed") is the dialog's.
    found = _last_match(profile.composer_patterns, lines, skip=profile.dialog_patterns)
    if found is None:
        return None
    match, m = found
    first = _strip_sides(match.line[m.end():])
    end = match.index + 1
    texts = [first]
    while end < len(lines) and not _BORDER_ONLY_RE.match(lines[end]):
        if _first_match(profile.busy_patterns, lines, end, end + 1) or _first_match(
            profile.dialog_patterns, lines, end, end + 1
        ):
            break  # a spinner or a dialog under the input line is not composer text
        texts.append(_strip_sides(lines[end]))
        end += 1
    while len(texts) > 1 and not texts[-1]:
        texts.pop()
        end -= 1
    idle = _first_match(profile.idle_patterns, lines, match.index, match.index + 1)
    return Composer(
        index=match.index, end=end, pattern=match.pattern, lines=tuple(lines[match.index:end]),
        text="\n".join(texts), idle=idle,
    )


def bottom_start(lines: Sequence[str], n: int = BOTTOM_LINES) -> int:
    """Index of the first of the last ``n`` non-blank lines."""
    seen = 0
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            seen += 1
            if seen == n:
                return i
    return 0


def read_screen(raw_lines: Iterable[str], profile: SubmitProfile) -> ScreenReading:
    """Decide idle / busy / blocked / composer-has-text / unknown, naming the pattern."""
    lines = tuple(trim(raw_lines))
    composer = find_composer(lines, profile) if profile.composer_patterns else None
    dialog_from = composer.index + 1 if composer is not None else 0
    dialog = _first_match(profile.dialog_patterns, lines, dialog_from)
    busy = _first_match(profile.busy_patterns, lines, bottom_start(lines))
    common = {"composer": composer, "dialog": dialog, "busy": busy, "lines": lines}
    if dialog is not None:
        return ScreenReading(BLOCKED, dialog.pattern, dialog.line, **common)
    if busy is not None:
        return ScreenReading(BUSY, busy.pattern, busy.line, **common)
    if composer is not None:
        if composer.idle is not None:
            return ScreenReading(IDLE, composer.idle.pattern, composer.idle.line, **common)
        if composer.empty:
            return ScreenReading(IDLE, composer.pattern, lines[composer.index], **common)
        return ScreenReading(COMPOSER_HAS_TEXT, composer.pattern, lines[composer.index], **common)
    idle = _first_match(profile.idle_patterns, lines, bottom_start(lines))
    if idle is not None:
        return ScreenReading(IDLE, idle.pattern, idle.line, **common)
    return ScreenReading(UNKNOWN, None, None, **common)


# -- is our prompt in the composer? -----------------------------------------------------


def normalise(text: str) -> str:
    """Text without whitespace or box drawing: survives wrapping, padding and borders."""
    return _NORMALISE_DROP.sub("", unicodedata.normalize("NFC", text))


def holds_prompt(composer: Composer | None, prompt: str, profile: SubmitProfile) -> str | None:
    """``"placeholder"``, ``"text"`` or None: does the composer show this prompt?

    The composer may show all of it, a wrapped or scrolled window of it, or the agent's
    stand-in for a long paste (``[Pasted text #1 +42 lines]``).
    """
    if composer is None:
        return None
    block = "\n".join(composer.lines)
    for pattern in profile.placeholder_patterns:
        if _compiled(pattern).search(block):
            return "placeholder"
    if composer.idle is not None:
        return None
    shown = normalise(composer.text)
    wanted = normalise(prompt)
    if not shown or not wanted:
        return None
    if len(wanted) <= FINGERPRINT_CHARS:
        return "text" if wanted in shown else None
    if wanted[:FINGERPRINT_CHARS] in shown or wanted[-FINGERPRINT_CHARS:] in shown:
        return "text"
    if len(shown) >= MIN_WINDOW_CHARS and shown in wanted:
        return "text"
    return None


def echoed(prompt: str, before: Sequence[str], after: Sequence[str]) -> str | None:
    """A line new on the screen since ``before`` that shows the start of the prompt."""
    head = normalise(prompt)[:FINGERPRINT_CHARS]
    if not head:
        return None
    old = {normalise(line) for line in before}
    for line in after:
        n = normalise(line)
        if head in n and n not in old:
            return line
    return None
