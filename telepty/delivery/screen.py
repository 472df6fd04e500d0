"""Reading an agent's screen: where its composer is, and whether it is idle, busy or blocked.

Pure functions over a list of screen lines (a tmux capture, or a PTY's recent output
rendered by :class:`TerminalScreen`), driven by the patterns of a ``SubmitProfile``.
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


# -- a small terminal, for PTY output --------------------------------------------------


_CSI_RE = re.compile(r"\x1b\[([0-?]*)([ -/]*)([@-~])")
_OSC_RE = re.compile(rb"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def _cell_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class TerminalScreen:
    """Just enough of a VT100 to turn an agent's recent output into screen lines.

    PTY sessions have no tmux to ask, only the bytes the program printed; full-screen
    TUIs position the cursor instead of printing lines, so stripping escapes is not
    enough. Handled: printing with wrap, CR/LF/BS/TAB, cursor movement (CUU/CUD/CUF/
    CUB/CNL/CPL/CHA/CUP/VPA), erase (ED/EL/ECH), insert/delete chars and lines, scroll
    regions and scrolling, save/restore cursor, the alternate screen. Colours and
    modes are ignored. Feeding the tail of a stream that starts mid-frame is fine:
    TUIs redraw often.
    """

    def __init__(self, cols: int = 120, rows: int = 40) -> None:
        self.cols = max(2, cols)
        self.rows = max(2, rows)
        self.grid: list[list[str]] = [[" "] * self.cols for _ in range(self.rows)]
        self.x = 0
        self.y = 0
        self.top = 0
        self.bottom = self.rows - 1
        self.saved = (0, 0)
        self._pending_wrap = False

    def lines(self) -> list[str]:
        return trim("".join(c for c in row if c) for row in self.grid)

    def lines_to_cursor(self) -> list[str]:
        """The rows down to the cursor's (see ``TmuxServer.capture_to_cursor``)."""
        return ["".join(c for c in row if c).rstrip() for row in self.grid[: self.y + 1]]

    def feed(self, data: bytes) -> None:
        data = _OSC_RE.sub(b"", data)
        text = data.decode("utf-8", errors="replace")
        i = 0
        n = len(text)
        while i < n:
            ch = text[i]
            if ch == "\x1b":
                i = self._escape(text, i)
                continue
            i += 1
            if ch == "\r":
                self.x = 0
                self._pending_wrap = False
            elif ch == "\n" or ch == "\x0b" or ch == "\x0c":
                self._linefeed()
            elif ch == "\b":
                self.x = max(0, self.x - 1)
                self._pending_wrap = False
            elif ch == "\t":
                self.x = min(self.cols - 1, (self.x // 8 + 1) * 8)
            elif ch < " " or ch == "\x7f":
                continue
            else:
                self._put(ch)

    # -- printing ----------------------------------------------------------------------

    def _put(self, ch: str) -> None:
        w = _cell_width(ch)
        if w == 0:
            return
        if self._pending_wrap or self.x + w > self.cols:
            self.x = 0
            self._linefeed()
        self._pending_wrap = False
        self.grid[self.y][self.x] = ch
        if w == 2 and self.x + 1 < self.cols:
            self.grid[self.y][self.x + 1] = ""  # the wide character's second cell
        self.x += w
        if self.x >= self.cols:
            self.x = self.cols - 1
            self._pending_wrap = True

    def _linefeed(self) -> None:
        self._pending_wrap = False
        if self.y == self.bottom:
            self._scroll_up(1)
        elif self.y < self.rows - 1:
            self.y += 1

    def _scroll_up(self, count: int) -> None:
        for _ in range(count):
            del self.grid[self.top]
            self.grid.insert(self.bottom, [" "] * self.cols)

    def _scroll_down(self, count: int) -> None:
        for _ in range(count):
            del self.grid[self.bottom]
            self.grid.insert(self.top, [" "] * self.cols)

    # -- escapes -----------------------------------------------------------------------

    def _escape(self, text: str, i: int) -> int:
        if i + 1 >= len(text):
            return i + 1
        nxt = text[i + 1]
        if nxt == "[":
            m = _CSI_RE.match(text, i)
            if m is None:
                return i + 2
            self._csi(m.group(1), m.group(3))
            return m.end()
        if nxt == "7":
            self.saved = (self.x, self.y)
        elif nxt == "8":
            self.x, self.y = self.saved
        elif nxt == "M":  # reverse index
            if self.y == self.top:
                self._scroll_down(1)
            else:
                self.y = max(0, self.y - 1)
        elif nxt == "D":
            self._linefeed()
        elif nxt == "E":
            self.x = 0
            self._linefeed()
        elif nxt == "c":
            self.__init__(self.cols, self.rows)  # type: ignore[misc]
        elif nxt in "()*+" and i + 2 < len(text):
            return i + 3  # charset designation
        return i + 2

    def _csi(self, params: str, final: str) -> None:
        private = params.startswith("?") or params.startswith(">") or params.startswith("=")
        nums = [int(p) if p.isdigit() else 0 for p in params.lstrip("?>=").split(";")] if params else []

        def arg(k: int = 0, default: int = 1) -> int:
            v = nums[k] if k < len(nums) else 0
            return v if v > 0 else default

        self._pending_wrap = False
        if private:
            if final in "hl" and any(n in (47, 1047, 1049) for n in nums):
                self._erase_display(2)  # entering or leaving the alternate screen
                self.x = self.y = 0
            return
        if final == "A":
            self.y = max(self.top if self.y >= self.top else 0, self.y - arg())
        elif final in "Be":
            self.y = min(self.bottom if self.y <= self.bottom else self.rows - 1, self.y + arg())
        elif final in "Ca":
            self.x = min(self.cols - 1, self.x + arg())
        elif final == "D":
            self.x = max(0, self.x - arg())
        elif final == "E":
            self.y = min(self.rows - 1, self.y + arg())
            self.x = 0
        elif final == "F":
            self.y = max(0, self.y - arg())
            self.x = 0
        elif final in "G`":
            self.x = min(self.cols - 1, arg() - 1)
        elif final in "Hf":
            self.y = min(self.rows - 1, arg(0) - 1)
            self.x = min(self.cols - 1, arg(1) - 1)
        elif final == "d":
            self.y = min(self.rows - 1, arg() - 1)
        elif final == "J":
            self._erase_display(nums[0] if nums else 0)
        elif final == "K":
            self._erase_line(nums[0] if nums else 0)
        elif final == "X":
            row = self.grid[self.y]
            for k in range(self.x, min(self.cols, self.x + arg())):
                row[k] = " "
        elif final == "P":
            row = self.grid[self.y]
            count = min(arg(), self.cols - self.x)
            del row[self.x:self.x + count]
            row.extend([" "] * count)
        elif final == "@":
            row = self.grid[self.y]
            count = min(arg(), self.cols - self.x)
            for _ in range(count):
                row.insert(self.x, " ")
            del row[self.cols:]
        elif final == "L" and self.top <= self.y <= self.bottom:
            for _ in range(arg()):
                del self.grid[self.bottom]
                self.grid.insert(self.y, [" "] * self.cols)
        elif final == "M" and self.top <= self.y <= self.bottom:
            for _ in range(arg()):
                del self.grid[self.y]
                self.grid.insert(self.bottom, [" "] * self.cols)
        elif final == "S":
            self._scroll_up(arg())
        elif final == "T":
            self._scroll_down(arg())
        elif final == "r":
            top, bottom = arg(0) - 1, arg(1, self.rows) - 1
            if 0 <= top < bottom < self.rows:
                self.top, self.bottom = top, bottom
            else:
                self.top, self.bottom = 0, self.rows - 1
            self.x = self.y = 0
        elif final == "s":
            self.saved = (self.x, self.y)
        elif final == "u":
            self.x, self.y = self.saved

    def _erase_line(self, mode: int) -> None:
        row = self.grid[self.y]
        if mode == 0:
            rng = range(self.x, self.cols)
        elif mode == 1:
            rng = range(0, self.x + 1)
        else:
            rng = range(self.cols)
        for k in rng:
            row[k] = " "

    def _erase_display(self, mode: int) -> None:
        if mode == 0:
            self._erase_line(0)
            rows = range(self.y + 1, self.rows)
        elif mode == 1:
            self._erase_line(1)
            rows = range(0, self.y)
        else:
            rows = range(self.rows)
        for r in rows:
            self.grid[r] = [" "] * self.cols


def render_output(data: bytes, cols: int = 120, rows: int = 40) -> list[str]:
    """The screen a terminal of ``cols`` x ``rows`` would show after ``data``."""
    term = TerminalScreen(cols, rows)
    term.feed(data)
    return term.lines()
