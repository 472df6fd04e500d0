"""``/proc/PID/stat`` read directly, for the two hot paths that ask about processes.

Liveness (is a wrapped session's process still there?) runs for every session every
couple of seconds, and agent detection (who runs under this pane?) before every
delivery. psutil answers both, but by building objects and reading the file more than
once; on Linux one read is enough. Callers fall back to psutil where ``HAS_PROC`` is
false.
"""

from __future__ import annotations

import os

HAS_PROC = os.path.isfile("/proc/self/stat")
GONE_STATES = (b"Z", b"X", b"x")  # zombie, dead (``x`` on older kernels)


def read_stat(pid: int | str) -> tuple[bytes, int] | None:
    """(state, ppid) of a process, or None when it is gone or not ours to read."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        # state and ppid come right after comm; 512 bytes always reach them.
        stat = os.read(fd, 512)
    except OSError:
        return None
    finally:
        os.close(fd)
    # "pid (comm) state ppid …": comm may hold spaces and ')', so split after the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split(b" ", 2)
    if len(fields) < 2 or not fields[1].isdigit():
        return None
    return fields[0], int(fields[1])
