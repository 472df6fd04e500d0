"""This project's CLI pointed (TELEPTY_URL) at a Node.js telepty daemon.

It must say in one line which daemon that is and which commands work there, never a
traceback; and those commands (inject, list, spawn, kill, bus publish) must work,
sending what that daemon reads. The daemon is tests/integration/node_daemon_stub.py,
answering as the Node.js daemon 0.1.96 answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import daemon_env, run_cli
from tests.integration.node_daemon_stub import INJECT_ID, NodeDaemonStub, node_session

REFUSAL = ("is the Node.js telepty 0.1.96, not this implementation; against it only inject, list, spawn, "
           "kill and bus publish work")


@pytest.fixture
def stub() -> Iterator[NodeDaemonStub]:
    s = NodeDaemonStub().start()
    s.sessions["n1"] = node_session("n1", "claude --continue")
    s.sessions["n10"] = node_session("n10", "bash")
    yield s
    s.stop()


@pytest.fixture
def env(stub: NodeDaemonStub, home: Path) -> dict[str, str]:
    return daemon_env(home, TELEPTY_URL=stub.url)


def test_list_spawn_inject_kill_publish_work(
    stub: NodeDaemonStub, env: dict[str, str], tmp_path: Path,
) -> None:
    r = run_cli("list", env=env)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0][:4] == ["ID", "TYPE", "AGENT", "STATE"]
    assert [row[:4] for row in rows[1:]] == [["n1", "spawned", "claude", "running"],
                                            ["n10", "spawned", "other", "running"]]

    r = run_cli("spawn", "--id", "n2", "--cwd", str(tmp_path), "--", "bash", "--norc", env=env)
    assert (r.returncode, r.stdout.strip()) == (0, "n2"), r.stderr
    spawned = next(b for m, p, b in stub.requests if p == "/api/sessions/spawn")
    assert (spawned["session_id"], spawned["command"], spawned["args"], spawned["cwd"]) == (
        "n2", "bash", ["--norc"], str(tmp_path))

    r = run_cli("inject", "--from", "orch", "--force", "n2", "run the tests", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{INJECT_ID} written (by the Node.js telepty 0.1.96: not confirmed)"
    assert "has no --force: ignored" in r.stderr
    sent = next(b for m, p, b in stub.requests if p == "/api/sessions/n2/inject")
    assert sent == {"prompt": "run the tests", "from": "orch"}

    r = run_cli("kill", "n2", env=env)
    assert (r.returncode, r.stdout.strip()) == (0, "killed n2"), r.stderr
    assert "n2" not in stub.sessions

    r = run_cli("bus", "publish", "build.done", "--payload", '{"ok": true}', env=env)
    assert r.returncode == 0, r.stderr
    assert "published build.done to 0 subscriber(s) of the Node.js telepty 0.1.96" in r.stdout
    assert next(b for m, p, b in stub.requests if p == "/api/bus/publish") == {
        "kind": "build.done", "payload": {"ok": True}}
    assert "Traceback" not in r.stderr


def test_its_errors_read_as_ours(stub: NodeDaemonStub, env: dict[str, str]) -> None:
    r = run_cli("inject", "nobody", "hello", env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("telepty: session_not_found: Session not found")
    r = run_cli("inject", "--json", "nobody", "hello", env=env)
    assert json.loads(r.stdout)["error"] == "session_not_found"


def test_kill_takes_exact_ids_even_where_the_daemon_resolves_aliases(
    stub: NodeDaemonStub, env: dict[str, str],
) -> None:
    """The Node.js daemon deletes whatever an alias or prefix resolves to; kill never does."""
    r = run_cli("kill", "n", env=env)
    assert r.returncode == 1 and "no session with exactly the id 'n'" in r.stderr
    assert not any(m == "DELETE" for m, _, _ in stub.requests)
    assert set(stub.sessions) == {"n1", "n10"}


@pytest.mark.parametrize("argv", [
    ("screen", "n1"), ("deliveries",), ("keys", "n1", "Enter"), ("rename", "n1", "n9"), ("clean",),
    ("explain", "n1"), ("attach", "n1"), ("bus", "tail"), ("multicast", "n1,n10", "hi"), ("injects",),
    ("wrap", "--", "true"),
])
def test_every_other_command_says_so_in_one_line(
    stub: NodeDaemonStub, env: dict[str, str], argv: tuple[str, ...],
) -> None:
    r = run_cli(*argv, env=env, timeout=20)
    assert r.returncode == 3, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and REFUSAL in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"telepty: the daemon at {stub.url} ")
    assert stub.paths() == ["GET /api/meta"]  # asked who it is; nothing else was sent


def test_the_refusal_as_json(stub: NodeDaemonStub, env: dict[str, str]) -> None:
    r = run_cli("screen", "n1", "--json", env=env)
    assert r.returncode == 3
    assert json.loads(r.stdout)["error"] == "foreign_daemon"


def test_an_older_node_daemon_without_meta_is_known_by_its_health(home: Path) -> None:
    stub = NodeDaemonStub(with_meta=False, version="0.1.40").start()
    try:
        stub.sessions["old"] = node_session("old", "codex")
        env = daemon_env(home, TELEPTY_URL=stub.url)
        r = run_cli("list", env=env)
        assert r.returncode == 0 and r.stdout.splitlines()[1].split()[:3] == ["old", "spawned", "codex"]
        r = run_cli("screen", "old", env=env)
        assert r.returncode == 3 and "is the Node.js telepty 0.1.40, not this implementation" in r.stderr
        assert "<html" not in r.stderr and "Traceback" not in r.stderr
    finally:
        stub.stop()
