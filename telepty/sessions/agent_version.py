"""Which version of an agent CLI a session runs, without running the program.

``telepty doctor`` compares it with the version a profile was checked against: agent
TUIs change their screens between releases, and a newer one is the first suspect when
deliveries start to wait or fail. The version comes from where the program was
installed: the ``package.json`` of its npm package (``…/node_modules/@openai/codex/
bin/codex.js``), or the directory of a versioned native install
(``…/claude/versions/2.1.197``). Nothing is executed; an unknown version is None.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import psutil

from telepty.sessions.agents import agent_processes, programs_of

_VERSION_RE = re.compile(r"^v?(\d+(?:\.\d+){0,3})")
_VERSIONED_DIR_RE = re.compile(r"/([^/]+)/versions/(\d+(?:\.\d+){1,3})(?:/|$)")
_MAX_UP = 6  # package.json is at most this many directories above the program


def running_version(pid: int, kind: str) -> str | None:
    """The version of the ``kind`` agent running under ``pid``, if it can be told."""
    names = {kind, *programs_of(kind)}
    for proc in agent_processes(pid, kind):
        try:
            paths = [p for p in proc.cmdline()[:3] if p.startswith("/")]
            paths.append(proc.exe())
        except (psutil.Error, OSError):
            continue
        for path in paths:
            version = installed_version(path, names)
            if version:
                return version
    return None


def installed_version(path: str, names: Iterable[str]) -> str | None:
    """The version of the package a program file belongs to, if its name is one of ``names``."""
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return None
    wanted = {n.lower() for n in names}
    m = _VERSIONED_DIR_RE.search(real)
    if m and m.group(1).lower() in wanted:
        return m.group(2)
    folder = Path(real).parent
    for _ in range(_MAX_UP):
        manifest = folder / "package.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict) and str(data.get("name", "")).rsplit("/", 1)[-1].lower() in wanted:
                version = data.get("version")
                return str(version) if isinstance(version, str) and version else None
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def version_key(version: str) -> tuple[int, ...] | None:
    """``"2.1.197"`` → (2, 1, 197); None when it does not start with a number."""
    m = _VERSION_RE.match(version.strip())
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def is_newer(version: str, than: str) -> bool:
    a, b = version_key(version), version_key(than)
    if a is None or b is None:
        return False
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) > b + (0,) * (width - len(b))
