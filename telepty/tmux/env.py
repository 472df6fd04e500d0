"""What ``$TMUX`` and ``$TMUX_PANE`` say about the tmux a program runs in.

tmux sets ``TMUX=socket_path,server_pid,session_index`` in every pane. The socket
path is what lets telepty talk to the right server when several run, and it may itself
contain commas, while the last two fields never do: so the value is split from the
right. The one parser of it; the wrapper, the CLI and :class:`~telepty.tmux.TmuxServer`
all read ``$TMUX`` through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["TmuxEnv", "parse_tmux_env"]


@dataclass(frozen=True, slots=True)
class TmuxEnv:
    """Where a process inside tmux is: its server's socket and, when known, its pane."""

    socket_path: str
    pane: str | None = None  # ``%N`` from $TMUX_PANE

    @classmethod
    def of(cls, env: Mapping[str, str]) -> TmuxEnv | None:
        """The tmux ``env`` (an environment) runs in, or None outside tmux."""
        socket_path = parse_tmux_env(env.get("TMUX") or "")
        if socket_path is None:
            return None
        return cls(socket_path, env.get("TMUX_PANE") or None)


def parse_tmux_env(value: str) -> str | None:
    """The server socket path in a ``$TMUX`` value (None when empty: not inside tmux)."""
    path = value.rsplit(",", 2)[0] if value.count(",") >= 2 else value
    return path or None
