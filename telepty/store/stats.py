"""Read-only counts for ``GET /metrics``, taken from the records themselves.

Counting rows at scrape time rather than keeping counters in memory means the numbers
are right after a restart and agree with ``GET /api/deliveries`` by construction.
"""

from __future__ import annotations

import sqlite3

from telepty.store.db import Database


class StatsRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def deliveries_by_status(self) -> dict[str, int]:
        def q(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
            return {str(status): int(n) for status, n in rows}

        return await self.db.run(q)
