"""A prompt_toolkit input line (as aider and other REPL-style agents use), for delivery tests.

``> `` prompt, bracketed paste (prompt_toolkit turns it on), Enter submits. Each
submission is appended to ``--out`` as a JSON line ``{"n": …, "text": …}``. A paste much
taller than the screen scrolls the ``> `` line itself out of view: that is the case it is
here for.
"""

from __future__ import annotations

import argparse
import json

from prompt_toolkit import PromptSession


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    session: PromptSession[str] = PromptSession()
    n = 0
    while True:
        try:
            text = session.prompt("> ")
        except EOFError:
            return 0
        except KeyboardInterrupt:
            continue
        n += 1
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"n": n, "text": text}) + "\n")
        print(f"got {len(text)} characters")


if __name__ == "__main__":
    raise SystemExit(main())
