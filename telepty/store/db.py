"""The daemon's SQLite database: one connection, one writer thread, WAL.

Statements run on a single dedicated thread. That gives us three things at once: the
event loop does not wait on the disk, writes are serialised without a lock dance
(SQLite allows one writer anyway), and a crash leaves the WAL consistent. Nothing
outside ``telepty.store`` writes SQL.

The thread takes jobs from a ``SimpleQueue`` and hands each result straight back to
the loop that asked (``call_soon_threadsafe``). A job runs to completion before the
next one starts, in the order they were submitted, so a caller that submits two jobs
without awaiting in between knows the first committed before the second began.

One exception, for the bus's group commit: :meth:`Database.run_here_if_idle` runs a
short job on the calling thread when the database thread has nothing queued or
running. Handing a batch to the thread and its result back costs two thread wake-ups,
which on a small machine cost more than the commit itself. It stays safe because a
commit in WAL mode with ``synchronous=NORMAL`` is a ``write()`` into the page cache,
never an ``fsync``: the waits on the disk are the checkpoints, and those run only on
the thread (automatic checkpoints are off; the thread checkpoints every
``CHECKPOINT_EVERY`` jobs, as SQLite would have after about as many pages).
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
from functools import partial
from pathlib import Path
from typing import TypeVar

from telepty.store.migrations import migrate

log = logging.getLogger("telepty.store")

T = TypeVar("T")

# A job runs against the connection and returns how to hand its outcome over; the
# handing over happens after the job is counted done, so a caller woken by it finds
# the database idle again.
Job = Callable[[], Callable[[], None] | None]

CHECKPOINT_EVERY = 256  # jobs (a bus batch writes a handful of pages; SQLite's default is 1000 pages)


class Database:
    """Owns the connection; ``run`` executes a function against it off the loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        # ``_outstanding`` counts jobs queued or running; a job runs here only at zero.
        # ``_conn_lock`` is held around every job, wherever it runs, so a job that
        # another thread queues meanwhile waits for the one running here.
        self._state = threading.Lock()
        self._outstanding = 0
        self._since_checkpoint = 0
        self._conn_lock = threading.Lock()

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit is a write() into the WAL, synced at checkpoints.
        # A committed transaction survives the process being killed (the kernel has the
        # pages); only a power cut can lose the newest commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the thread checkpoints (see above)
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
            hand_over = None
            try:
                with self._conn_lock:
                    hand_over = job()
            finally:
                self._done()
            if hand_over is not None:
                hand_over()

    def _put(self, job: Job) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="telepty-db", daemon=True)
            self._thread.start()
        with self._state:
            self._outstanding += 1
        self._jobs.put(job)

    def _done(self) -> None:
        with self._state:
            self._outstanding -= 1
            self._since_checkpoint += 1
            due = self._since_checkpoint >= CHECKPOINT_EVERY and self._conn is not None
            if due:
                self._since_checkpoint = 0
        if due:
            self._put(self._checkpoint)

    def _checkpoint(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            log.warning("WAL checkpoint failed; the next one will retry", exc_info=True)

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn`` for the database thread; the returned future (of the running
        loop) resolves with its result. Jobs run one at a time, in submission order."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def job() -> Callable[[], None]:
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting side, not lost here
                return partial(_deliver, loop, _fail, fut, exc)
            return partial(_deliver, loop, _resolve, fut, result)

        self._put(job)
        return fut

    async def _submit(self, fn: Callable[[], T]) -> T:
        return await self.submit(fn)

    def _call_sync(self, fn: Callable[[], T]) -> T:
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> Callable[[], None]:
            try:
                return partial(done.set_result, fn())
            except BaseException as exc:
                return partial(done.set_exception, exc)

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

    def run_here_if_idle(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """``run_soon``, except that when the database thread has nothing queued or
        running, ``fn`` runs right here, now, and the future comes back done.

        Only for short writes that never wait on the disk (see the module doc): the
        caller's thread, usually the event loop, is blocked while ``fn`` runs. Order is
        kept either way: a job runs here only when every job submitted before it is done.
        """
        conn = self._require()
        with self._state:
            idle = self._outstanding == 0
            if idle:
                self._outstanding = 1
        if not idle:
            return self.submit(lambda: fn(conn))
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            with self._conn_lock:
                fut.set_result(fn(conn))
        except Exception as exc:
            fut.set_exception(exc)
        finally:
            self._done()
        return fut

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
