"""Stand-in 1: keys arriving within ``--burst-ms`` of a paste are part of the paste.

Like Codex: an Enter that arrives too soon after the pasted text (the same read, or a
few milliseconds later) is taken as one more line of the paste, so the prompt is *not*
submitted; it sits in the composer with a trailing newline. Only an Enter arriving
after the window submits. Without the right settle delay nothing gets submitted.
"""

from __future__ import annotations

import sys

from standin_base import StandIn, base_parser


class PasteBurst(StandIn):
    def on_enter(self, now: float) -> None:
        if now - self.last_paste_end < self.args.burst_ms / 1000.0:
            self.composer.add("\n")
            self.log(event="enter_as_newline", after_ms=round((now - self.last_paste_end) * 1000, 1))
            return
        self.submit()


def main() -> int:
    ap = base_parser(__doc__ or "")
    ap.add_argument("--burst-ms", type=int, default=120)
    return PasteBurst(ap.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
