"""The person's own tmux servers, asked synchronously through libtmux: what the CLI needs.

The daemon talks to tmux asynchronously and keeps a control client per server
(:class:`~telepty.tmux.TmuxServer`). A CLI command (``telepty panes``,
``register-pane``, ``doctor``) asks one question and exits, so it asks through libtmux,
whose ``cmd()`` is the one place its commands run. Each failure becomes the same
:class:`~telepty.tmux.TmuxError` the daemon reports (``pane_dead``,
``tmux_unavailable``, ``tmux_cmd_failed``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

import libtmux
from libtmux.exc import LibTmuxException, TmuxCommandNotFound

from telepty.tmux.env import TmuxEnv
from telepty.tmux.errors import TMUX_UNAVAILABLE, TmuxError, classify
from telepty.tmux.server import PaneInfo

__all__ = ["UserTmux", "tmux_version", "user_sockets"]


def user_sockets(env: Mapping[str, str] = os.environ) -> list[str]:
    """Every tmux server socket of this user, plus the one we are inside, if any.

    tmux has no command that lists its servers: each is a socket in
    ``$TMUX_TMPDIR/tmux-UID`` (``-L NAME`` names one there), so the directory is read.
    """
    found: list[str] = []
    base = Path(env.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
    try:
        entries = sorted(base.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        try:
            if stat.S_ISSOCK(entry.stat().st_mode):
                found.append(str(entry))
        except OSError:
            continue
    inside = TmuxEnv.of(env)
    if inside is not None and inside.socket_path not in found:
        found.append(inside.socket_path)
    return found


def tmux_version(tmux_bin: str) -> str:
    """What ``tmux -V`` says (``tmux 3.4``); TmuxError when it cannot be run."""
    try:
        out = libtmux.common.tmux_cmd("-V", tmux_bin=tmux_bin)
    except (TmuxCommandNotFound, OSError) as exc:
        raise TmuxError(TMUX_UNAVAILABLE, f"{tmux_bin} -V failed: {exc}", stage="version") from None
    return " ".join(out.stdout or out.stderr).strip() or "unknown version"


class UserTmux:
    """One of the person's tmux servers: ``socket_path``, or tmux's default one (None)."""

    def __init__(self, socket_path: str | None = None, tmux_bin: str = "tmux") -> None:
        self.server = libtmux.Server(socket_path=socket_path or None, tmux_bin=tmux_bin)
        self.tmux_bin = tmux_bin

    def _cmd(self, stage: str, *args: str) -> list[str]:
        try:
            result = self.server.cmd(*args)
        except (TmuxCommandNotFound, OSError) as exc:
            raise self._unavailable(stage, exc) from None
        if result.returncode != 0:
            raise classify(stage, "\n".join(result.stderr), result.returncode)
        return list(result.stdout)

    def _unavailable(self, stage: str, exc: Exception) -> TmuxError:
        return TmuxError(TMUX_UNAVAILABLE, f"cannot run {self.tmux_bin}: {exc or 'not found'}", stage=stage)

    def socket_path(self) -> str:
        """The server's own socket path (the default server's too, which has no name here)."""
        out = self._cmd("socket_path", "display-message", "-p", "#{socket_path}")
        return out[0].strip() if out else ""

    def panes(self) -> list[PaneInfo]:
        """Every pane of every session; [] when the server is not running."""
        try:
            panes = self.server.panes
        except TmuxCommandNotFound as exc:
            raise self._unavailable("list_panes", exc) from None
        except LibTmuxException as exc:
            error = classify("list_panes", str(exc), None)
            if error.server_gone:
                return []
            raise error from None
        return [_pane_info(p) for p in panes if p.pane_id]


def _pane_info(pane: libtmux.Pane) -> PaneInfo:
    return PaneInfo(
        pane_id=str(pane.pane_id),
        session_name=pane.session_name or "",
        window_index=_int(pane.window_index),
        pane_index=_int(pane.pane_index),
        pane_pid=_int(pane.pane_pid),
        pane_current_command=pane.pane_current_command or "",
        pane_in_mode=(pane.pane_in_mode or "0") != "0",
        pane_dead=(pane.pane_dead or "0") != "0",
        pane_width=_int(pane.pane_width),
        pane_height=_int(pane.pane_height),
        pane_tty=pane.pane_tty or "",
        session_id=pane.session_id or "",
        window_activity=_int(pane.window_activity),
        pane_current_path=pane.pane_current_path or "",
    )


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
