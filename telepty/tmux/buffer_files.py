"""Prompt bytes handed to tmux as a private file, so a paste needs no new process.

``load-buffer -`` reads stdin, which only a freshly forked tmux client has: about 4 ms
of fork and exec on every delivery, most of what a paste costs. ``load-buffer PATH``
can go over the persistent control-mode client instead; that client (our own child,
same user, same mounts) reads the file and hands the bytes to the server. The prompt
still never appears on a command line: only the path does.

The files live in a directory only we can enter (0700, on tmpfs where the system has
one, so prompts do not reach a disk), each is created exclusively with mode 0600, and
each is removed as soon as tmux has read it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _base_dir() -> str | None:
    """A per-user tmpfs if there is one, else the system temp dir."""
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return None


class BufferFiles:
    def __init__(self) -> None:
        self._dir: Path | None = None

    def _directory(self) -> Path:
        if self._dir is None or not self._dir.is_dir():
            self._dir = Path(tempfile.mkdtemp(prefix="telepty-buffers-", dir=_base_dir()))
        return self._dir

    @contextlib.contextmanager
    def holding(self, data: bytes) -> Iterator[str]:
        """A file holding ``data`` for the duration of the block; its absolute path."""
        path = self._directory() / f"{secrets.token_hex(8)}.buf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            yield str(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
