#!/usr/bin/env python3
"""The terminal model of wrapped and spawned sessions: how fast, and how close to tmux.

Every byte a wrapped or spawned agent prints goes through the model
(``telepty.delivery.terminal_screen``, pyte underneath), on the daemon's event loop,
so its speed per MiB is a cost every session pays. Rows, each fed in 4 KiB chunks to a
120x40 model:

  ink frames       what Claude Code and Gemini CLI draw: erase the last frame line by
                   line, redraw it (box drawing, colours, a spinner line)
  ratatui diff     what Codex draws: cursor moves and the few cells that changed, now
                   and then history printed into a scroll region
  transcript       plain lines of text with wide characters, scrolling
  recorded AGENT   tests/realagents/streams: the real CLIs' output (small: repeated)

  MiB  s  MiB/s  s/MiB   (s/MiB is the event loop time one MiB of output costs)

``--against-tmux N`` also renders N random streams (text with wide and zero-width
characters, cursor moves, erases, inserts and deletes, scroll regions, scrolling,
saves and restores, the alternate screen) in real tmux panes and counts the screens
that differ from the model's. Left out of the streams, as places where tmux and xterm
themselves disagree: line inserts/deletes while a scroll region is set (tmux acts on
the whole screen outside it), moving back right after printing in the last column.

Run: .venv/bin/python scripts/bench/screen_model.py [--against-tmux 100] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from telepty.delivery.terminal_screen import TerminalScreen  # noqa: E402

CHUNK = 4096
STREAMS = ROOT / "tests" / "realagents" / "streams"


def ink_frames(n: int = 400, cols: int = 120) -> bytes:
    r = random.Random(1)
    out = []
    for i in range(n):
        out.append(b"\x1b[2K\x1b[1A" * 12 + b"\x1b[2K\x1b[G")
        lines = [f"\x1b[38;5;{r.randint(0, 255)}m● \x1b[1mTool\x1b[22m(read file {i})\x1b[39m",
                 "╭" + "─" * (cols - 2) + "╮", "│ > " + "typed text " * (i % 5) + " " * 10 + "│",
                 "╰" + "─" * (cols - 2) + "╯", f"  \x1b[2m✻ Thinking… ({i}s · esc to interrupt)\x1b[22m"]
        out.append("\r\n".join(lines * 2 + lines[:2]).encode() + b"\r\n")
    return b"".join(out)


def ratatui_diff(n: int = 20000, cols: int = 120, rows: int = 40) -> bytes:
    r = random.Random(2)
    out = []
    for i in range(n):
        y, x = r.randint(1, rows), r.randint(1, cols - 20)
        text = "working "[: r.randint(1, 8)]
        out.append(f"\x1b[{y};{x}H\x1b[38;5;{r.randint(0, 255)}m{text}\x1b[39m".encode())
        if i % 50 == 0:
            out.append(f"\x1b[1;{rows - 3}r\x1b[{rows - 3};1H\r\nhistory line {i} › ask\x1b[r".encode())
    return b"".join(out)


def transcript(n: int = 6000) -> bytes:
    r = random.Random(3)
    words = ["the", "parser", "module", "refactor", "日本語", "✓", "`code`", "→"]
    return b"".join((" ".join(r.choice(words) for _ in range(14)) + "\r\n").encode() for _ in range(n))


def recorded(agent: str, at_least: int = 1 << 20) -> bytes:
    data = (STREAMS / f"{agent}.bin").read_bytes()
    return data * max(1, at_least // len(data))


def speed(name: str, data: bytes) -> None:
    term = TerminalScreen(120, 40)
    t0 = time.perf_counter()
    for i in range(0, len(data), CHUNK):
        term.feed(data[i:i + CHUNK])
    term.lines()
    dt = time.perf_counter() - t0
    mib = len(data) / (1 << 20)
    print(f"{name:18} {mib:6.2f} {dt:7.3f} {mib / dt:7.2f} {dt / mib:7.3f}")


# -- against tmux ------------------------------------------------------------------------

TEXTS = ["hello", "a", "word ", "日本", "テキスト", "│ box ─", "✓ok", "🚀", "é", "x" * 15, "⚠️", "〉", "› ask"]


def random_op(r: random.Random, cols: int, rows: int) -> bytes:
    k, n = r.randrange(28), r.randint(1, max(2, rows))
    if k < 8:
        return r.choice(TEXTS).encode()
    simple = {8: b"\r", 9: b"\n", 10: b"\r\n", 11: b"\x08", 12: b"\t"}
    if k in simple:
        return simple[k]
    if k == 13:
        return f"\x1b[{r.randint(1, rows)};{r.randint(1, cols)}H".encode()
    if k == 14:
        return f"\x1b[{n}{r.choice('ABCDEF')}".encode()
    if k == 15:
        if r.random() < 0.5:
            return f"\x1b[{r.randint(1, cols)}G".encode()
        return f"\x1b[{r.randint(1, rows)}d".encode()
    if k == 16:
        return f"\x1b[{r.randint(0, 2)}{r.choice('JK')}".encode()
    if k == 17:
        return f"\x1b[{r.randint(1, 5)}{r.choice('X@P')}".encode()
    if k == 18:
        return f"\x1b[{r.randint(1, 3)}{r.choice('LM')}".encode()
    if k == 19:
        if r.random() < 0.4:
            return b"\x1b[r"
        top = r.randint(1, rows - 1)
        return f"\x1b[{top};{r.randint(top + 1, rows)}r".encode()
    if k == 20:
        return r.choice([b"\x1bM", b"\x1bD", b"\x1bE"])
    if k == 21:
        return f"\x1b[{r.randint(1, 3)}{r.choice('ST')}".encode()
    if k == 22:
        return r.choice([b"\x1b7", b"\x1b8", b"\x1b[s", b"\x1b[u"])
    if k == 23:
        return r.choice([b"\x1b[?1049h", b"\x1b[?1049l"])
    if k == 24:
        return f"\x1b[{r.randint(0, 107)}m".encode()
    return r.choice([b"\x1b[>1u", b"\x1b[<u", b"\x1b[?2004h", b"\x1b[?25l", b"\x1b]0;t\x07",
                     b"\x1bP+q54\x1b\\"])


def random_stream(r: random.Random, cols: int, rows: int) -> bytes:
    parts: list[bytes] = []
    region = False
    for _ in range(r.randint(5, 40)):
        op = random_op(r, cols, rows)
        if op.startswith(b"\x1b[") and op.endswith(b"r"):
            region = op != b"\x1b[r"
        if region and op.startswith(b"\x1b[") and op[-1:] in (b"L", b"M"):
            continue  # tmux acts on the whole screen outside the region; xterm not at all
        if parts and op.startswith(b"\x1b[") and op.endswith(b"D") and not parts[-1].startswith(b"\x1b"):
            continue  # back from a pending wrap: tmux and xterm differ by one
        parts.append(op)
    return b"".join(parts)


def tmux_screen(tmux: Callable[..., str], folder: Path, name: str, data: bytes, cols: int,
                rows: int) -> tuple[list[str], int]:
    stream, done = folder / f"{name}.bin", folder / f"{name}.done"
    stream.write_bytes(data)
    tmux("new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows), "sh", "-c",
         f"stty -opost -echo; cat {shlex.quote(str(stream))}; : > {shlex.quote(str(done))}; exec sleep 600")
    tmux("set-option", "-t", name, "status", "off")
    tmux("resize-window", "-t", name, "-x", str(cols), "-y", str(rows))
    deadline = time.monotonic() + 10
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # cat is writing
    seen = None
    while True:
        time.sleep(0.02)  # tmux draws what cat wrote a moment later: two equal looks
        now = (tmux("capture-pane", "-p", "-t", name),
               tmux("display-message", "-p", "-t", name, "#{cursor_y}"))
        if now == seen:
            break
        seen = now
    tmux("kill-session", "-t", name)
    lines = [line.rstrip() for line in now[0].split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines, int(now[1])


def against_tmux(n: int, seed: int) -> None:
    r = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="telepty-vt-") as tmp:
        folder = Path(tmp)
        sock = str(folder / "tmux.sock")

        def tmux(*args: str) -> str:
            return subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", *args], capture_output=True,
                                  text=True, check=True, timeout=20).stdout

        tmux("new-session", "-d", "-s", "keep", "sleep", "100000")
        differ = 0
        try:
            for i in range(n):
                cols, rows = r.randint(8, 40), r.randint(3, 12)
                data = random_stream(r, cols, rows)
                want = tmux_screen(tmux, folder, f"s{i}", data, cols, rows)
                term = TerminalScreen(cols, rows)
                for k in range(0, len(data), 5):
                    term.feed(data[k:k + 5])
                if (term.lines(), term.cursor_row) != want:
                    differ += 1
                    print(f"  differs: {cols}x{rows} {data!r}\n    tmux  {want}\n    model "
                          f"{(term.lines(), term.cursor_row)}")
        finally:
            tmux("kill-server")
    print(f"against tmux: {n} random streams, {differ} screens differ (seed {seed})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against-tmux", type=int, default=0, metavar="N")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"{'stream':18} {'MiB':>6} {'s':>7} {'MiB/s':>7} {'s/MiB':>7}")
    speed("ink frames", ink_frames())
    speed("ratatui diff", ratatui_diff())
    speed("transcript", transcript())
    for agent in ("claude", "codex", "gemini"):
        speed(f"recorded {agent}", recorded(agent))
    if args.against_tmux:
        against_tmux(args.against_tmux, args.seed)


if __name__ == "__main__":
    main()
