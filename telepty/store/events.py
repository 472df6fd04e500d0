"""The durable event log: append-only, ``seq`` assigned by SQLite.

``seq`` comes from ``AUTOINCREMENT``, so it only ever grows, even after retention has
deleted the newest rows' predecessors: a subscriber's cursor stays meaningful forever.

The ``ts`` column is when this daemon accepted the event (its retention clock), not
the envelope's ``ts``: a publisher may stamp any time, in any offset, and that must
not decide how long the log keeps the event.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from typing import Any, NamedTuple

import orjson

from telepty.clock import utc_now
from telepty.store.db import Database

_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS

_SEQ_OF = "SELECT seq FROM events WHERE message_id = ?"


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    """The same text for the same batch size, so SQLite's statement cache prepares each
    once (batches are mostly small: as many events as arrived during one commit)."""
    values = ",".join(("(?,?,?,?)",) * rows)
    return (f"INSERT INTO events (message_id, kind, ts, envelope) VALUES {values} "
            "ON CONFLICT (message_id) DO NOTHING RETURNING seq, message_id")


def dumps_event(envelope: dict[str, Any]) -> str:
    """JSON for the log and the wire; odd field values from an emitter become strings
    rather than losing the event."""
    return orjson.dumps(envelope, default=str, option=_DUMPS_OPTIONS).decode()


class Appended(NamedTuple):
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
        """Append ``(envelope, its JSON)`` pairs in one transaction, in order."""
        return await self.append_batch(items)

    def append_batch(self, items: list[tuple[dict[str, Any], str]]) -> asyncio.Future[list[Appended]]:
        """Queue ``(envelope, its JSON)`` pairs as one transaction; the future resolves
        once it has committed.

        One transaction per batch is what lets the bus take thousands of events a
        second: the cost of a commit is paid once for everything that queued up
        meanwhile. It is a single multi-row ``INSERT`` (a statement outside ``BEGIN``
        is its own transaction): one call into SQLite instead of one per row. It runs
        on the calling thread when the database thread is idle (a WAL commit never
        waits on the disk; see ``telepty.store.db``), else queued behind what is there.
        Either way batches commit in the order they were queued, so seqs ascend from
        one batch to the next, and the future is done only once the batch is committed.
        """
        accepted_at = utc_now()
        message_ids = [env["message_id"] for env, _ in items]
        args: list[str] = []
        for env, body in items:
            args += (env["message_id"], env["kind"], accepted_at, body)
        sql = _insert_sql(len(items))

        def q(conn: sqlite3.Connection) -> list[Appended]:
            if conn.in_transaction:
                raise RuntimeError("a transaction was left open on the database connection")
            # RETURNING order is unspecified: match rows by message_id.
            seqs = {mid: seq for seq, mid in conn.execute(sql, args).fetchall()}
            out: list[Appended] = []
            for mid in message_ids:
                seq = seqs.pop(mid, None)  # popped: the same id twice in a batch is one event
                if seq is not None:
                    out.append(Appended(seq, True))
                else:  # already logged: its first copy's seq makes the retry idempotent
                    out.append(Appended(int(conn.execute(_SEQ_OF, (mid,)).fetchone()[0]), False))
            return out

        return self.db.run_here_if_idle(q)

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
