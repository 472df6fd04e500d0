"""tmux failures reduced to the three codes the rest of telepty acts on.

The delivery engine does not care which tmux command failed or how tmux worded it; it
needs to know whether to give up on the session (``pane_dead``), to wait for tmux to
come back (``tmux_unavailable``), or to retry a transient failure (``tmux_cmd_failed``).
The stage and tmux's own words travel along for the record and for ``telepty explain``.
"""

from __future__ import annotations

import re
from typing import Literal

from telepty.errors import TeleptyError

TmuxErrorCode = Literal["pane_dead", "tmux_unavailable", "tmux_cmd_failed"]

PANE_DEAD: TmuxErrorCode = "pane_dead"
TMUX_UNAVAILABLE: TmuxErrorCode = "tmux_unavailable"
TMUX_CMD_FAILED: TmuxErrorCode = "tmux_cmd_failed"

# The target is gone. Pane ids are never reused by a running server, so this is final.
_PANE_GONE = (
    "can't find pane",
    "no such pane",
    "pane not found",
    "can't find window",
    "can't find session",
)
# The whole server is gone (or died under the command). A registered pane cannot
# outlive its server, so callers holding a pane id treat this as pane_dead too.
_SERVER_GONE = (
    "no server running",
    "server exited unexpectedly",
    "lost server",
)
_CONNECT_RE = re.compile(r"error connecting to .*\((?P<why>[^)]*)\)", re.IGNORECASE)
_CONNECT_GONE = ("no such file or directory", "connection refused")


class TmuxError(TeleptyError):
    """A failed tmux operation: stable ``code``, the ``stage`` it failed in, tmux's words.

    ``server_gone`` separates "this pane is gone" from "the whole server is gone" for
    callers that ask about the server rather than a pane (``list_panes`` returns []).
    """

    status = 503

    def __init__(
        self,
        code: TmuxErrorCode,
        detail: str,
        *,
        stage: str | None = None,
        returncode: int | None = None,
        server_gone: bool = False,
    ) -> None:
        super().__init__(code, detail)
        self.stage = stage
        self.returncode = returncode
        self.server_gone = server_gone

    def __str__(self) -> str:
        where = f" [{self.stage}]" if self.stage else ""
        return f"{self.code}{where}: {self.detail}"

    def to_dict(self) -> dict[str, str]:
        out = super().to_dict()
        if self.stage:
            out["stage"] = self.stage
        return out


def classify(stage: str | None, stderr: str, returncode: int | None) -> TmuxError:
    """Turn a failed tmux command's stderr and exit status into a ``TmuxError``."""
    text = (stderr or "").strip()
    lower = text.lower()
    if any(p in lower for p in _PANE_GONE):
        return TmuxError(PANE_DEAD, text, stage=stage, returncode=returncode)
    if any(p in lower for p in _SERVER_GONE):
        return TmuxError(
            PANE_DEAD,
            f"tmux server is not running, so the pane cannot exist ({text})",
            stage=stage,
            returncode=returncode,
            server_gone=True,
        )
    m = _CONNECT_RE.search(text)
    if m:
        why = m.group("why").lower()
        if any(w in why for w in _CONNECT_GONE):
            return TmuxError(
                PANE_DEAD,
                f"tmux server is not running, so the pane cannot exist ({text})",
                stage=stage,
                returncode=returncode,
                server_gone=True,
            )
        # The server may exist but we cannot reach it (permissions, wrong socket dir).
        return TmuxError(TMUX_UNAVAILABLE, text, stage=stage, returncode=returncode)
    detail = text or f"tmux exited with status {returncode}"
    return TmuxError(TMUX_CMD_FAILED, detail, stage=stage, returncode=returncode)
