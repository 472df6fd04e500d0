"""Readable default session ids such as ``claude-myproj-1``."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, limit: int = 24) -> str:
    cleaned = _UNSAFE.sub("-", text).strip("-._")
    return cleaned[:limit].strip("-._") or "session"


def default_session_id(
    command: str, cwd: str, agent: str, taken: Callable[[str], bool]
) -> str:
    """``<agent or program>-<project>-<n>`` with the first n not already taken."""
    if agent and agent != "other":
        program = agent
    else:
        program = os.path.basename(command.split()[0]) if command.strip() else "session"
    project = os.path.basename(cwd.rstrip("/")) if cwd else ""
    stem = slug(program, 20)
    if project:
        stem = f"{stem}-{slug(project, 30)}"
    n = 1
    while taken(f"{stem}-{n}"):
        n += 1
    return f"{stem}-{n}"
