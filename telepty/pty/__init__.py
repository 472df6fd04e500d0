"""PTYs: spawned sessions the daemon owns, and the wrap/attach clients' terminal."""

from telepty.activity import OutputActivity
from telepty.pty.bracketed import (
    BRACKET_END,
    BRACKET_START,
    BracketedPasteTracker,
    frame_paste,
    strip_paste_markers,
)
from telepty.pty.env import STRIPPED_ENV_KEYS, child_env
from telepty.pty.scrollback import Scrollback
from telepty.pty.spawned import PtyClosedError, SpawnedPty

__all__ = [
    "BRACKET_END",
    "BRACKET_START",
    "STRIPPED_ENV_KEYS",
    "BracketedPasteTracker",
    "OutputActivity",
    "PtyClosedError",
    "Scrollback",
    "SpawnedPty",
    "child_env",
    "frame_paste",
    "strip_paste_markers",
]
