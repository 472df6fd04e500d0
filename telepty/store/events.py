"""The durable event log: append-only, ``seq`` assigned by SQLite."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from telepty.store.db import Database


class EventRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, envelope: dict[str, Any]) -> tuple[int, bool]:
        """Append an envelope; returns ``(seq, inserted)``.

        A repeated ``message_id`` is not appended twice: the first event's seq comes
        back with ``inserted`` False, which is how duplicates are made idempotent.
        """
        body = orjson.dumps(envelope).decode()

        def q(conn: sqlite3.Connection) -> tuple[int, bool]:
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (message_id, kind, ts, envelope) VALUES (?,?,?,?)",
                (envelope["message_id"], envelope["kind"], envelope["ts"], body),
            )
            if cur.rowcount == 1:
                return int(cur.lastrowid or 0), True
            row = conn.execute(
                "SELECT seq FROM events WHERE message_id = ?", (envelope["message_id"],)
            ).fetchone()
            return int(row[0]), False

        return await self.db.run(q)

    async def since(
        self, seq: int, limit: int = 100, kinds: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT seq, envelope FROM events WHERE seq > ?"
            args: list[object] = [seq]
            if kinds:
                sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
                args.extend(kinds)
            sql += " ORDER BY seq LIMIT ?"
            args.append(limit)
            out = []
            for row in conn.execute(sql, args):
                env = orjson.loads(row["envelope"])
                env["seq"] = row["seq"]
                out.append(env)
            return out

        return await self.db.run(q)

    async def last_seq(self) -> int:
        def q(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

        return await self.db.run(q)
