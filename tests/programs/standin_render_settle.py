"""Stand-in 2: an Enter arriving before the paste has finished rendering is swallowed.

Like Claude Code's renderer: for ``--settle-ms`` after a paste the input box is still
being redrawn, and an Enter in that time is lost (not a newline, not a submission: the
text just stays in the composer). Long pastes show as ``[Pasted text #N +L lines]``
(``--placeholder-lines``), the way Claude shows them.
"""

from __future__ import annotations

import sys

from standin_base import StandIn, base_parser


class RenderSettle(StandIn):
    def on_enter(self, now: float) -> None:
        if now - self.last_paste_end < self.args.settle_ms / 1000.0:
            self.log(event="enter_swallowed", after_ms=round((now - self.last_paste_end) * 1000, 1))
            return
        self.submit()


def main() -> int:
    ap = base_parser(__doc__ or "")
    ap.add_argument("--settle-ms", type=int, default=300)
    ap.set_defaults(style="claude")
    return RenderSettle(ap.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
