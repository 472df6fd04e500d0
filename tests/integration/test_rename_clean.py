"""``rename`` and ``clean``: exact ids only, nothing in flight, nothing alive removed."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path

import libtmux
import pytest

from telepty.api.keys import IDENTITIES, REGISTRY
from telepty.clock import to_iso
from telepty.sessions.model import SessionState
from tests.helpers import DaemonProcess, wait_until
from tests.integration.agents import agent_argv, agent_files, start_agent_pane
from tests.integration.identity_helpers import agent_panes, db_rows, register_pane, register_sender
from tests.integration.test_wrap_cli import BASH, Launch, pane_launcher, running, wait_session

pytestmark = pytest.mark.integration


async def rename(client, old: str, new: str):  # type: ignore[no-untyped-def]
    resp = await client.post(f"/api/sessions/{old}/rename", json={"new_id": new})
    return resp.status, await resp.json()


async def test_rename_moves_a_pane_session_and_delivery_follows(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    panes = await agent_panes(client, session, tmp_path, ["a"])
    status, body = await rename(client, "a", "reviewer")
    assert status == 200, body
    assert (body["old_id"], body["new_id"], body["session"]["alias"]) == ("a", "reviewer", "reviewer")
    assert (await client.get("/api/sessions/a")).status == 404
    resp = await client.post("/api/sessions/reviewer/inject", json={"prompt": "still you?", "wait": True})
    assert resp.status == 200, await resp.text()
    await wait_until(lambda: panes["a"].files.submissions() == ["still you?"], message="same pane got it")


async def test_rename_refuses_taken_names_bad_names_and_aliases(client) -> None:  # type: ignore[no-untyped-def]
    await register_sender(client, "x")
    await register_sender(client, "y")
    assert (await rename(client, "x", "y"))[1]["error"] == "session_exists"
    assert (await rename(client, "x", "bad name"))[0] == 400
    assert (await rename(client, "x", "x"))[0] == 400
    assert (await client.post("/api/sessions/x/rename", json={})).status == 400
    # "w1" answers as an alias only (its original session was replaced, then cleaned): a
    # rename by that name must not reach the session behind the alias.
    resp = await client.post("/api/sessions/register", json={"type": "wrapped", "session_id": "w1",
                                                             "pid": os.getpid()})
    assert resp.status == 201
    resp = await client.post("/api/sessions/register", json={"type": "wrapped", "session_id": "w1",
                                                             "pid": os.getppid(), "replace": True})
    assert (await resp.json())["id"] == "w1-2"
    resp = await client.post("/api/sessions/clean", json={})
    assert (await resp.json())["removed"] == ["w1"]
    status, body = await rename(client, "w1", "hijacked")
    assert status == 404 and body["error"] == "session_not_found"
    assert (await (await client.get("/api/sessions/w1-2")).json())["alias"] == "w1"


async def test_rename_waits_for_pending_deliveries(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path, "busy", busy=True)
    await wait_until(lambda: "working" in ap.screen(), message="agent busy")
    await register_pane(client, ap, "busy")
    resp = await client.post("/api/sessions/busy/inject", json={"prompt": "later"})
    did = (await resp.json())["delivery_id"]
    status, body = await rename(client, "busy", "renamed")
    assert status == 409 and body["error"] == "deliveries_pending"
    await client.delete(f"/api/deliveries/{did}")
    status, body = await rename(client, "busy", "renamed")
    assert status == 200, body


async def test_a_renamed_spawned_session_keeps_its_process_token_and_exit(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = agent_files(tmp_path, "sp")
    argv = agent_argv(files)
    resp = await client.post("/api/sessions/spawn", json={"session_id": "sp", "command": argv[0],
                                                          "args": argv[1:], "cwd": str(tmp_path)})
    assert resp.status == 201
    pid = (await resp.json())["pid"]
    svc = client.server.app
    token_hash = svc[IDENTITIES]._hashes["sp"]
    status, _ = await rename(client, "sp", "sp-renamed")
    assert status == 200
    assert svc[IDENTITIES]._hashes["sp-renamed"] == token_hash and "sp" not in svc[IDENTITIES]._hashes
    resp = await client.post("/api/sessions/sp-renamed/inject", json={"prompt": "hi", "wait": True,
                                                                      "timeout": 20})
    assert resp.status == 200, await resp.text()
    await wait_until(lambda: files.submissions() == ["hi"], message="the same process got it")
    os.kill(pid, signal.SIGTERM)

    async def exited() -> bool:
        s = await (await client.get("/api/sessions/sp-renamed")).json()
        return bool(s["state"] == "exited")

    await wait_until(exited, 10, message="exit recorded under the new id")


async def test_clean_removes_only_exited_sessions_and_their_tokens(client) -> None:  # type: ignore[no-untyped-def]
    svc = client.server.app
    await register_sender(client, "live")
    await register_sender(client, "old")
    await register_sender(client, "recent")
    for sid in ("old", "recent"):
        await svc[REGISTRY].set_state(sid, SessionState.EXITED)
    svc[REGISTRY].get("old").last_activity_at = to_iso(time.time() - 3 * 86400)  # type: ignore[union-attr]
    resp = await client.post("/api/sessions/clean", json={"older_than": "1d", "dry_run": True})
    assert (await resp.json())["removed"] == ["old"]
    assert (await client.get("/api/sessions/old")).status == 200  # a dry run removes nothing
    resp = await client.post("/api/sessions/clean", json={"older_than": "1d"})
    assert (await resp.json())["removed"] == ["old"]
    resp = await client.post("/api/sessions/clean", json={})
    assert (await resp.json())["removed"] == ["recent"]
    sessions = await (await client.get("/api/sessions")).json()
    assert [s["id"] for s in sessions] == ["live"]
    assert sorted(svc[IDENTITIES]._hashes) == ["live"]
    for bad in ({"older_than": "soon"}, {"older_than": -1}, {"exited": False}, {"dry_run": "yes"}):
        assert (await client.post("/api/sessions/clean", json=bad)).status == 400, bad


# -- through the CLI, with a real wrapper ------------------------------------------------------


@pytest.fixture
def launch(session: libtmux.Session, tmp_path: Path, home: Path) -> Launch:
    return pane_launcher(session, tmp_path, home)


def test_renamed_wrapper_comes_back_under_its_new_id(daemon_factory, launch: Launch, home: Path) -> None:  # type: ignore[no-untyped-def]
    daemon: DaemonProcess = daemon_factory().start()
    run = launch("wrap", "--id", "w1", "--", *BASH)
    wait_session(daemon, "w1", running, "running")
    out = daemon.cli("rename", "w1", "w9")
    assert out.returncode == 0, out.stderr
    assert "renamed w1 → w9" in out.stdout
    daemon.stop()
    daemon = daemon_factory().start()
    wait_session(daemon, "w9", running, "running again after the daemon restart")
    status, _ = daemon.request("GET", "/api/sessions/w1")
    assert status == 404  # the wrapper registered the new id, not the old one
    # The child's token followed the rename: it is still recognised as this session.
    run.type(f"{shlex.quote(sys.executable)} -m telepty whoami | sed 's/^/me=/'; echo rc=$?")
    run.shows("me=w9")
    assert [r["session_id"] for r in db_rows(home, "SELECT session_id FROM session_tokens")] == ["w9"]


def test_cli_clean_and_rename_errors_exit_non_zero(daemon: DaemonProcess) -> None:
    out = daemon.cli("rename", "nope", "other")
    assert out.returncode != 0 and "session_not_found" in out.stderr
    out = daemon.cli("clean", "--older-than", "later")
    assert out.returncode != 0 and "invalid_query" in out.stderr
    out = daemon.cli("clean", "--exited")
    assert out.returncode == 0 and "nothing to clean" in out.stdout
