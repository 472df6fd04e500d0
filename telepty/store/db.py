"""The daemon's SQLite database: one connection, one writer thread, WAL.

Every statement runs on a single dedicated thread. That gives us three things at
once: the event loop never waits on disk, writes are serialised without a lock
dance (SQLite allows one writer anyway), and a crash leaves the WAL consistent.
Nothing outside ``telepty.store`` writes SQL.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from telepty.store.migrations import migrate

log = logging.getLogger("telepty.store")

T = TypeVar("T")


class Database:
    """Owns the connection; ``run`` executes a function against it off the loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telepty-db")
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
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
        return self._executor.submit(self._open).result()

    async def _submit(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the database thread."""
        conn = self._require()
        return await self._submit(lambda: fn(conn))

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._require()
        return self._executor.submit(lambda: fn(conn)).result()

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._submit(conn.close)
        self._executor.shutdown(wait=True)

    def close_sync(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._executor.submit(conn.close).result()
        self._executor.shutdown(wait=True)
