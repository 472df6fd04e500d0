"""The screen a program's output stream draws, for terminals telepty cannot ask tmux about.

PTY sessions and ``telepty wrap`` terminals have no tmux to capture, only the bytes the
program printed; full-screen TUIs position the cursor instead of printing lines, so
stripping escapes is not enough. ``TerminalScreen`` runs the bytes through pyte's
VT100/xterm emulator, with what agents' output needs and pyte 0.8 lacks (each fix in
``_Screen`` or ``_Sanitizer`` says what a real terminal — tmux, which pane captures
come from — does instead):

- the alternate screen (``?1049``, ``?1047``, ``?47``): its own grid, the main screen
  back as it was on leaving, and for ``?1049`` the cursor in a slot of its own;
- ``DECSC`` is one slot (pyte stacks saves, so a second ``DECRC`` went home) and
  ``DECRC`` puts the cursor back where it was, also outside the scroll region; ``NEL``
  returns the carriage; ``IL`` and ``DL`` leave the cursor's column alone; moving the
  cursor up or down cancels a pending wrap;
- scroll up/down (``SU``/``SD``), save/restore cursor as ``CSI s``/``CSI u``, and ``HPA``
  (its final byte is a backtick; pyte expects an apostrophe);
- a margin-reset ``DECSTBM`` homes the cursor; ``CUU``/``CUD`` from outside the scroll
  region stop at the screen's edge, not at the region's;
- ``DL`` over blank lines leaves blanks (pyte keeps the old text there);
- a wide character that does not fit in the last column wraps first, and one that is
  half overwritten loses its other half; a zero-width character (a variation selector,
  a joiner) joins the cell before it instead of ending the text run it is in, and a
  combining mark is kept as it came (pyte NFC-composes it; ``screen.normalise`` does
  that for every comparison anyway);
- ``DECCOLM`` (``?3h``) does not resize the screen: the size is the terminal's;
- sequences pyte's parser misreads — CSI with a ``<``/``=``/``>`` prefix (keyboard
  protocols: ``CSI > 1 u`` would restore the cursor) or with intermediates (``CSI ! p``
  would print ``p``), and DCS/APC/PM/SOS strings — are removed before parsing. None
  of them draws anything.

Colours and attributes are kept by pyte but not read: screens are compared as text.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from typing import Any, ClassVar

import pyte
from pyte import modes
from pyte.screens import Char, Cursor, Margins
from wcwidth import wcwidth

# Private modes (pyte shifts them by 5) that switch to the alternate screen.
_ALT_1049 = 1049 << 5  # save the cursor, switch, clear; back: restore the cursor
_ALT_1047 = 1047 << 5  # switch; back: clear the alternate screen first
_ALT_47 = 47 << 5  # switch
_ALT_MODES = frozenset({_ALT_1049, _ALT_1047, _ALT_47})
_APP_CURSOR = 1 << 5  # DECCKM: arrow keys send ESC O x

_UNDRAWN = re.compile(
    rb"\x1b\[[<=>][0-?]*[ -/]*[@-~]"  # CSI < … / = … / > …
    rb"|\x1b\[[0-?]*[!-#%-/][ -/]*[@-~]"  # CSI with intermediates (pyte reads SP and $ itself)
    rb"|\x1b[P_^X][^\x07\x1b]*(?:\x1b\\|\x07)"  # DCS, APC, PM, SOS … ST
)
_UNFINISHED_CSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*)?")
_STRING_STARTS = (b"\x1bP", b"\x1b_", b"\x1b^", b"\x1bX")
# An unterminated string longer than this is no control string we know; pyte gets it.
MAX_HELD = 64 * 1024
MAX_STYLES = 256  # colour/attribute combinations whose cells are kept for reuse


class _Sanitizer:
    """Removes what pyte would misread (see the module doc), across chunk boundaries: an
    unfinished sequence at the end of a chunk waits for the next one."""

    def __init__(self) -> None:
        self._held = b""

    def __call__(self, data: bytes) -> bytes:
        if self._held:
            data = self._held + data
            self._held = b""
        if b"\x1b" not in data:
            return data
        data = _UNDRAWN.sub(b"", data)
        cut = max(data.rfind(s) for s in _STRING_STARTS)
        if cut < 0:
            cut = data.rfind(b"\x1b")
            if cut >= 0 and _UNFINISHED_CSI.fullmatch(data, cut) is None:
                cut = -1
        if cut >= 0 and len(data) - cut <= MAX_HELD:
            self._held = data[cut:]
            data = data[:cut]
        return data


class _Cells(dict[str, Char]):
    """``Char``s of one style, made once per character."""

    __slots__ = ("style",)

    def __init__(self, style: tuple[Any, ...]) -> None:
        super().__init__()
        self.style = style

    def __missing__(self, ch: str) -> Char:
        cell = self[ch] = tuple.__new__(Char, (ch, *self.style))
        return cell


class _Screen(pyte.Screen):
    """pyte's screen with the fixes listed in the module doc."""

    def __init__(self, columns: int, lines: int) -> None:
        self._cells: dict[tuple[Any, ...], _Cells] = {}
        self._main: Any = None  # the main screen's grid while the alternate one is shown
        self._alt_cursor: Cursor | None = None  # where ``?1049h`` found the cursor
        super().__init__(columns, lines)

    def reset(self) -> None:
        self._main = None
        self._alt_cursor = None
        super().reset()

    # -- the alternate screen ------------------------------------------------------------

    def _blank_grid(self) -> Any:
        return defaultdict(self.buffer.default_factory)

    def set_mode(self, *modes_: int, **kwargs: Any) -> None:
        if kwargs.get("private"):
            wanted = [m << 5 for m in modes_]
            alt = [m for m in wanted if m in _ALT_MODES]
            if alt and self._main is None:
                if _ALT_1049 in alt:
                    self._alt_cursor = copy.copy(self.cursor)
                self._main, self.buffer = self.buffer, self._blank_grid()
                self.dirty.update(range(self.lines))
            modes_ = tuple(m for m in modes_ if (m << 5) not in _ALT_MODES and m << 5 != modes.DECCOLM)
            if not modes_:
                return
        super().set_mode(*modes_, **kwargs)

    def reset_mode(self, *modes_: int, **kwargs: Any) -> None:
        if kwargs.get("private"):
            wanted = [m << 5 for m in modes_]
            alt = [m for m in wanted if m in _ALT_MODES]
            if alt and self._main is not None:
                self.buffer, self._main = self._main, None
                self.dirty.update(range(self.lines))
            if _ALT_1049 in alt and self._alt_cursor is not None:
                # Also when the alternate screen was not on (tmux does the same).
                self.cursor = copy.copy(self._alt_cursor)
                self.ensure_hbounds()
                self.ensure_vbounds()
            modes_ = tuple(m for m in modes_ if (m << 5) not in _ALT_MODES and m << 5 != modes.DECCOLM)
            if not modes_:
                return
        super().reset_mode(*modes_, **kwargs)

    # -- what pyte's CSI table lacks -------------------------------------------------------

    def scroll_up(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """SU: the scroll region's lines move up; blank lines come in at its bottom."""
        if kwargs.get("private"):
            return
        top, bottom = self.margins or Margins(0, self.lines - 1)
        for _ in range(min(count or 1, bottom - top + 1)):
            for y in range(top, bottom):
                self.buffer[y] = self.buffer[y + 1]
            self.buffer.pop(bottom, None)
        self.dirty.update(range(top, bottom + 1))

    def scroll_down(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """SD: the scroll region's lines move down; blank lines come in at its top."""
        if kwargs.get("private"):
            return
        top, bottom = self.margins or Margins(0, self.lines - 1)
        for _ in range(min(count or 1, bottom - top + 1)):
            for y in range(bottom, top, -1):
                self.buffer[y] = self.buffer[y - 1]
            self.buffer.pop(top, None)
        self.dirty.update(range(top, bottom + 1))

    def save_cursor_sco(self, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("private"):
            self.save_cursor()

    def restore_cursor_sco(self, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("private"):
            self.restore_cursor()

    # -- where pyte differs from a real terminal --------------------------------------------

    def save_cursor(self) -> None:
        # One slot, not a stack: a second DECRC restores the same place again.
        self.savepoints.clear()
        super().save_cursor()

    def restore_cursor(self) -> None:
        if not self.savepoints:
            super().restore_cursor()  # nothing saved: home
            return
        saved = self.savepoints[-1]
        self.g0_charset, self.g1_charset, self.charset = saved.g0_charset, saved.g1_charset, saved.charset
        if saved.origin:
            self.set_mode(modes.DECOM)
        if saved.wrap:
            self.set_mode(modes.DECAWM)
        # Where it was, even outside the scroll region (pyte moves it into the region).
        self.cursor = copy.copy(saved.cursor)
        self.ensure_hbounds()
        self.ensure_vbounds()

    def next_line(self) -> None:
        """NEL: a line feed and a carriage return (pyte's is a bare line feed)."""
        self.index()
        self.carriage_return()

    def insert_lines(self, count: int | None = None) -> None:
        x = self.cursor.x
        super().insert_lines(count)
        self.cursor.x = x  # the column stays (pyte returns to the first)

    def set_margins(self, top: int | None = None, bottom: int | None = None) -> None:
        super().set_margins(top, bottom)
        if self.margins is None:
            self.cursor_position()  # homes the cursor like any DECSTBM

    def cursor_up(self, count: int | None = None) -> None:
        top = self.margins.top if self.margins is not None and self.cursor.y >= self.margins.top else 0
        self.cursor.y = max(self.cursor.y - (count or 1), top)
        self.ensure_hbounds()  # a wrap that was pending is not any more

    def cursor_down(self, count: int | None = None) -> None:
        inside = self.margins is not None and self.cursor.y <= self.margins.bottom
        bottom = self.margins.bottom if inside and self.margins is not None else self.lines - 1
        self.cursor.y = min(self.cursor.y + (count or 1), bottom)
        self.ensure_hbounds()

    def cursor_to_line(self, line: int | None = None) -> None:
        super().cursor_to_line(line)
        self.ensure_hbounds()

    def delete_lines(self, count: int | None = None) -> None:
        count = count or 1
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if not top <= self.cursor.y <= bottom:
            return
        self.dirty.update(range(self.cursor.y, self.lines))
        for y in range(self.cursor.y, bottom + 1):
            moved = self.buffer.pop(y + count, None) if y + count <= bottom else None
            if moved is not None:
                self.buffer[y] = moved
            else:
                self.buffer.pop(y, None)

    def draw(self, data: str) -> None:
        """Print ``data`` at the cursor, as a terminal does (pyte's own ``draw`` stops at
        a zero-width character that does not combine, puts a wide one into the last
        column, and builds each cell with ``NamedTuple._replace``, which made it four
        times slower than this)."""
        data = data.translate(self.g1_charset if self.charset else self.g0_charset)
        cursor = self.cursor
        cols = self.columns
        x = cursor.x
        line = self.buffer[cursor.y]
        cells = self._cells_like(cursor.attrs)
        autowrap = modes.DECAWM in self.mode
        inserting = modes.IRM in self.mode
        if 0 < x < cols and line[x].data == "" and _wide(line[x - 1].data):
            line[x - 1] = cells[" "]  # its second half is about to go
        n = len(data)
        if x + n <= cols and not inserting and data.isascii() and data.isprintable():
            # Most of what agents print: plain text that fits on the line.
            line.update(zip(range(x, x + n), map(cells.__getitem__, data), strict=True))
            data = ""
            x += n
        for ch in data:
            w = 1 if " " <= ch < "\x7f" else wcwidth(ch)
            if w <= 0:
                if w == 0:  # a combining mark, a variation selector, a joiner
                    self._join_previous(line, x, ch)
                continue  # a control character: nothing to print
            if x + w > cols:
                if autowrap:
                    cursor.x = x
                    self.carriage_return()
                    self.linefeed()
                    line = self.buffer[cursor.y]
                    x = 0
                else:
                    x = cols - w
            if inserting:
                cursor.x = x
                self.insert_characters(w)
            line[x] = cells[ch]
            if w == 2 and x + 1 < cols:
                line[x + 1] = cells[""]
            x += w
        cursor.x = x
        if x < cols and line[x].data == "" and not _wide(line[x - 1].data if x else ""):
            line[x] = cells[" "]  # the second half of a wide character we overwrote
        self.dirty.add(cursor.y)

    def _cells_like(self, attrs: Char) -> _Cells:
        """Cells (immutable, so shared) of each character with these attributes."""
        key = tuple(attrs)[1:]
        cells = self._cells.get(key)
        if cells is None:
            if len(self._cells) >= MAX_STYLES:
                self._cells.clear()
            cells = self._cells[key] = _Cells(key)
        return cells

    @staticmethod
    def _join_previous(line: Any, x: int, ch: str) -> None:
        x -= 1
        if x > 0 and line[x].data == "":
            x -= 1  # the second half of a wide character: its first half is the cell
        if x >= 0:
            cell = line[x]
            line[x] = cell._replace(data=cell.data + ch)


def _wide(text: str) -> bool:
    return bool(text) and wcwidth(text[0]) == 2


class _Stream(pyte.ByteStream):
    escape: ClassVar[dict[str, str]] = {**pyte.ByteStream.escape, "E": "next_line"}
    csi: ClassVar[dict[str, str]] = {**pyte.ByteStream.csi, "S": "scroll_up", "T": "scroll_down",
                                     "s": "save_cursor_sco", "u": "restore_cursor_sco",
                                     "`": "cursor_to_column"}
    events = pyte.ByteStream.events | frozenset(
        {"scroll_up", "scroll_down", "save_cursor_sco", "restore_cursor_sco", "next_line"})


class TerminalScreen:
    """A terminal of ``cols`` x ``rows``, fed the bytes a program wrote to it."""

    def __init__(self, cols: int = 120, rows: int = 40) -> None:
        self.cols = max(2, cols)
        self.rows = max(2, rows)
        self._screen = _Screen(self.cols, self.rows)
        self._stream = _Stream(self._screen)
        self._sanitize = _Sanitizer()

    def feed(self, data: bytes) -> None:
        self._stream.feed(self._sanitize(data))

    def lines(self) -> list[str]:
        """The screen, right-stripped, without the blank rows at its bottom."""
        rows = [self._row(y) for y in range(self.rows)]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def lines_to_cursor(self) -> list[str]:
        """The rows down to the cursor's (see ``TmuxServer.capture_to_cursor``)."""
        return [self._row(y) for y in range(self.cursor_row + 1)]

    def _row(self, y: int) -> str:
        # pyte's ``display`` without its assertion: the cell after a wide character is
        # its second half, whatever was drawn there since.
        line = self._screen.buffer[y]
        out: list[str] = []
        second_half = False
        for x in range(self.cols):
            if second_half:
                second_half = False
                continue
            text = line[x].data
            out.append(text)
            second_half = _wide(text)
        return "".join(out).rstrip()

    @property
    def cursor_row(self) -> int:
        return min(self._screen.cursor.y, self.rows - 1)

    @property
    def app_cursor(self) -> bool:
        """Whether the program asked for application cursor keys (``ESC [ ? 1 h``)."""
        return _APP_CURSOR in self._screen.mode


def render_output(data: bytes, cols: int = 120, rows: int = 40) -> list[str]:
    """The screen a terminal of ``cols`` x ``rows`` would show after ``data``."""
    term = TerminalScreen(cols, rows)
    term.feed(data)
    return term.lines()
