"""Pure pieces of the foundation: config parsing, migrations, naming, registry rules."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from telepty.config import Config, ConfigError, parse_retry_schedule
from telepty.sessions.naming import default_session_id, slug
from telepty.store.migrations import SCHEMA_VERSION, migrate


def test_config_defaults() -> None:
    c = Config.from_env({})
    assert (c.host, c.port) == ("127.0.0.1", 3848)
    assert c.retry_schedule == (30.0, 180.0, 600.0)
    assert c.quiet_ms == 2000
    assert c.trust_tailscale is True and c.require_token is False
    assert c.base_url == "http://127.0.0.1:3848"


def test_config_from_env() -> None:
    c = Config.from_env({
        "TELEPTY_HOME": "/tmp/th", "TELEPTY_HOST": "0.0.0.0", "TELEPTY_PORT": "4000",
        "TELEPTY_MACHINE_ID": "m1", "TELEPTY_RETRY_SCHEDULE": "[0.3, 0.6]",
        "TELEPTY_TRUST_TAILSCALE": "0", "TELEPTY_REQUIRE_TOKEN": "1",
        "TELEPTY_PEER_ALLOWLIST": "10.0.0.1, 192.168.0.0/24",
        "TELEPTY_ALLOWED_ORIGINS": "http://localhost:5173",
    })
    assert c.home == Path("/tmp/th") and c.port == 4000 and c.machine_id == "m1"
    assert c.retry_schedule == (0.3, 0.6)
    assert c.trust_tailscale is False and c.require_token is True
    assert c.peer_allowlist == ("10.0.0.1", "192.168.0.0/24")
    assert c.allowed_origins == ("http://localhost:5173",)
    assert c.base_url == "http://127.0.0.1:4000"  # 0.0.0.0 is reached on loopback


@pytest.mark.parametrize("env", [
    {"TELEPTY_PORT": "abc"},
    {"TELEPTY_RETRY_SCHEDULE": "30,x"},
    {"TELEPTY_RETRY_SCHEDULE": "-1"},
    {"TELEPTY_REQUIRE_TOKEN": "maybe"},
])
def test_config_rejects_garbage(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Config.from_env(env)


def test_retry_schedule_forms() -> None:
    assert parse_retry_schedule("30,180,600") == (30.0, 180.0, 600.0)
    assert parse_retry_schedule("[]") == ()


def test_migrations_from_scratch_and_idempotent(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "events", "deliveries"} <= tables
    assert migrate(conn) == SCHEMA_VERSION  # nothing re-applied


def test_migrations_refuse_a_future_schema(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        migrate(conn)


def test_migration_upgrades_an_old_schema(tmp_path: Path) -> None:
    from telepty.store import migrations

    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.executescript(migrations.MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO sessions (id, type, state, created_at, updated_at) "
                 "VALUES ('s', 'wrapped', 'running', 'a', 'b')")
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("SELECT id FROM sessions").fetchone()[0] == "s"


def test_naming() -> None:
    taken = {"claude-myproj-1"}
    assert default_session_id("claude --x", "/a/myproj", "claude", taken.__contains__) == "claude-myproj-2"
    assert default_session_id("/usr/bin/bash -l", "", "other", lambda _: False) == "bash-1"
    assert slug("my proj!!") == "my-proj"


def test_body_cap_setting() -> None:
    assert Config.from_env({}).max_body_bytes == 4 * 1024 * 1024
    assert Config.from_env({"TELEPTY_MAX_BODY_BYTES": "2000"}).max_body_bytes == 2000
    with pytest.raises(ConfigError):
        Config.from_env({"TELEPTY_MAX_BODY_BYTES": "0"})
