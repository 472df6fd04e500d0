"""Stand-in 4: an agent that exits back to the shell that started it.

Runs like any composer (``--style codex``) until ``--exit-file`` appears, then exits.
Started from an interactive shell, it leaves that bare shell in the pane: anything
pasted there now would run as a command line, which is exactly what telepty must
refuse (``agent_exited``).
"""

from __future__ import annotations

import sys

from standin_base import StandIn, base_parser


def main() -> int:
    ap = base_parser(__doc__ or "")
    return StandIn(ap.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
