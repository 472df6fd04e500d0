"""Thread rows: the only SQL that touches the ``threads`` table.

A thread's ``message_count`` is not stored: it is the number of deliveries carrying
the thread's id, counted when asked. A stored counter would drift from the deliveries
it claims to count (an inject that names the thread directly, a daemon crash between
two writes); the deliveries table is the record, so it is also the count.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from telepty.clock import utc_now
from telepty.store.db import Database


class ThreadStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


def new_thread_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Thread:
    topic: str
    id: str = field(default_factory=new_thread_id)
    status: ThreadStatus = ThreadStatus.OPEN
    orchestrator_session_id: str | None = None
    participant_session_ids: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=utc_now)
    updated_at: str = ""
    closed_at: str | None = None
    message_count: int = 0  # read from the deliveries table, never written

    def __post_init__(self) -> None:
        if not self.updated_at:
            self.updated_at = self.created_at

    def to_public(self) -> dict[str, Any]:
        return {
            "thread_id": self.id,
            "topic": self.topic,
            "status": str(self.status),
            "orchestrator_session_id": self.orchestrator_session_id,
            "participant_session_ids": list(self.participant_session_ids),
            "message_count": self.message_count,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
        }


@dataclass(frozen=True)
class Closing:
    """What a close attempt found: ``thread`` None means no such id;
    ``applied`` False means it was already closed."""

    thread: Thread | None
    applied: bool


_COLUMNS = (
    "id", "topic", "status", "orchestrator_session_id", "participant_session_ids", "created_at",
    "updated_at", "closed_at",
)
# The count rides along with every read, so no caller can forget it.
_SELECT = (
    f"SELECT {', '.join('t.' + c for c in _COLUMNS)}, "
    "(SELECT COUNT(*) FROM deliveries d WHERE d.thread_id = t.id) AS message_count "
    "FROM threads t"
)


def _row(row: sqlite3.Row) -> Thread:
    return Thread(
        id=row["id"],
        topic=row["topic"],
        status=ThreadStatus(row["status"]),
        orchestrator_session_id=row["orchestrator_session_id"],
        participant_session_ids=orjson.loads(row["participant_session_ids"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        closed_at=row["closed_at"],
        message_count=int(row["message_count"]),
    )


class ThreadRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, t: Thread) -> bool:
        """Store a new thread; False (and nothing written) when its id is taken."""
        values = (
            t.id, t.topic, str(t.status), t.orchestrator_session_id,
            orjson.dumps(t.participant_session_ids).decode(), t.created_at, t.updated_at,
            t.closed_at,
        )
        sql = (
            f"INSERT OR IGNORE INTO threads ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})"
        )
        return await self.db.run(lambda conn: conn.execute(sql, values).rowcount == 1)

    async def get(self, thread_id: str) -> Thread | None:
        def q(conn: sqlite3.Connection) -> Thread | None:
            row = conn.execute(f"{_SELECT} WHERE t.id = ?", (thread_id,)).fetchone()
            return _row(row) if row is not None else None

        return await self.db.run(q)

    async def list(self, *, status: ThreadStatus | None = None, limit: int = 100) -> list[Thread]:
        """Newest first."""
        sql = _SELECT
        args: list[object] = []
        if status is not None:
            sql += " WHERE t.status = ?"
            args.append(str(status))
        sql += " ORDER BY t.seq DESC LIMIT ?"
        args.append(max(0, limit))

        def q(conn: sqlite3.Connection) -> list[Thread]:
            return [_row(r) for r in conn.execute(sql, args)]

        return await self.db.run(q)

    async def close(self, thread_id: str) -> Closing:
        """Close an open thread; the returned record counts its messages as of the close."""
        now = utc_now()

        def q(conn: sqlite3.Connection) -> Closing:
            applied = conn.execute(
                "UPDATE threads SET status = ?, updated_at = ?, closed_at = ? "
                "WHERE id = ? AND status = ?",
                (str(ThreadStatus.CLOSED), now, now, thread_id, str(ThreadStatus.OPEN)),
            ).rowcount == 1
            row = conn.execute(f"{_SELECT} WHERE t.id = ?", (thread_id,)).fetchone()
            return Closing(_row(row) if row is not None else None, applied)

        return await self.db.run(q)
