"""A stand-in for an agent CLI's composer, for end-to-end delivery tests.

It does what the real ones do that matters to delivery: raw mode, bracketed paste
enabled, text pasted between ESC[200~ and ESC[201~ is composed (newlines included),
and an Enter outside a paste submits. Each submission is appended to a JSON-lines
file, so a test can assert exactly what was submitted, and how many times.

Options:
  --out FILE         where submissions go (required)
  --raw-out FILE     also append every byte read from stdin
  --busy-until FILE  print a ticker every 50 ms until FILE exists (a busy agent), then
                     log {"event": "busy_ended", "t": …} to --out
  --no-bracketed     do not enable bracketed paste
  --log-pastes       log {"event": "paste", "t": …} when a bracketed paste starts
  --echo             show the composer's last line after the prompt, as real agents do;
                     Ctrl-U then clears the composer
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import termios
import time
import tty

START, END = b"\x1b[200~", b"\x1b[201~"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--raw-out")
    ap.add_argument("--busy-until")
    ap.add_argument("--no-bracketed", action="store_true")
    ap.add_argument("--echo", action="store_true")
    ap.add_argument("--log-pastes", action="store_true")
    args = ap.parse_args()

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    if saved is not None:
        tty.setraw(fd)
    out = sys.stdout.buffer
    try:
        if args.busy_until:
            n = 0
            while not os.path.exists(args.busy_until):
                n += 1
                out.write(f"working {n}\r\n".encode())
                out.flush()
                time.sleep(0.05)
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps({"event": "busy_ended", "t": time.time()}) + "\n")
        if not args.no_bracketed:
            out.write(b"\x1b[?2004h")
        out.write(b"ready> ")
        out.flush()
        pending = b""
        composer = b""
        in_paste = False
        submissions = 0
        while True:
            r, _, _ = select.select([fd], [], [], 1.0)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return 0
            if args.raw_out:
                with open(args.raw_out, "ab") as f:
                    f.write(chunk)
            pending += chunk
            while pending:
                if in_paste:
                    i = pending.find(END)
                    if i < 0:
                        # keep a possible partial end marker for the next read
                        keep = max(0, len(pending) - len(END) + 1)
                        composer += pending[:keep]
                        pending = pending[keep:]
                        break
                    composer += pending[:i]
                    pending = pending[i + len(END):]
                    in_paste = False
                    continue
                if pending.startswith(START):
                    if args.log_pastes:
                        with open(args.out, "a", encoding="utf-8") as f:
                            f.write(json.dumps({"event": "paste", "t": time.time()}) + "\n")
                    in_paste = True
                    pending = pending[len(START):]
                    continue
                if START.startswith(pending[:len(START)]) and len(pending) < len(START):
                    break  # partial start marker
                b = pending[:1]
                pending = pending[1:]
                if b in (b"\r", b"\n"):
                    submissions += 1
                    text = composer.replace(b"\r", b"\n").decode("utf-8", errors="replace")
                    with open(args.out, "a", encoding="utf-8") as f:
                        f.write(json.dumps({"n": submissions, "text": text, "t": time.time()}) + "\n")
                    out.write(f"\r\nsubmitted {submissions} ({len(composer)} bytes)\r\nready> ".encode())
                    out.flush()
                    composer = b""
                elif b == b"\x04" and not composer:
                    return 0
                elif b == b"\x15" and args.echo:
                    composer = b""
                else:
                    composer += b
            if args.echo:
                shown = composer.replace(b"\r", b"\n").split(b"\n")[-1][-60:]
                out.write(b"\r\x1b[Kready> " + shown)
                out.flush()
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    sys.exit(main())
