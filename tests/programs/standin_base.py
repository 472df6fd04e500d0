"""The common part of the agent stand-ins: a small full-screen TUI with a composer.

Each stand-in (``standin_*.py``) reproduces one way a real agent CLI loses a prompt, and
draws a screen close enough to the real one that telepty's *shipped* profile patterns
read it (``--style codex``: ``› …`` composer, ``• Working (… esc to interrupt)``;
``--style claude``: a box with ``│ > …``, ``✻ Thinking… (esc to interrupt)``,
``[Pasted text #1 +12 lines]``, permission dialogs).

Everything it really did goes to ``--out`` as JSON lines, with the time it happened:
``{"n": 3, "text": "...", "t": ...}`` for each submitted prompt, ``{"event": ...}``
for everything else (an Enter that became a newline, an Enter swallowed, a dialog
answered, a paste that landed in a dialog). Tests assert on this file, never on what
the daemon says.

Terminal handling: raw mode, bracketed paste on, one ``os.write`` per frame (so a
capture never sees half a frame more often than a real TUI would allow).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import signal
import struct
import sys
import termios
import time
import tty
from dataclasses import dataclass, field

START, END = b"\x1b[200~", b"\x1b[201~"
_KEYS = {
    b"\x1b[A": "Up", b"\x1b[B": "Down", b"\x1b[C": "Right", b"\x1b[D": "Left",
    b"\x1bOA": "Up", b"\x1bOB": "Down", b"\x1bOC": "Right", b"\x1bOD": "Left",
}


def base_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", required=True, help="JSON-lines log of what really happened")
    ap.add_argument("--style", choices=["codex", "claude"], default="codex")
    ap.add_argument("--busy-ms", type=int, default=0,
                    help="after a submission, show a busy spinner this long")
    ap.add_argument("--busy-file", help="while this file exists, show a (static) busy line")
    ap.add_argument("--exit-file", help="exit (back to whatever started us) once this file exists")
    ap.add_argument("--placeholder-lines", type=int, default=0,
                    help="pastes with more lines than this show as [Pasted text #N +L lines] (0: never)")
    return ap


@dataclass
class Composer:
    real: str = ""  # what a submission would send
    view: str = ""  # what is drawn (placeholders instead of long pastes)

    def add(self, real: str, view: str | None = None) -> None:
        self.real += real
        self.view += real if view is None else view

    def clear(self) -> None:
        self.real = self.view = ""


@dataclass
class Dialog:
    number: int
    command: str
    options: tuple[str, ...] = ("Yes", "No, and tell Claude what to do differently (esc)")
    selected: int = 0


@dataclass
class StandIn:
    args: argparse.Namespace
    composer: Composer = field(default_factory=Composer)
    transcript: list[str] = field(default_factory=list)
    dialog: Dialog | None = None
    last_paste_end: float = -1e9
    busy_until: float = 0.0
    submissions: int = 0
    pastes: int = 0
    dialogs: int = 0
    cols: int = 80
    rows: int = 24
    _pending: bytes = b""
    _in_paste: bool = False
    _paste: bytes = b""
    _fd: int = 0
    _frame: str = ""

    # -- hooks the stand-ins override ------------------------------------------------------

    def on_enter(self, now: float) -> None:
        self.submit()

    def after_submit(self, text: str) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    # -- what happened ---------------------------------------------------------------------

    def log(self, **fields: object) -> None:
        with open(self.args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps({**fields, "t": time.time()}) + "\n")

    def submit(self) -> None:
        text = self.composer.real
        if not text.strip():
            self.log(event="empty_enter")  # real agents ignore an Enter on an empty composer
            return
        self.submissions += 1
        self.log(n=self.submissions, text=text)
        first = text.split("\n", 1)[0]
        mark = "›" if self.args.style == "codex" else ">"
        self.transcript.append(f"{mark} {first[:60]}")
        answer = "• Done" if self.args.style == "codex" else "⏺ Done"
        self.transcript.append(f"{answer} ({self.submissions}: {len(text)} chars)")
        self.composer.clear()
        if self.args.busy_ms:
            self.busy_until = time.monotonic() + self.args.busy_ms / 1000.0
        self.after_submit(text)

    # -- drawing ---------------------------------------------------------------------------

    def _size(self) -> None:
        try:
            rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(self._fd, termios.TIOCGWINSZ, b"\0" * 8))
            if rows and cols:
                self.rows, self.cols = rows, cols
        except OSError:
            pass

    def _wrap(self, text: str, width: int) -> list[str]:
        out: list[str] = []
        for line in text.split("\n"):
            while len(line) > width:
                out.append(line[:width])
                line = line[width:]
            out.append(line)
        return out

    def bottom(self) -> list[str]:
        """The input box (or the dialog that replaces it) and the footer."""
        w = self.cols - 1
        if self.dialog is not None:
            return self._dialog_lines(w)
        busy = time.monotonic() < self.busy_until
        static = bool(self.args.busy_file) and os.path.exists(self.args.busy_file)
        elapsed = "" if static else f"{int(time.monotonic() * 10) % 10}s · "
        if self.args.style == "codex":
            lines = []
            if busy or static:
                lines.append(f"• Working ({elapsed}esc to interrupt)")
            view = self._wrap(self.composer.view, w - 3) if self.composer.view else []
            if not view:
                lines.append("› Ask Codex to do anything")
            else:
                lines.append("› " + view[0])
                lines.extend("  " + v for v in view[1:])
            lines += ["", "  ⏎ send   ⌃J newline   ⌃C quit"]
            return lines
        inner = w - 4
        lines = []
        if busy or static:
            lines.append(f"✻ Thinking… ({elapsed}esc to interrupt)")
        view = self._wrap(self.composer.view, inner - 2) if self.composer.view else []
        rows = ["> " + view[0], *("  " + v for v in view[1:])] if view else ['> Try "refactor <filepath>"']
        lines.append("╭" + "─" * (w - 2) + "╮")
        lines.extend("│ " + r.ljust(inner) + " │" for r in rows)
        lines.append("╰" + "─" * (w - 2) + "╯")
        lines.append("  ? for shortcuts")
        return lines

    def _dialog_lines(self, w: int) -> list[str]:
        d = self.dialog
        assert d is not None
        inner = w - 4
        rows = ["Bash command", "", f"  {d.command}", "", "Do you want to proceed?"]
        for i, opt in enumerate(d.options):
            rows.append(f"{'❯' if i == d.selected else ' '} {i + 1}. {opt}")
        return (["╭" + "─" * (w - 2) + "╮"] + ["│ " + r[:inner].ljust(inner) + " │" for r in rows]
                + ["╰" + "─" * (w - 2) + "╯"])

    def draw(self) -> None:
        bottom = self.bottom()
        room = max(0, self.rows - 1 - len(bottom) - 1)
        top = [t[: self.cols - 1] for t in self.transcript[-room:]] if room else []
        lines = [*top, "", *bottom]
        frame = "\x1b[H\x1b[2J" + "\r\n".join(lines)
        if frame != self._frame:
            self._frame = frame
            os.write(1, frame.encode("utf-8"))

    # -- input -----------------------------------------------------------------------------

    def on_paste(self, data: bytes, now: float) -> None:
        text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").decode("utf-8", errors="replace")
        if self.dialog is not None:
            # What the real thing risks: a paste read as answers to the menu.
            self.log(event="dialog_corrupted", dialog=self.dialog.number, data=text[:200])
            self.answer(len(self.dialog.options) - 1)
            return
        self.pastes += 1
        limit = self.args.placeholder_lines
        lines = text.count("\n") + 1
        if limit and lines > limit:
            self.composer.add(text, f"[Pasted text #{self.pastes} +{lines} lines]")
        else:
            self.composer.add(text)
        self.last_paste_end = now

    def on_key(self, key: str, now: float) -> None:
        d = self.dialog
        if d is not None:
            if key == "Up":
                d.selected = max(0, d.selected - 1)
            elif key == "Down":
                d.selected = min(len(d.options) - 1, d.selected + 1)
            elif key == "Enter":
                self.answer(d.selected)
            elif key in ("1", "2"):
                self.answer(int(key) - 1)
            elif key == "Escape":
                self.answer(len(d.options) - 1)
            else:
                self.log(event="dialog_stray_key", key=key)
            return
        if key == "Enter":
            self.on_enter(now)
        elif key == "BSpace":
            self.composer.real = self.composer.real[:-1]
            self.composer.view = self.composer.view[:-1]
        elif key == "C-u":
            self.composer.clear()
        elif key == "Escape":
            pass
        elif len(key) == 1:
            self.composer.add(key)

    def show_dialog(self, command: str) -> None:
        self.dialogs += 1
        self.dialog = Dialog(self.dialogs, command)
        self.log(event="dialog_shown", dialog=self.dialogs)

    def answer(self, index: int) -> None:
        d = self.dialog
        assert d is not None
        self.dialog = None
        choice = "yes" if index == 0 else "no"
        self.log(event="dialog_answer", dialog=d.number, choice=choice)
        self.transcript.append(f"⏺ Bash({d.command}) {'ran' if choice == 'yes' else 'declined'}")

    def feed(self, chunk: bytes, now: float) -> None:
        self._pending += chunk
        while self._pending:
            p = self._pending
            if self._in_paste:
                i = p.find(END)
                if i < 0:
                    keep = max(0, len(p) - len(END) + 1)
                    self._paste += p[:keep]
                    self._pending = p[keep:]
                    return
                self._paste += p[:i]
                self._pending = p[i + len(END):]
                self._in_paste = False
                data, self._paste = self._paste, b""
                self.on_paste(data, now)
                continue
            if p.startswith(START):
                self._in_paste = True
                self._pending = p[len(START):]
                continue
            if p[:1] == b"\x1b":
                if len(p) < len(START) and START.startswith(p):
                    return  # a paste marker split across reads
                seq = next((s for s in _KEYS if p.startswith(s)), None)
                if seq is not None:
                    self._pending = p[len(seq):]
                    self.on_key(_KEYS[seq], now)
                    continue
                self._pending = p[1:]
                self.on_key("Escape", now)
                continue
            b = p[:1]
            self._pending = p[1:]
            if b == b"\r" or b == b"\n":
                self.on_key("Enter", now)
            elif b == b"\x7f":
                self.on_key("BSpace", now)
            elif b == b"\x15":
                self.on_key("C-u", now)
            elif b == b"\x03":
                raise SystemExit(0)
            else:
                # multi-byte UTF-8: take the whole character
                n = 1
                if b[0] >= 0xC0:
                    n = 2 if b[0] < 0xE0 else 3 if b[0] < 0xF0 else 4
                raw = b + self._pending[: n - 1]
                self._pending = self._pending[n - 1:]
                self.on_key(raw.decode("utf-8", errors="replace"), now)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        self._fd = sys.stdin.fileno()
        saved = termios.tcgetattr(self._fd) if os.isatty(self._fd) else None
        if saved is not None:
            tty.setraw(self._fd)
        signal.signal(signal.SIGWINCH, lambda *_: self._size())
        self._size()
        os.write(1, b"\x1b[?2004h")
        self.log(event="started", pid=os.getpid())
        try:
            while True:
                if self.args.exit_file and os.path.exists(self.args.exit_file):
                    self.log(event="exiting")
                    return 0
                now = time.monotonic()
                self.tick(now)
                self.draw()
                try:
                    r, _, _ = select.select([self._fd], [], [], 0.01)
                except InterruptedError:
                    continue
                if not r:
                    continue
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    return 0
                self.feed(chunk, time.monotonic())
                self.draw()
        finally:
            os.write(1, b"\x1b[?2004l\x1b[H\x1b[2J")
            if saved is not None:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)
