"""Handoff rows: the only SQL that touches the ``handoffs`` table.

The Node.js telepty kept handoffs in a dict and lost every one on restart; here each
one is a row, and a transition is a single conditional UPDATE on the database thread.
That makes the state machine race-free without a lock: of two agents claiming the same
handoff at once, exactly one UPDATE matches ``status = 'created'``.
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


class HandoffStatus(StrEnum):
    CREATED = "created"
    CLAIMED = "claimed"
    EXECUTING = "executing"
    COMPLETED = "completed"


# The one legal path: the status a handoff must be in for each target status.
REQUIRED_BEFORE: dict[HandoffStatus, HandoffStatus] = {
    HandoffStatus.CLAIMED: HandoffStatus.CREATED,
    HandoffStatus.EXECUTING: HandoffStatus.CLAIMED,
    HandoffStatus.COMPLETED: HandoffStatus.EXECUTING,
}

# The timestamp column each status stamps when it is entered.
_STAMP = {
    HandoffStatus.CLAIMED: "claimed_at",
    HandoffStatus.EXECUTING: "executing_at",
    HandoffStatus.COMPLETED: "completed_at",
}


def new_handoff_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Handoff:
    id: str = field(default_factory=new_handoff_id)
    status: HandoffStatus = HandoffStatus.CREATED
    source_session_id: str | None = None
    deliberation_id: str | None = None
    auto_execute: bool = False
    tasks: list[Any] = field(default_factory=list)
    task_count: int = 0
    payload: dict[str, Any] | None = None
    claimed_by: str | None = None
    result: Any = None
    created_at: str = field(default_factory=utc_now)
    updated_at: str = ""
    claimed_at: str | None = None
    executing_at: str | None = None
    completed_at: str | None = None

    def __post_init__(self) -> None:
        if not self.updated_at:
            self.updated_at = self.created_at

    def to_public(self) -> dict[str, Any]:
        return {
            "handoff_id": self.id,
            "status": str(self.status),
            "source_session_id": self.source_session_id,
            "deliberation_id": self.deliberation_id,
            "auto_execute": self.auto_execute,
            "tasks": self.tasks,
            "task_count": self.task_count,
            "payload": self.payload,
            "claimed_by": self.claimed_by,
            "result": self.result,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "claimed_at": self.claimed_at,
            "executing_at": self.executing_at,
            "completed_at": self.completed_at,
        }

    def event_fields(self) -> dict[str, Any]:
        """The ``handoff.<status>`` event body, field for field as BUS_EVENT_SCHEMA.md has it."""
        return {
            "handoff_id": self.id,
            "source_session_id": self.source_session_id,
            "deliberation_id": self.deliberation_id,
            "auto_execute": self.auto_execute,
            "task_count": self.task_count,
        }


@dataclass(frozen=True)
class Transition:
    """What a transition attempt found: ``handoff`` None means no such id;
    ``applied`` False means the handoff was not in the required status."""

    handoff: Handoff | None
    applied: bool


_COLUMNS = (
    "id", "status", "source_session_id", "deliberation_id", "auto_execute", "tasks", "task_count",
    "payload", "claimed_by", "result", "created_at", "updated_at", "claimed_at", "executing_at",
    "completed_at",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM handoffs"


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _row(row: sqlite3.Row) -> Handoff:
    return Handoff(
        id=row["id"],
        status=HandoffStatus(row["status"]),
        source_session_id=row["source_session_id"],
        deliberation_id=row["deliberation_id"],
        auto_execute=bool(row["auto_execute"]),
        tasks=orjson.loads(row["tasks"]),
        task_count=row["task_count"],
        payload=orjson.loads(row["payload"]) if row["payload"] is not None else None,
        claimed_by=row["claimed_by"],
        result=orjson.loads(row["result"]) if row["result"] is not None else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        claimed_at=row["claimed_at"],
        executing_at=row["executing_at"],
        completed_at=row["completed_at"],
    )


class HandoffRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, h: Handoff) -> bool:
        """Store a new handoff; False (and nothing written) when its id is taken."""
        values = (
            h.id, str(h.status), h.source_session_id, h.deliberation_id, int(h.auto_execute),
            orjson.dumps(h.tasks).decode(), h.task_count, _json(h.payload), h.claimed_by,
            _json(h.result), h.created_at, h.updated_at, h.claimed_at, h.executing_at,
            h.completed_at,
        )
        sql = (
            f"INSERT OR IGNORE INTO handoffs ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})"
        )
        return await self.db.run(lambda conn: conn.execute(sql, values).rowcount == 1)

    async def get(self, handoff_id: str) -> Handoff | None:
        def q(conn: sqlite3.Connection) -> Handoff | None:
            row = conn.execute(f"{_SELECT} WHERE id = ?", (handoff_id,)).fetchone()
            return _row(row) if row is not None else None

        return await self.db.run(q)

    async def list(self, *, status: HandoffStatus | None = None, limit: int = 100) -> list[Handoff]:
        """Newest first."""
        sql = _SELECT
        args: list[object] = []
        if status is not None:
            sql += " WHERE status = ?"
            args.append(str(status))
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(max(0, limit))

        def q(conn: sqlite3.Connection) -> list[Handoff]:
            return [_row(r) for r in conn.execute(sql, args)]

        return await self.db.run(q)

    async def transition(
        self, handoff_id: str, to: HandoffStatus, *, claimed_by: str | None = None,
        result: Any = None,
    ) -> Transition:
        """Move a handoff to ``to`` if, and only if, it is in the status before it."""
        before = REQUIRED_BEFORE[to]
        now = utc_now()
        sets = ["status = ?", "updated_at = ?", f"{_STAMP[to]} = ?"]
        args: list[object] = [str(to), now, now]
        if claimed_by is not None:
            sets.append("claimed_by = ?")
            args.append(claimed_by)
        if result is not None:
            sets.append("result = ?")
            args.append(_json(result))
        sql = f"UPDATE handoffs SET {', '.join(sets)} WHERE id = ? AND status = ?"
        args += [handoff_id, str(before)]

        def q(conn: sqlite3.Connection) -> Transition:
            applied = conn.execute(sql, args).rowcount == 1
            row = conn.execute(f"{_SELECT} WHERE id = ?", (handoff_id,)).fetchone()
            return Transition(_row(row) if row is not None else None, applied)

        return await self.db.run(q)
