"""The daemon's SQLite database: one connection, one writer thread, WAL.

Every statement runs on a single dedicated thread. That gives us three things at
once: the event loop never waits on disk, writes are serialised without a lock
dance (SQLite allows one writer anyway), and a crash leaves the WAL consistent.
Nothing outside ``telepty.store`` writes SQL.

The thread takes jobs from a ``SimpleQueue`` and hands each result straight back to
the loop that asked (``call_soon_threadsafe``). A job runs to completion before the
next one starts, in the order they were submitted, so a caller that submits two jobs
without awaiting in between knows the first committed before the second began; the
bus relies on that to keep its seqs and its fan-out in the same order. This is leaner
than a ``ThreadPoolExecutor`` (no work-item locks, no concurrent future chained to an
asyncio one), which matters when a handoff happens thousands of times a second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from telepty.store.migrations import migrate

log = logging.getLogger("telepty.store")

T = TypeVar("T")

Job = Callable[[], None]


class Database:
    """Owns the connection; ``run`` executes a function against it off the loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit is a write() into the WAL, synced at checkpoints.
        # A committed transaction survives the process being killed (the kernel has the
        # pages); only a power cut can lose the newest commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        version = migrate(conn)
        self._conn = conn
        return version

    async def open(self) -> int:
        """Open and migrate; returns the schema version now in force."""
        version = await self._submit(self._open)
        log.info("database open path=%s schema=%d", self.path, version)
        return version

    def open_sync(self) -> int:
        """For tools outside the daemon (and tests) that want the database directly."""
        return self._call_sync(self._open)

    # -- the thread --------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()

    def _put(self, job: Job) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="telepty-db", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn`` for the database thread; the returned future (of the running
        loop) resolves with its result. Jobs run one at a time, in submission order."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting side, not lost here
                _deliver(loop, _fail, fut, exc)
            else:
                _deliver(loop, _resolve, fut, result)

        self._put(job)
        return fut

    async def _submit(self, fn: Callable[[], T]) -> T:
        return await self.submit(fn)

    def _call_sync(self, fn: Callable[[], T]) -> T:
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._put(job)
        return done.result()

    # -- the connection ----------------------------------------------------------------

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the database thread."""
        conn = self._require()
        return await self.submit(lambda: fn(conn))

    def run_soon(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """``run`` without a coroutine: queued now, in order with every other job."""
        conn = self._require()
        return self.submit(lambda: fn(conn))

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._require()
        return self._call_sync(lambda: fn(conn))

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._submit(conn.close)
        self._stop_thread()

    def close_sync(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._call_sync(conn.close)
        self._stop_thread()

    def _stop_thread(self) -> None:
        """Every job queued before this runs first: the thread ends at the sentinel."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()


def _deliver(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
        loop.call_soon_threadsafe(fn, *args)


def _resolve(fut: asyncio.Future[T], result: T) -> None:
    if not fut.done():  # the awaiting task may have been cancelled
        fut.set_result(result)


def _fail(fut: asyncio.Future[object], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
