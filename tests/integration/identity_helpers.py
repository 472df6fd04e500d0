"""Helpers for the issue-8 tests: fake agents in panes, senders with session tokens."""

from __future__ import annotations

import os
import shlex
import sqlite3
import sys
from pathlib import Path

from telepty.api.keys import IDENTITIES
from tests.helpers import wait_until
from tests.integration.agents import FAKE_AGENT, AgentFiles, AgentPane, agent_files, start_agent_pane


async def register_pane(client, ap: AgentPane, sid: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": sid, "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent",
    })
    assert resp.status == 201, await resp.text()


async def agent_panes(client, session, tmp_path: Path, names: list[str]) -> dict[str, AgentPane]:  # type: ignore[no-untyped-def]
    """One fake agent per name, each in its own tmux window, ready and registered under that name."""
    panes = {n: start_agent_pane(session, tmp_path, n) for n in names}
    for n, ap in panes.items():
        await wait_until(lambda ap=ap: "ready>" in ap.screen(), 10, message=f"agent {n} ready")
        await register_pane(client, ap, n)
    return panes


async def token_for(client, session_id: str) -> str:  # type: ignore[no-untyped-def]
    """A session token for a registered session, as a wrapper or spawn would have issued it."""
    return await client.server.app[IDENTITIES].issue(session_id)


async def register_sender(client, sid: str = "me") -> str:  # type: ignore[no-untyped-def]
    """A live wrapped session (this process's pid keeps it alive) and its token."""
    resp = await client.post("/api/sessions/register", json={
        "type": "wrapped", "session_id": sid, "pid": os.getpid(), "command": "agent"})
    assert resp.status == 201, await resp.text()
    return await token_for(client, sid)


def spawned_agent_command(files: AgentFiles, token_file: Path) -> list[str]:
    """A spawned fake agent that first writes its own TELEPTY_SESSION_TOKEN to ``token_file``
    (how a test gets hold of a token that only ever existed in a child's environment)."""
    agent = shlex.join([sys.executable, FAKE_AGENT, "--out", str(files.out), "--raw-out", str(files.raw)])
    script = f'printf %s "$TELEPTY_SESSION_TOKEN" > {shlex.quote(str(token_file))}; exec {agent}'
    return ["sh", "-c", script]


def db_rows(home: Path, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(home / "telepty.db")
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def all_files_bytes(root: Path) -> bytes:
    """Every byte under ``root`` (the daemon's home: database, WAL, logs)."""
    out = b""
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out += p.read_bytes()
    return out


__all__ = ["agent_files"]
