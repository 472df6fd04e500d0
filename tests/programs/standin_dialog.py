"""Stand-in 3: a permission dialog that only keys may answer.

After every ``--dialog-every``-th submission (and whenever ``--dialog-file`` appears)
it asks, the way Claude Code does, "Do you want to proceed?" with a menu
(``❯ 1. Yes`` / ``2. No, …``) that replaces the input box. Up/Down/Enter, 1/2 or
Escape answer it. A paste arriving while it is up is what must never happen: it is
logged as ``dialog_corrupted`` (and, like the real thing, taken as a "No").
"""

from __future__ import annotations

import os
import sys

from standin_base import StandIn, base_parser


class DialogAgent(StandIn):
    def after_submit(self, text: str) -> None:
        every = self.args.dialog_every
        if every and self.submissions % every == 0:
            self.show_dialog(f"rm -rf build/{self.submissions}")

    def tick(self, now: float) -> None:
        f = self.args.dialog_file
        if f and self.dialog is None and os.path.exists(f):
            os.unlink(f)
            self.show_dialog("git push --force")


def main() -> int:
    ap = base_parser(__doc__ or "")
    ap.add_argument("--dialog-every", type=int, default=0)
    ap.add_argument("--dialog-file")
    ap.set_defaults(style="claude")
    return DialogAgent(ap.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
