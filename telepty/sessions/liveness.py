"""Is a process still there? psutil answers, and a zombie counts as gone."""

from __future__ import annotations

import psutil


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False
