"""The only place in telepty that talks to tmux."""

from telepty.tmux.errors import TmuxError
from telepty.tmux.server import PaneInfo, TmuxServer

__all__ = ["PaneInfo", "TmuxError", "TmuxServer"]
