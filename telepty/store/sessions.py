"""Session rows: the only SQL that touches the ``sessions`` table."""

from __future__ import annotations

import sqlite3

import orjson

from telepty.sessions.model import Session, SessionState, SessionType
from telepty.store.db import Database

_COLUMNS = (
    "id, type, command, cwd, pid, tmux_pane, tmux_socket, agent, alias, state, exit_code, "
    "created_at, last_activity_at, updated_at, meta"
)


def _row_to_session(row: sqlite3.Row) -> Session:
    return Session(
        id=row["id"],
        type=SessionType(row["type"]),
        command=row["command"],
        cwd=row["cwd"],
        pid=row["pid"],
        tmux_pane=row["tmux_pane"],
        tmux_socket=row["tmux_socket"],
        agent=row["agent"],
        alias=row["alias"],
        state=SessionState(row["state"]),
        exit_code=row["exit_code"],
        created_at=row["created_at"],
        last_activity_at=row["last_activity_at"],
        updated_at=row["updated_at"],
        meta=orjson.loads(row["meta"] or "{}"),
    )


def _values(s: Session) -> tuple[object, ...]:
    return (
        s.id, str(s.type), s.command, s.cwd, s.pid, s.tmux_pane, s.tmux_socket, s.agent,
        s.alias, str(s.state), s.exit_code, s.created_at, s.last_activity_at, s.updated_at,
        orjson.dumps(s.meta).decode(),
    )


class SessionRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[Session]:
        def q(conn: sqlite3.Connection) -> list[Session]:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM sessions ORDER BY created_at").fetchall()
            return [_row_to_session(r) for r in rows]

        return await self.db.run(q)

    async def upsert(self, session: Session) -> None:
        values = _values(session)

        def q(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT OR REPLACE INTO sessions ({_COLUMNS}) VALUES "
                         f"({', '.join('?' * len(values))})", values)

        await self.db.run(q)

    async def upsert_many(self, sessions: list[Session]) -> None:
        rows = [_values(s) for s in sessions]
        if not rows:
            return

        def q(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN")
                conn.executemany(
                    f"INSERT OR REPLACE INTO sessions ({_COLUMNS}) VALUES "
                    f"({', '.join('?' * len(rows[0]))})",
                    rows,
                )

        await self.db.run(q)

    async def delete(self, session_id: str) -> None:
        await self.db.run(lambda c: c.execute("DELETE FROM sessions WHERE id = ?", (session_id,)))
