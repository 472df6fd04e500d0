"""The durable event log: append-only, ``seq`` assigned by SQLite.

``seq`` comes from ``AUTOINCREMENT``, so it only ever grows, even after retention has
deleted the newest rows' predecessors: a subscriber's cursor stays meaningful forever.

The ``ts`` column is when this daemon accepted the event (its retention clock), not
the envelope's ``ts``: a publisher may stamp any time, in any offset, and that must
not decide how long the log keeps the event.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson

from telepty.clock import utc_now
from telepty.store.db import Database

_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps_event(envelope: dict[str, Any]) -> str:
    """JSON for the log and the wire; odd field values from an emitter become strings
    rather than losing the event."""
    return orjson.dumps(envelope, default=str, option=_DUMPS_OPTIONS).decode()


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    inserted: bool  # False: the message_id was already in the log, ``seq`` is the first one's


class EventRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, envelope: dict[str, Any]) -> tuple[int, bool]:
        """Append an envelope; returns ``(seq, inserted)``.

        A repeated ``message_id`` is not appended twice: the first event's seq comes
        back with ``inserted`` False, which is how duplicates are made idempotent.
        """
        (result,) = await self.append_many([(envelope, dumps_event(envelope))])
        return result.seq, result.inserted

    async def append_many(self, items: list[tuple[dict[str, Any], str]]) -> list[Appended]:
        """Append ``(envelope, its JSON)`` pairs in one transaction, in order.

        One transaction per batch is what lets the bus take thousands of events a
        second: the cost of a commit is paid once for everything that queued up meanwhile.
        """
        accepted_at = utc_now()

        def q(conn: sqlite3.Connection) -> list[Appended]:
            out: list[Appended] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for envelope, body in items:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO events (message_id, kind, ts, envelope) VALUES (?,?,?,?)",
                        (envelope["message_id"], envelope["kind"], accepted_at, body),
                    )
                    if cur.rowcount == 1:
                        out.append(Appended(int(cur.lastrowid or 0), True))
                        continue
                    row = conn.execute(
                        "SELECT seq FROM events WHERE message_id = ?", (envelope["message_id"],)
                    ).fetchone()
                    out.append(Appended(int(row[0]), False))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return out

        return await self.db.run(q)

    async def since(
        self, seq: int, limit: int = 100, kinds: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """Events after ``seq``, oldest first, each with its ``seq``."""
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

    async def by_message_id(self, message_id: str) -> dict[str, Any] | None:
        def q(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT seq, envelope FROM events WHERE message_id = ?", (message_id,)
            ).fetchone()
            if row is None:
                return None
            env: dict[str, Any] = orjson.loads(row["envelope"])
            env["seq"] = row["seq"]
            return env

        return await self.db.run(q)

    async def last_seq(self) -> int:
        def q(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

        return await self.db.run(q)

    async def bounds(self) -> tuple[int, int, int]:
        """``(first_seq, last_seq, count)`` of what the log still holds (zeros if empty)."""
        def q(conn: sqlite3.Connection) -> tuple[int, int, int]:
            row = conn.execute(
                "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0), COUNT(*) FROM events"
            ).fetchone()
            return int(row[0]), int(row[1]), int(row[2])

        return await self.db.run(q)

    async def trim(self, *, keep_newest: int, accepted_before: str | None) -> int:
        """Delete beyond the newest ``keep_newest`` events (0: no count bound) and every
        event accepted before ``accepted_before`` (ISO-8601 Z; None: no age bound).
        Returns how many rows went."""
        def q(conn: sqlite3.Connection) -> int:
            deleted = 0
            conn.execute("BEGIN IMMEDIATE")
            try:
                if keep_newest > 0:
                    row = conn.execute(
                        "SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?", (keep_newest,)
                    ).fetchone()
                    if row is not None:
                        deleted += conn.execute(
                            "DELETE FROM events WHERE seq <= ?", (row[0],)
                        ).rowcount
                if accepted_before is not None:
                    deleted += conn.execute(
                        "DELETE FROM events WHERE ts < ?", (accepted_before,)
                    ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return deleted

        return await self.db.run(q)
