"""Raw keys: ``POST /api/sessions/{id}/keys`` and ``telepty keys``, into real programs.

Keys are deliveries: same queue, same records, same Idempotency-Key; typed unbracketed,
so a permission menu reads them as keys and not as a paste.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import pytest

from telepty.config import Config
from tests.helpers import DaemonProcess, client_final, wait_until, wait_until_sync
from tests.integration.standins import (
    PROGRAMS,
    delivery,
    inject,
    keys,
    register,
    start_standin,
    write_profiles,
)


async def app_client(aiohttp_client: Any, config: Config, **changes: Any) -> Any:
    from telepty.daemon import create_app

    write_profiles(config.home, "[claude]\nsettle_ms = 150\nconfirm_ms = 400\n")
    cfg = config.with_(**{"settle_ms": None, "quiet_ms": 30, "retry_jitter": 0.0, **changes})
    return await aiohttp_client(create_app(cfg))


async def test_keys_answer_the_dialog_a_prompt_was_waiting_on(aiohttp_client, config: Config, session,
                                                              tmp_path) -> None:  # type: ignore[no-untyped-def]
    trigger = tmp_path / "ask"
    sp = start_standin(session, tmp_path, "standin_dialog.py", agent="claude",
                       args=["--dialog-file", str(trigger)])
    await sp.ready()
    # Retries 30 s apart: the prompt must go right after the keys, not at its next retry.
    # audit_content: the keys' record keeps the screen it saw before them.
    client = await app_client(aiohttp_client, config, retry_schedule=(30.0, 30.0), audit_content=True)
    await register(client, sp, "dlg")
    trigger.touch()
    await wait_until(lambda: "Do you want to proceed?" in sp.screen(), message="dialog up")
    _, body = await inject(client, "dlg", prompt="carry on after the dialog")
    did = body["delivery_id"]

    async def blocked() -> dict[str, Any] | None:
        d = await delivery(client, did)
        return d if d["status"] == "retrying" and d["reason"] == "blocked_dialog" else None

    d = await wait_until(blocked, message="prompt waiting on the dialog")
    assert d["evidence"]["pattern"] in (r"Do you want to proceed\?", r"^\s*[│┃|]?\s*❯\s*1\.\s*Yes\b")
    explained = await (await client.get("/api/sessions/dlg/explain")).json()
    assert explained["verdict"] == "blocked"
    assert [(p["delivery_id"], p["reason"]) for p in explained["pending"]] == [(did, "blocked_dialog")]

    status, k = await keys(client, "dlg", "Down", "Enter", wait=True)
    assert status == 200, k
    assert (k["status"], k["kind"], k["keys"], k["confirmed"]) == ("delivered", "keys", ["Down", "Enter"],
                                                                 "unverified")
    assert "Do you want to proceed?" in k["evidence"]["tail_before"]
    d = await client_final(client, did, timeout=10)
    assert d["status"] == "delivered" and d["attempts"] == 2
    assert [e["choice"] for e in sp.events("dialog_answer")] == ["no"]
    assert sp.events("dialog_corrupted") == [] and sp.submissions() == ["carry on after the dialog"]


async def test_keys_records_validation_and_idempotency(aiohttp_client, config: Config, session,
                                                        tmp_path) -> None:  # type: ignore[no-untyped-def]
    sp = start_standin(session, tmp_path, "standin_dialog.py", agent="claude")
    await sp.ready()
    client = await app_client(aiohttp_client, config)
    await register(client, sp, "k1")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"keys": []}, "invalid_keys"), ({"keys": ["Entr"]}, "invalid_keys"),
        ({"keys": "Enter"}, "invalid_keys"), ({"keys": ["Enter"], "bogus": 1}, "invalid_field"),
        ({"keys": ["Enter"], "force": "yes"}, "invalid_field"),
    ]
    for body, code in bad:
        resp = await client.post("/api/sessions/k1/keys", json=body)
        assert resp.status == 400 and (await resp.json())["error"] == code, body
    resp = await client.post("/api/sessions/ghost/keys", json={"keys": ["Enter"]})
    assert resp.status == 404
    assert await (await client.get("/api/deliveries")).json() == []

    headers = {"Idempotency-Key": "keys-1"}
    r1 = await client.post("/api/sessions/k1/keys", json={"keys": [{"text": "hi"}]}, headers=headers)
    r2 = await client.post("/api/sessions/k1/keys", json={"keys": [{"text": "hi"}]}, headers=headers)
    b1, b2 = await r1.json(), await r2.json()
    assert r1.status == 202 and b1["delivery_id"] == b2["delivery_id"] and b1["kind"] == "keys"
    d = await client_final(client, b1["delivery_id"])
    assert d["status"] == "delivered" and d["keys"] == [{"text": "hi"}]
    await wait_until(lambda: '> hi' in sp.screen(), message="typed text in the composer")
    # Typed, not pasted: nothing bracketed reached the program, and nothing was submitted.
    assert sp.submissions() == []
    listed = await (await client.get("/api/deliveries", params={"session": "k1"})).json()
    assert [x["kind"] for x in listed] == ["keys"]


async def test_keys_into_a_spawned_pty(aiohttp_client, config: Config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = await app_client(aiohttp_client, config)
    out = tmp_path / "pty.jsonl"
    trigger = tmp_path / "ask"
    cmd = (f"exec -a claude {shlex.quote(sys.executable)} {PROGRAMS / 'standin_dialog.py'} "
           f"--out {out} --dialog-file {trigger}")
    resp = await client.post("/api/sessions/spawn", json={
        "session_id": "kp", "command": "bash", "args": ["-c", cmd], "cwd": str(tmp_path), "agent": "claude"})
    assert resp.status == 201

    async def verdict(v: str) -> bool:
        return (await (await client.get("/api/sessions/kp/explain")).json())["verdict"] == v

    await wait_until(lambda: verdict("idle"), message="idle")
    trigger.touch()
    await wait_until(lambda: verdict("blocked"), message="dialog seen in the PTY output")
    status, k = await keys(client, "kp", "2", wait=True)
    assert status == 200 and k["evidence"]["transport"] == "pty"
    await wait_until(lambda: verdict("idle"), message="dialog gone")
    log = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["choice"] for e in log if e.get("event") == "dialog_answer"] == ["no"]


# -- the CLI, against a real daemon process ---------------------------------------------------


@pytest.fixture
def cli_daemon(daemon_factory) -> DaemonProcess:  # type: ignore[no-untyped-def]
    return daemon_factory(TELEPTY_SETTLE_MS="", TELEPTY_QUIET_MS="30").start()


def test_cli_keys_and_explain(cli_daemon: DaemonProcess, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    trigger = tmp_path / "ask"
    sp = start_standin(session, tmp_path, "standin_dialog.py", agent="claude",
                       args=["--dialog-file", str(trigger)])
    wait_until_sync(lambda: "for shortcuts" in sp.screen(), 10, message="stand-in up")
    status, _ = cli_daemon.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": "cl", "tmux_pane": sp.pane_id, "tmux_socket": sp.socket_path,
        "agent": "claude"})
    assert status == 201
    # It has just drawn its screen: explain says busy until that is a quiet window old
    # (the daemon knows a pane's last output to the second before it has watched it).
    res = wait_until_sync(lambda: (r := cli_daemon.cli("explain", "cl")).returncode == 0
                          and "verdict    idle" in r.stdout and r, 10, message="explain idle")
    assert "profile    claude:" in res.stdout
    assert "agent      claude (process tree: claude" in res.stdout and "running" in res.stdout

    trigger.touch()
    wait_until_sync(lambda: "Do you want to proceed?" in sp.screen(), message="dialog up")
    res = cli_daemon.cli("explain", "cl", "--lines", "5")
    assert "verdict    blocked" in res.stdout and "Do you want to proceed" in res.stdout
    res = cli_daemon.cli("explain", "cl", "--json")
    assert json.loads(res.stdout)["verdict"] == "blocked"

    res = cli_daemon.cli("keys", "cl", "Down", "Enter", "--wait")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("dlv_") and "delivered" in res.stdout
    wait_until_sync(lambda: [e.get("choice") for e in sp.events("dialog_answer")] == ["no"],
                    message="dialog answered by the CLI")

    res = cli_daemon.cli("keys", "cl", "Entr")
    assert res.returncode != 0 and "invalid_keys" in res.stderr
    res = cli_daemon.cli("explain", "nobody")
    assert res.returncode != 0 and "session_not_found" in res.stderr
