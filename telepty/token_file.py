"""The daemon token's file: created once by the daemon, read by every client.

Its own module because three programs share it and only one of them serves HTTP: the
daemon creates it (``ensure_token``), the CLI and the ``telepty wrap`` wrapper read it
(``read_token``). Keeping it beside the HTTP middleware made every ``telepty list``
import aiohttp just to read one line from a file.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Final

__all__ = ["TOKEN_HEADER", "TOKEN_MODE", "ensure_token", "read_token"]

log = logging.getLogger("telepty.auth")

TOKEN_MODE: Final = 0o600
TOKEN_HEADER: Final = "x-telepty-token"  # how a client presents it


def _read_token_file(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


def _tighten(path: Path) -> None:
    """Narrow a token file that someone (an editor, a copy) left group/world-readable.

    A readable token is as good as no token for anyone else on the machine, so a looser
    mode is repaired rather than merely warned about.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & ~TOKEN_MODE:
        log.warning("token file %s had mode %o; tightening to 0600", path, mode)
        path.chmod(TOKEN_MODE)


def _write_new_token(path: Path, token: str) -> bool:
    """Publish ``token`` at ``path`` unless a token is already there.

    The token is written to a private temporary file first and then hard-linked into
    place, so a concurrent reader never sees a created-but-still-empty token file; the
    link fails with ``EEXIST`` if another process won the race. Returns False in that case.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, TOKEN_MODE)
    try:
        _fill(fd, token)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # No hard links here (some FUSE/network filesystems): fall back to an
            # exclusive create, which still guarantees a single winner.
            return _write_exclusive(path, token)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _write_exclusive(path: Path, token: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, TOKEN_MODE)
    except FileExistsError:
        return False
    _fill(fd, token)
    return True


def _fill(fd: int, token: str) -> None:
    """Write ``token`` into a file just created, and close it: on disk before anyone links it."""
    try:
        # The umask can only remove bits, but make the mode exact regardless.
        os.fchmod(fd, TOKEN_MODE)
        os.write(fd, (token + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_token(path: Path) -> str:
    """Return the daemon token, creating it (mode 0600 from birth) on first start.

    The file is never briefly world-readable: it is created with 0600 rather than
    chmod-ed afterwards. If another process creates it first, theirs wins and is
    returned, so two daemons racing at startup agree on one token. An existing empty
    file (nothing we write can be empty) is replaced, because an empty token would
    leave strict mode unusable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for _ in range(3):
        if path.exists():
            _tighten(path)
            token = _read_token_file(path)
            if token:
                return token
            log.warning("token file %s is empty; generating a new token", path)
            fresh = secrets.token_urlsafe(32)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            if not _write_exclusive(tmp, fresh):  # pragma: no cover - random name clash
                continue
            os.replace(tmp, path)
            return fresh
        fresh = secrets.token_urlsafe(32)
        if _write_new_token(path, fresh):
            return fresh
        # Lost the race: loop round and read the winner's token.
    raise OSError(f"could not create or read the telepty token file at {path}")


def read_token(path: Path) -> str | None:
    """The token for a client to send, or None when it cannot be had.

    Clients run as users and in places where the file may legitimately be absent
    (daemon never started, remote daemon), so absence is an answer, not an error.
    """
    try:
        token = _read_token_file(Path(path))
    except (OSError, UnicodeDecodeError):
        return None
    return token or None
