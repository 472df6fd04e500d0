"""The person's keystrokes into a bounded queue, for ``telepty wrap`` and ``telepty attach``.

Both forward a terminal's input to something that may stop reading (a child busy on
its own output, a daemon socket under backpressure). Reading stdin only while the
queue has room leaves the rest in the terminal's own buffer, where the kernel applies
flow control, instead of growing our memory without bound. The reader is
non-blocking through the event loop, so a quiet terminal costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import Callable

log = logging.getLogger("telepty.pty")

STDIN_READ_BYTES = 64 * 1024
STDIN_QUEUE_MAX = 64  # chunks; reading pauses here and resumes at half


class StdinReader:
    """Reads ``fd`` into ``queue`` while there is room; ``None`` in the queue ends input.

    ``on_eof`` runs once when the input ends (a pipe closed, the terminal gone); it
    decides what the end means for its client. ``stop_at`` may name a byte sequence (a
    detach key) that ends input there: what came before it is still queued.
    """

    def __init__(self, fd: int, *, on_eof: Callable[[], None], stop_at: bytes | None = None,
                 queue_max: int = STDIN_QUEUE_MAX) -> None:
        self.fd = fd
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.reading = False
        self.done = False
        self._on_eof = on_eof
        self._stop_at = stop_at
        self._queue_max = queue_max

    def start(self) -> None:
        if self.reading or self.done:
            return
        try:
            asyncio.get_running_loop().add_reader(self.fd, self._on_readable)
            self.reading = True
        except (OSError, ValueError) as exc:
            # /dev/null or a regular file cannot be polled: treat it as no input at all.
            log.info("stdin cannot be watched (%s); not forwarding input", exc)

    def stop(self) -> None:
        if self.reading:
            self.reading = False
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(self.fd)

    def resume_if_room(self) -> None:
        """Called by the consumer after taking a chunk: read again once half is drained."""
        if not self.reading and self.queue.qsize() < self._queue_max // 2:
            self.start()

    def _end(self) -> None:
        self.done = True
        self.stop()

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, STDIN_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.info("reading stdin failed: %s", exc)
            data = b""
        if not data:
            self._end()
            self._on_eof()
            return
        cut = data.find(self._stop_at) if self._stop_at else -1
        if cut >= 0:
            self._end()
            if cut:
                self.queue.put_nowait(data[:cut])
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(data)
        if self.queue.qsize() >= self._queue_max:
            self.stop()  # the consumer is not keeping up: let the terminal hold the rest
