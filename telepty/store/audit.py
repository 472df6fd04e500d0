"""The injection audit log: one row per accepted delivery, whatever its origin.

Why a log of its own rather than the deliveries table: deliveries carry the prompt
(they must, to deliver it) and are the engine's working state, while the audit log
answers "who put what into which agent, and could they prove who they were" long
after, without keeping the prompts. So a row holds the sha256 and length of what was
typed, and the text itself only when the operator asked for it
(``TELEPTY_AUDIT_CONTENT=1``). It is bounded by count and by age, trimmed as it grows.

Every origin is covered because every delivery is accepted in one place, the intake
(``telepty.delivery.intake``), which appends the row with an :class:`AuditTag` saying
which fan-out or reply made it. The API, the CLI, the bus auto-router, the relay and
fan-out all pass through it; a row per delivery id, so an idempotent repeat (which
returns a delivery already logged) is not logged twice.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from telepty.clock import to_iso
from telepty.delivery.model import Delivery
from telepty.store.db import Database

log = logging.getLogger("telepty.audit")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class AuditTag:
    """What the row cannot learn from the delivery: which fan-out made it."""

    via: str | None = None  # "multicast" | "broadcast" | "reply"
    batch_id: str | None = None


_COLUMNS = (
    "seq", "at", "delivery_id", "kind", "origin", "via", "batch_id", "target", "session_id", "sender",
    "verified_sender", "spoofed", "reply_to", "thread_id", "prompt_sha256", "prompt_bytes", "prompt",
)


def _row(r: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seq": r["seq"],
        "at": r["at"],
        "delivery_id": r["delivery_id"],
        "kind": r["kind"],
        "origin": r["origin"],
        "via": r["via"],
        "batch_id": r["batch_id"],
        "target": r["target"],
        "session_id": r["session_id"],
        "from": r["sender"],
        "verified_sender": r["verified_sender"],
        "spoofed": bool(r["spoofed"]),
        "reply_to": r["reply_to"],
        "thread_id": r["thread_id"],
        "prompt_sha256": r["prompt_sha256"],
        "prompt_bytes": r["prompt_bytes"],
    }
    if r["prompt"] is not None:
        out["prompt"] = bytes(r["prompt"]).decode("utf-8", errors="replace")
    return out


class InjectAuditRepo:
    def __init__(
        self, db: Database, *, keep_content: bool = False, max_rows: int = 100_000,
        max_age_s: float = 30 * 24 * 3600.0,
    ) -> None:
        self.db = db
        self.keep_content = keep_content
        self.max_rows = max_rows  # 0: no count bound
        self.max_age_s = max_age_s  # 0: no age bound

    async def append(self, d: Delivery, tag: AuditTag | None = None) -> None:
        """Log ``d`` (once: a repeated delivery id is ignored) and trim the log."""
        tag = tag or AuditTag()
        values = (
            d.created_at, d.id, str(d.kind), str(d.origin), tag.via, tag.batch_id, d.target, d.session_id,
            d.sender, d.verified_sender, int(d.spoofed), d.reply_to, d.thread_id, d.prompt_sha256,
            len(d.prompt), d.prompt if self.keep_content else None,
        )
        cutoff = to_iso(time.time() - self.max_age_s) if self.max_age_s > 0 else None
        max_rows = self.max_rows

        def q(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN")
                conn.execute(
                    f"INSERT OR IGNORE INTO injects ({', '.join(_COLUMNS[1:])}) "
                    f"VALUES ({', '.join('?' * (len(_COLUMNS) - 1))})", values)
                # Both bounds use an index (the primary key, injects_at): cheap on every append.
                if max_rows > 0:
                    conn.execute("DELETE FROM injects WHERE seq <= (SELECT MAX(seq) FROM injects) - ?",
                                 (max_rows,))
                if cutoff is not None:
                    conn.execute("DELETE FROM injects WHERE at < ?", (cutoff,))

        await self.db.run(q)

    async def query(
        self, *, since: str | None = None, until: str | None = None, to: str | None = None,
        sender: str | None = None, limit: int = DEFAULT_LIMIT,
    ) -> list[dict[str, Any]]:
        """Newest first. ``to`` matches the session or the target as asked; ``sender``
        matches the claimed or the verified sender."""
        where: list[str] = []
        args: list[object] = []
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if until is not None:
            where.append("at <= ?")
            args.append(until)
        if to is not None:
            where.append("(session_id = ? OR target = ?)")
            args += [to, to]
        if sender is not None:
            where.append("(sender = ? OR verified_sender = ?)")
            args += [sender, sender]
        sql = f"SELECT {', '.join(_COLUMNS)} FROM injects"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(max(1, min(limit, MAX_LIMIT)))

        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return [_row(r) for r in conn.execute(sql, args)]

        return await self.db.run(q)
