"""``$TELEPTY_HOME/daemon.json``: where this home's running daemon listens.

The daemon writes it once it listens and removes it when it stops; every client (the
CLI, ``telepty wrap``, ``telepty attach``) reads it to find the daemon. A file rather
than a fixed port because a home's daemon may listen anywhere (``--port 0``), and
several homes' daemons run side by side. Its own module, with nothing heavier than
``json`` behind it, because every ``telepty`` command reads it before anything else.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["DaemonAddress", "read_runtime", "remove_runtime", "write_runtime"]

@dataclass(frozen=True)
class DaemonAddress:
    """What the file holds: who listens (pid), where (url), since when, which version.

    A reader needs only ``pid`` and ``url``; the rest is for people and tools.
    """

    pid: int
    url: str
    host: str = ""
    port: int | None = None
    version: str = ""
    started_at: str = ""

    @classmethod
    def from_json(cls, data: Any) -> DaemonAddress | None:
        """The address in ``data``, or None when it is not one (garbled, or half a file)."""
        if not isinstance(data, dict):
            return None
        pid, url, port = data.get("pid"), data.get("url"), data.get("port")
        if not (isinstance(pid, int) and isinstance(url, str) and url):
            return None
        return cls(pid=pid, url=url, host=str(data.get("host") or ""),
                   port=port if isinstance(port, int) else None, version=str(data.get("version") or ""),
                   started_at=str(data.get("started_at") or ""))


def read_runtime(path: Path) -> DaemonAddress | None:
    """Where the daemon said it listens (None if absent or garbled); ``path`` is its
    home's ``Config.runtime_path``.

    Whether that daemon still runs is the reader's question: the file of a daemon that
    was killed (-9) stays behind.
    """
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return DaemonAddress.from_json(data)


def write_runtime(path: Path, address: DaemonAddress) -> None:
    Path(path).write_text(json.dumps(asdict(address), separators=(",", ":")), encoding="utf-8")


def remove_runtime(path: Path) -> None:
    with contextlib.suppress(OSError):
        Path(path).unlink()
