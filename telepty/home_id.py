"""Which home a daemon serves: a random id kept in ``$TELEPTY_HOME/home_id``.

The CLI must talk to the daemon of *its* home and no other. An address alone cannot
tell: a stale ``daemon.json`` may name a port another home's daemon has taken since,
and ``TELEPTY_URL`` may point anywhere. So the daemon reports this id in
``GET /api/meta`` and the CLI compares it with the file in its own home. A file
rather than a hash of the home's path, so a home reached through a symlink or a
bind mount is still one home.

Not a secret: it only names the home (the token is what authenticates).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

FILE_NAME = "home_id"
_ID_RE = re.compile(r"^home_[0-9a-f]{32}$")


def home_id_path(home: Path) -> Path:
    return Path(home) / FILE_NAME


def read_home_id(home: Path) -> str | None:
    """The home's id, or None when no daemon has ever started there (or the file is garbled)."""
    try:
        text = home_id_path(home).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _ID_RE.match(text) else None


def ensure_home_id(home: Path) -> str:
    """The home's id, created on first use; a racing creator's id wins, so both agree."""
    path = home_id_path(home)
    for _ in range(3):
        existing = read_home_id(home)
        if existing is not None:
            return existing
        new = f"home_{uuid.uuid4().hex}"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}")
        tmp.write_text(new + "\n", encoding="ascii")
        try:
            os.link(tmp, path)  # atomic, and fails if someone else created it first
        except FileExistsError:
            # Another process won, or the file is garbled: a garbled one is replaced.
            if read_home_id(home) is None:
                os.replace(tmp, path)
                continue
        finally:
            tmp.unlink(missing_ok=True)
    found = read_home_id(home)
    if found is None:
        raise OSError(f"cannot create {path}")
    return found
