"""Is a process still there? A zombie (or a dead, not yet reaped entry) counts as gone.

The liveness loop asks this for every wrapped session every couple of seconds, on the
event loop, so it is on a hot path at a few hundred sessions. On Linux one read of
``/proc/PID/stat`` answers it (about 7 µs, against about 26 µs for ``psutil.Process(pid)
.status()``, which reads that file twice); elsewhere psutil does.
"""

from __future__ import annotations

from telepty.sessions.procfs import GONE_STATES, HAS_PROC, read_stat


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    if HAS_PROC:
        stat = read_stat(pid)  # None: gone (or not ours to see: psutil says AccessDenied → gone too)
        return stat is not None and stat[0] not in GONE_STATES
    import psutil  # only off Linux: every CLI command asks this once, and psutil is slow to load

    try:
        proc = psutil.Process(pid)
        return proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False
