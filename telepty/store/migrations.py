"""Schema migrations, applied in order and recorded in ``PRAGMA user_version``.

A migration is never edited once released; a change to the schema is a new entry.
Each runs in its own transaction, so a failure leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions and the event log
    """
    CREATE TABLE sessions (
        id               TEXT PRIMARY KEY,
        type             TEXT NOT NULL CHECK (type IN ('spawned', 'wrapped', 'pane')),
        command          TEXT NOT NULL DEFAULT '',
        cwd              TEXT NOT NULL DEFAULT '',
        pid              INTEGER,
        tmux_pane        TEXT,
        tmux_socket      TEXT,
        agent            TEXT NOT NULL DEFAULT 'other',
        alias            TEXT,
        state            TEXT NOT NULL CHECK (state IN ('running', 'disconnected', 'exited')),
        exit_code        INTEGER,
        created_at       TEXT NOT NULL,
        last_activity_at TEXT,
        updated_at       TEXT NOT NULL,
        meta             TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX sessions_alias ON sessions (alias, created_at);

    CREATE TABLE events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        kind       TEXT NOT NULL,
        ts         TEXT NOT NULL,
        envelope   TEXT NOT NULL
    );
    CREATE INDEX events_kind ON events (kind, seq);
    """,
    # 2: deliveries
    """
    CREATE TABLE deliveries (
        id              TEXT PRIMARY KEY,
        session_id      TEXT NOT NULL,
        target          TEXT NOT NULL,
        prompt          BLOB NOT NULL,
        sender          TEXT,
        verified_sender TEXT,
        spoofed         INTEGER NOT NULL DEFAULT 0,
        reply_to        TEXT,
        thread_id       TEXT,
        reply_expected  INTEGER NOT NULL DEFAULT 0,
        no_enter        INTEGER NOT NULL DEFAULT 0,
        force           INTEGER NOT NULL DEFAULT 0,
        raw             INTEGER NOT NULL DEFAULT 0,
        quiet_ms        INTEGER,
        origin          TEXT NOT NULL,
        status          TEXT NOT NULL,
        reason          TEXT,
        detail          TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        confirmed       TEXT,
        idempotency_key TEXT UNIQUE,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL,
        next_attempt_at TEXT,
        started_at      TEXT,
        finished_at     TEXT,
        seq             INTEGER NOT NULL
    );
    CREATE INDEX deliveries_session ON deliveries (session_id, seq);
    CREATE INDEX deliveries_status ON deliveries (status, seq);
    """,
    # 3: deliveries remember the last stage an attempt entered (a crash after "paste" must
    # not be retried blindly) and what the transport saw (screen tails, timings)
    """
    ALTER TABLE deliveries ADD COLUMN stage TEXT;
    ALTER TABLE deliveries ADD COLUMN evidence TEXT NOT NULL DEFAULT '{}'
    """,
    # 4: handoffs and threads, persisted (the Node.js telepty lost both on every restart);
    # a thread's message count is read from deliveries.thread_id, hence that index
    """
    CREATE TABLE handoffs (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        id                TEXT NOT NULL UNIQUE,
        status            TEXT NOT NULL
                          CHECK (status IN ('created', 'claimed', 'executing', 'completed')),
        source_session_id TEXT,
        deliberation_id   TEXT,
        auto_execute      INTEGER NOT NULL DEFAULT 0,
        tasks             TEXT NOT NULL DEFAULT '[]',
        task_count        INTEGER NOT NULL DEFAULT 0,
        payload           TEXT,
        claimed_by        TEXT,
        result            TEXT,
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL,
        claimed_at        TEXT,
        executing_at      TEXT,
        completed_at      TEXT
    );
    CREATE INDEX handoffs_status ON handoffs (status, seq);

    CREATE TABLE threads (
        seq                     INTEGER PRIMARY KEY AUTOINCREMENT,
        id                      TEXT NOT NULL UNIQUE,
        topic                   TEXT NOT NULL,
        status                  TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        orchestrator_session_id TEXT,
        participant_session_ids TEXT NOT NULL DEFAULT '[]',
        created_at              TEXT NOT NULL,
        updated_at              TEXT NOT NULL,
        closed_at               TEXT
    );
    CREATE INDEX threads_status ON threads (status, seq);
    CREATE INDEX deliveries_thread ON deliveries (thread_id) WHERE thread_id IS NOT NULL
    """,
    # 5: a delivery is a prompt (pasted and submitted) or raw keys (typed unbracketed, for
    # menus a paste would cancel); a keys delivery keeps its key list as JSON in prompt
    """
    ALTER TABLE deliveries ADD COLUMN kind TEXT NOT NULL DEFAULT 'prompt'
    """,
    # 6 (issue 8): sender identity and the injection audit log. Session tokens are kept
    # only as sha256 hashes; the audit log holds a prompt's hash and length, and its text
    # only when TELEPTY_AUDIT_CONTENT=1; last_received remembers, per session, the last
    # prompt that named a reply_to, so `telepty reply` knows where to answer
    """
    CREATE TABLE session_tokens (
        session_id   TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE TABLE last_received (
        session_id  TEXT PRIMARY KEY,
        delivery_id TEXT NOT NULL,
        reply_to    TEXT NOT NULL,
        sender      TEXT,
        thread_id   TEXT,
        received_at TEXT NOT NULL
    );
    CREATE TABLE injects (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        at              TEXT NOT NULL,
        delivery_id     TEXT NOT NULL UNIQUE,
        kind            TEXT NOT NULL,
        origin          TEXT NOT NULL,
        via             TEXT,
        batch_id        TEXT,
        target          TEXT NOT NULL,
        session_id      TEXT NOT NULL,
        sender          TEXT,
        verified_sender TEXT,
        spoofed         INTEGER NOT NULL DEFAULT 0,
        reply_to        TEXT,
        thread_id       TEXT,
        prompt_sha256   TEXT NOT NULL,
        prompt_bytes    INTEGER NOT NULL,
        prompt          BLOB
    );
    CREATE INDEX injects_at ON injects (at);
    CREATE INDEX injects_session ON injects (session_id, seq);
    CREATE INDEX injects_sender ON injects (sender, seq);
    CREATE INDEX injects_verified ON injects (verified_sender, seq)
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to ``SCHEMA_VERSION``; refuse one from the future."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema {current} is newer than this telepty ({SCHEMA_VERSION}); "
            "upgrade telepty"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[version - 1]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version:d}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
