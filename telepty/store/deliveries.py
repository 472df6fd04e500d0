"""Delivery rows: the only SQL that touches the ``deliveries`` table."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from telepty.delivery.model import FINAL, INTERRUPTED, Delivery, DeliveryKind, DeliveryStatus, Origin
from telepty.store.db import Database

_COLUMNS = (
    "id", "session_id", "target", "prompt", "sender", "verified_sender", "spoofed", "reply_to",
    "thread_id", "reply_expected", "no_enter", "force", "raw", "quiet_ms", "origin", "status",
    "reason", "detail", "stage", "evidence", "attempts", "confirmed", "idempotency_key",
    "created_at", "updated_at", "next_attempt_at", "started_at", "finished_at", "seq", "kind",
)
# What an attempt may change; who, what and where were fixed when the prompt was accepted.
_MUTABLE = (
    "status", "reason", "detail", "stage", "evidence", "attempts", "confirmed", "updated_at",
    "next_attempt_at", "started_at", "finished_at",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM deliveries"
_FINAL_SQL = ", ".join(f"'{s}'" for s in sorted(FINAL))


def _row_to_delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"],
        session_id=row["session_id"],
        target=row["target"],
        prompt=bytes(row["prompt"]),
        sender=row["sender"],
        verified_sender=row["verified_sender"],
        spoofed=bool(row["spoofed"]),
        reply_to=row["reply_to"],
        thread_id=row["thread_id"],
        reply_expected=bool(row["reply_expected"]),
        no_enter=bool(row["no_enter"]),
        force=bool(row["force"]),
        raw=bool(row["raw"]),
        quiet_ms=row["quiet_ms"],
        origin=Origin(row["origin"]),
        status=DeliveryStatus(row["status"]),
        reason=row["reason"],
        detail=row["detail"],
        stage=row["stage"],
        evidence=orjson.loads(row["evidence"] or "{}"),
        attempts=row["attempts"],
        confirmed=row["confirmed"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        next_attempt_at=row["next_attempt_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        seq=row["seq"],
        kind=DeliveryKind(row["kind"]),
    )


def _value(d: Delivery, column: str) -> Any:
    value = getattr(d, column)
    if column == "evidence":
        return orjson.dumps(value, default=str).decode()
    if isinstance(value, bool):
        return int(value)
    if column in ("origin", "status", "kind"):
        return str(value)
    return value


class DeliveryRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, d: Delivery) -> Delivery:
        """Store a new delivery and give it the next ``seq``; returns the stored record.

        When ``d.idempotency_key`` already belongs to a delivery, nothing is inserted and
        that earlier delivery comes back instead. Check and insert happen in one step on
        the database thread, so two racing requests with one key still make one row.
        """
        columns = [c for c in _COLUMNS if c != "seq"]
        values = [_value(d, c) for c in columns]

        def q(conn: sqlite3.Connection) -> Delivery:
            if d.idempotency_key is not None:
                row = conn.execute(
                    f"{_SELECT} WHERE idempotency_key = ?", (d.idempotency_key,)
                ).fetchone()
                if row is not None:
                    return _row_to_delivery(row)
            conn.execute(
                f"INSERT INTO deliveries ({', '.join(columns)}, seq) VALUES "
                f"({', '.join('?' * len(columns))}, "
                "(SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries))",
                values,
            )
            seq = conn.execute("SELECT seq FROM deliveries WHERE id = ?", (d.id,)).fetchone()[0]
            d.seq = int(seq)
            return d

        return await self.db.run(q)

    async def update(self, d: Delivery) -> None:
        # Values are captured now, not on the database thread, so the row ends up with
        # the state of the last call even while the record keeps changing in memory.
        values = [_value(d, c) for c in _MUTABLE]
        sql = f"UPDATE deliveries SET {', '.join(f'{c} = ?' for c in _MUTABLE)} WHERE id = ?"
        await self.db.run(lambda conn: conn.execute(sql, (*values, d.id)))

    async def get(self, delivery_id: str) -> Delivery | None:
        def q(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(f"{_SELECT} WHERE id = ?", (delivery_id,)).fetchone()
            return _row_to_delivery(row) if row is not None else None

        return await self.db.run(q)

    async def by_idempotency_key(self, key: str) -> Delivery | None:
        def q(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(f"{_SELECT} WHERE idempotency_key = ?", (key,)).fetchone()
            return _row_to_delivery(row) if row is not None else None

        return await self.db.run(q)

    async def list(
        self, *, session: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        """Newest first."""
        sql = _SELECT
        where: list[str] = []
        args: list[object] = []
        if session is not None:
            where.append("session_id = ?")
            args.append(session)
        if status is not None:
            where.append("status = ?")
            args.append(str(status))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(max(0, limit))

        def q(conn: sqlite3.Connection) -> list[Delivery]:
            return [_row_to_delivery(r) for r in conn.execute(sql, args)]

        return await self.db.run(q)

    async def unfinished(self) -> list[Delivery]:
        """Everything a restarted daemon still owes, oldest first."""

        def q(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                f"{_SELECT} WHERE status NOT IN ({_FINAL_SQL}) ORDER BY seq ASC"
            ).fetchall()
            return [_row_to_delivery(r) for r in rows]

        return await self.db.run(q)

    async def blocking_leftovers(self) -> list[Delivery]:
        """Failed prompts whose text may still sit in their session's input, with nothing
        delivered to that session since: a restarted engine holds those sessions again.

        Flagged ``holds_input`` in their evidence (cleared when the hold ends); rows from
        before the flag existed count when they failed ``interrupted``. Oldest first.
        """

        def q(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                f"{_SELECT} AS d WHERE d.kind = ? AND d.status = ? "
                "AND COALESCE(json_extract(d.evidence, '$.holds_input'), d.reason = ?) = 1 "
                "AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.session_id = d.session_id "
                "AND e.seq > d.seq AND e.status = ?) ORDER BY d.seq ASC",
                (str(DeliveryKind.PROMPT), str(DeliveryStatus.FAILED), INTERRUPTED,
                 str(DeliveryStatus.DELIVERED)),
            ).fetchall()
            return [_row_to_delivery(r) for r in rows]

        return await self.db.run(q)
