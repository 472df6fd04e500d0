"""Rows behind sender identity: session token hashes and each session's last reply_to.

Only the sha256 of a session token is ever written; the token itself lives in the
session's environment and nowhere else, so a copy of the database cannot be used to
inject as a session.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from telepty.clock import utc_now
from telepty.store.db import Database


@dataclass(frozen=True)
class LastReceived:
    """The last prompt a session received that named someone to answer."""

    session_id: str
    delivery_id: str
    reply_to: str
    sender: str | None
    thread_id: str | None
    received_at: str


class SessionTokenRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> dict[str, str]:
        """session id → token sha256."""

        def q(conn: sqlite3.Connection) -> dict[str, str]:
            rows = conn.execute("SELECT session_id, token_sha256 FROM session_tokens").fetchall()
            return {r["session_id"]: r["token_sha256"] for r in rows}

        return await self.db.run(q)

    async def put(self, session_id: str, token_sha256: str) -> None:
        now = utc_now()
        await self.db.run(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO session_tokens (session_id, token_sha256, created_at) "
            "VALUES (?, ?, ?)", (session_id, token_sha256, now)))

    async def delete(self, session_ids: list[str]) -> None:
        if not session_ids:
            return
        await self.db.run(lambda conn: conn.executemany(
            "DELETE FROM session_tokens WHERE session_id = ?", [(s,) for s in session_ids]))

    async def rename(self, old: str, new: str) -> None:
        def q(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN")
                conn.execute("DELETE FROM session_tokens WHERE session_id = ?", (new,))
                conn.execute("UPDATE session_tokens SET session_id = ? WHERE session_id = ?", (new, old))
                conn.execute("DELETE FROM last_received WHERE session_id = ?", (new,))
                conn.execute("UPDATE last_received SET session_id = ? WHERE session_id = ?", (new, old))

        await self.db.run(q)


class LastReceivedRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, row: LastReceived) -> None:
        await self.db.run(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO last_received "
            "(session_id, delivery_id, reply_to, sender, thread_id, received_at) VALUES (?, ?, ?, ?, ?, ?)",
            (row.session_id, row.delivery_id, row.reply_to, row.sender, row.thread_id, row.received_at)))

    async def get(self, session_id: str) -> LastReceived | None:
        def q(conn: sqlite3.Connection) -> LastReceived | None:
            r = conn.execute(
                "SELECT session_id, delivery_id, reply_to, sender, thread_id, received_at "
                "FROM last_received WHERE session_id = ?", (session_id,)).fetchone()
            if r is None:
                return None
            return LastReceived(r["session_id"], r["delivery_id"], r["reply_to"], r["sender"],
                                r["thread_id"], r["received_at"])

        return await self.db.run(q)

    async def delete(self, session_ids: list[str]) -> None:
        if not session_ids:
            return
        await self.db.run(lambda conn: conn.executemany(
            "DELETE FROM last_received WHERE session_id = ?", [(s,) for s in session_ids]))
