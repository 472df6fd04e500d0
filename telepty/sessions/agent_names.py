"""What an agent kind may be called: checked where it is typed, before anything runs.

Apart from :mod:`telepty.sessions.agents` (which finds agents in process trees, with
psutil) because every ``telepty`` command's parser checks ``--agent`` and must not load
the process walk to do so.
"""

from __future__ import annotations

import argparse
import re

from telepty.errors import BadRequest, ErrorCode

__all__ = ["AGENT_KINDS", "AGENT_NAME_RE", "OTHER", "agent_name_arg", "validate_agent_name"]

# The agents telepty ships profiles for (telepty/data/profiles.toml). Any other profile
# name is an agent kind too: the profiles decide, not this tuple.
AGENT_KINDS: tuple[str, ...] = ("claude", "codex", "gemini", "aider")

OTHER = "other"
# What an agent kind (a profile name) may look like: it is typed on command lines and
# stored with sessions.
AGENT_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")


def validate_agent_name(value: object, field_name: str = "agent") -> str:
    """A syntactically valid agent kind (whether a profile of that name exists is the
    daemon's to say: only it has the user's profiles)."""
    if not isinstance(value, str) or not (value == OTHER or AGENT_NAME_RE.match(value)):
        raise BadRequest(
            ErrorCode.INVALID_FIELD,
            f"{field_name} must be a profile name (a-z, 0-9, _ and -, 1-32 characters, "
            f"starting with a letter) or {OTHER!r}; got {value!r}",
        )
    return value


def agent_name_arg(value: str) -> str:
    """``--agent NAME`` on the command line (argparse ``type``)."""
    try:
        return validate_agent_name(value, "--agent")
    except BadRequest as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None
