"""Relay end to end: two (three) real daemons with their own homes and machine ids.

A prompt injected on A into ``s@B`` must land in a real tmux pane owned by B's
session exactly once, and A's own record (origin ``relay``) must end with B's outcome.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.helpers import DaemonProcess, free_port, wait_until_sync
from tests.integration.agents import AgentPane, start_agent_pane
from tests.integration.bus_helpers import turn_request


def write_peers(d: DaemonProcess, peers: dict[str, Any]) -> None:
    (d.home / "peers.json").write_text(json.dumps(peers))


def register_pane(d: DaemonProcess, ap: AgentPane, sid: str = "s", *, with_token: bool = False) -> None:
    status, body = d.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": sid, "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent"}, headers={"x-telepty-token": d.token} if with_token else None)
    assert status == 201, body


def a_and_b_with_pane(machines, session, tmp_path: Path) -> tuple[DaemonProcess, DaemonProcess, AgentPane]:  # type: ignore[no-untyped-def]
    """Daemons A and B, A knowing B as a peer, and B's session ``s`` on a fake agent's pane."""
    b = machines("B").start()
    a = machines("A").start()
    write_peers(a, {"B": {"url": b.url}})
    ap = start_agent_pane(session, tmp_path)
    wait_until_sync(lambda: "ready>" in ap.screen(), message="agent ready")
    register_pane(b, ap)
    return a, b, ap


def test_prompt_on_a_lands_in_bs_pane_once(machines, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b, ap = a_and_b_with_pane(machines, session, tmp_path)

    prompt = "hello from A\nsecond line ✓"
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": prompt, "wait": True})
    assert status == 200, body
    assert (body["status"], body["origin"], body["target"], body["session_id"]) == (
        "delivered", "relay", "s@B", "s@b")
    relay = body["evidence"]["relay"]
    assert (relay["peer"], relay["hop"], relay["remote_status"], relay["remote_session_id"]) == (
        "B", 1, "delivered", "s")
    wait_until_sync(lambda: ap.files.submissions() == [prompt], 10, message="one submission on B")
    remote = b.request("GET", f"/api/deliveries/{relay['remote_delivery_id']}")[1]
    assert (remote["status"], remote["origin"], remote["session_id"]) == ("delivered", "api", "s")
    assert remote["idempotency_key"] == f"relay:A:{body['delivery_id']}"

    # The CLI takes the same path.
    cli = a.cli("inject", "s@B", "from the CLI", "--wait", "--json")
    assert cli.returncode == 0, cli.stderr
    out = json.loads(cli.stdout)
    assert (out["status"], out["origin"]) == ("delivered", "relay")
    wait_until_sync(lambda: ap.files.submissions() == [prompt, "from the CLI"], 10, message="two")
    # B's own machine id as host means "here" on B: a plain local delivery.
    status, body = b.request("POST", "/api/sessions/s@B/inject", {"prompt": "local", "wait": True})
    assert (status, body["origin"], body["session_id"]) == (200, "api", "s")
    time.sleep(0.3)  # nothing else may arrive late
    assert ap.files.submissions() == [prompt, "from the CLI", "local"]


def test_unknown_peer_and_hop_limit_refused_without_a_record(machines) -> None:  # type: ignore[no-untyped-def]
    a = machines("A").start()
    status, body = a.request("POST", "/api/sessions/s@nowhere/inject", {"prompt": "x"})
    assert (status, body["error"]) == (404, "unknown_peer")
    write_peers(a, {"B": {"url": "http://127.0.0.1:9"}})
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "x"},
                             headers={"x-telepty-hop": "3"})
    assert (status, body["error"]) == (508, "hop_limit")
    assert a.request("GET", "/api/deliveries")[1] == []


def test_hop_count_is_forwarded_incremented(machines, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = a_and_b_with_pane(machines, session, tmp_path)
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "two hops", "wait": True},
                             headers={"x-telepty-hop": "2"})
    assert status == 200, body
    assert body["evidence"]["relay"]["hop"] == 3
    # B's own refusal is mirrored, not retried: no such session there.
    status, body = a.request("POST", "/api/sessions/nosuch@B/inject", {"prompt": "?", "wait": True})
    assert (body["status"], body["reason"], body["attempts"]) == ("failed", "session_not_found", 1)
    assert "on peer B" in body["detail"]
    # B refuses to relay further once the limit is reached: B → s@A with hop 3.
    write_peers(b, {"A": {"url": a.url}})
    status, body = b.request("POST", "/api/sessions/s@A/inject", {"prompt": "loop"},
                             headers={"x-telepty-hop": "3"})
    assert (status, body["error"]) == (508, "hop_limit")


def test_peer_down_retries_then_fails_peer_unreachable(machines) -> None:  # type: ignore[no-untyped-def]
    a = machines("A").start()
    write_peers(a, {"B": {"url": f"http://127.0.0.1:{free_port()}"}})
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "anyone?"})
    assert status == 202, body
    rec = a.final(body["delivery_id"])
    assert (rec["status"], rec["reason"], rec["attempts"], rec["origin"]) == (
        "failed", "peer_unreachable", 3, "relay")


def test_peer_back_in_time_gets_it_once(machines, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    b = machines("B", port=port).start()
    ap = start_agent_pane(session, tmp_path)
    wait_until_sync(lambda: "ready>" in ap.screen(), message="agent ready")
    register_pane(b, ap)
    b.stop()
    a = machines("A", TELEPTY_RETRY_SCHEDULE=",".join(["0.4"] * 40)).start()
    write_peers(a, {"B": {"url": f"http://127.0.0.1:{port}"}})
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "are you back?"})
    assert status == 202, body

    def retried() -> bool:
        rec = a.request("GET", f"/api/deliveries/{body['delivery_id']}")[1]
        return rec["attempts"] >= 2 and rec["reason"] == "peer_unreachable"

    wait_until_sync(retried, 10, message="A retrying peer_unreachable")
    b.start()
    rec = a.final(body["delivery_id"])
    assert (rec["status"], rec["origin"]) == ("delivered", "relay")
    wait_until_sync(lambda: ap.files.submissions() == ["are you back?"], 10, message="one submission")


def test_peer_token(machines, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = machines("B", TELEPTY_REQUIRE_TOKEN="1").start()
    a = machines("A").start()
    ap = start_agent_pane(session, tmp_path)
    register_pane(b, ap, with_token=True)  # B is strict: even loopback needs its token
    write_peers(a, {"B": {"url": b.url, "token": "wrong"}})
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "no", "wait": True})
    assert (body["status"], body["reason"], body["attempts"]) == ("failed", "peer_unauthorized", 1)
    write_peers(a, {"B": {"url": b.url}})  # no token: A's own token is never sent instead
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "no", "wait": True})
    assert body["reason"] == "peer_unauthorized"
    write_peers(a, {"B": {"url": b.url, "token": b.token}})
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "yes", "wait": True})
    assert (status, body["status"]) == (200, "delivered"), body
    assert ap.files.submissions() == ["yes"]
    assert b.token not in json.dumps(a.request("GET", "/api/deliveries")[1])
    assert b.token not in a.log_path.read_text()


def test_turn_request_on_a_routed_to_b(machines, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b, ap = a_and_b_with_pane(machines, session, tmp_path)
    prompt = "Round 1: your position?"
    turn = turn_request("s@B", prompt, message_id="turn-remote-1")
    status, receipt = a.request("POST", "/api/bus/publish", turn)
    assert status == 202, receipt
    route = receipt["route"]
    assert (route["status"], route["session_id"]) == ("accepted", "s@b"), route
    rec = a.final(route["delivery_id"])
    assert (rec["status"], rec["origin"], rec["idempotency_key"]) == (
        "delivered", "relay", "bus:turn-remote-1")
    wait_until_sync(lambda: len(ap.files.submissions()) == 1, 10, message="one submission on B")
    (text,) = ap.files.submissions()
    assert text.startswith(prompt) and text.count("[telepty] reply expected") <= 1
    events = b.request("GET", "/api/bus/events?kinds=inject_written")[1]["events"]
    (written,) = events
    assert (written["source_host"], written["target"]) == ("B", "s")
    # On A, the relayed delivery's inject_written names the host it was written on, and
    # message_routed follows as for a local route.
    mine = a.request("GET", "/api/bus/events?kinds=inject_written,message_routed")[1]["events"]
    by_kind = {e["kind"]: e for e in mine}
    assert (by_kind["inject_written"]["source_host"], by_kind["inject_written"]["source_type"]) == (
        "B", "relay")
    assert by_kind["inject_written"]["inject_id"] == route["delivery_id"]
    assert by_kind["message_routed"]["request_message_id"] == "turn-remote-1"
    # Published again: delivered at most once.
    status, receipt = a.request("POST", "/api/bus/publish", turn)
    time.sleep(0.5)
    assert len(ap.files.submissions()) == 1


def test_peers_and_list_all_across_three_daemons(machines, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = machines("B", TELEPTY_REQUIRE_TOKEN="1").start()
    a = machines("A").start()
    ap = start_agent_pane(session, tmp_path)
    register_pane(b, ap, with_token=True)  # B is strict: even loopback needs its token
    register_pane(a, ap, "mine")
    down = f"http://127.0.0.1:{free_port()}"
    write_peers(a, {"B": {"url": b.url, "token": b.token}, "C": {"url": down}})

    cli = a.cli("peers", "--json")
    assert cli.returncode == 0, cli.stderr
    peers = {p["name"]: p for p in json.loads(cli.stdout)["peers"]}
    assert (peers["B"]["reachable"], peers["B"]["machine_id"], peers["B"]["has_token"]) == (True, "B", True)
    assert peers["B"]["version"] and peers["B"]["rtt_ms"] >= 0
    assert peers["C"]["reachable"] is False and "peer_unreachable" in peers["C"]["error"]
    assert b.token not in cli.stdout
    table = a.cli("peers")
    assert table.returncode == 0 and "MACHINE_ID" in table.stdout and "RTT" in table.stdout

    status, body = a.request("GET", "/api/sessions?scope=all")
    assert status == 200, body
    got = {(s["address"], s["host"], s["locator"]["machine_id"]) for s in body["sessions"]}
    assert got == {("mine", "A", "A"), ("s@B", "B", "B")}
    reach = {p["name"]: p["reachable"] for p in body["peers"]}
    assert reach == {"B": True, "C": False}
    assert b.token not in json.dumps(body)
    assert a.request("GET", "/api/sessions?scope=nope")[0] == 400
    assert isinstance(a.request("GET", "/api/sessions")[1], list)  # the default is unchanged

    cli = a.cli("list", "--all")
    assert cli.returncode == 0, cli.stderr
    assert "s@B" in cli.stdout and "mine" in cli.stdout
    assert "peer C" in cli.stderr and "unreachable" in cli.stderr
    listed = json.loads(a.cli("list", "--all", "--json").stdout)
    assert sorted(s["address"] for s in listed) == ["mine", "s@B"]

    # A reply address that is a session on A reaches B as mine@A: B's footer points home.
    status, body = a.request("POST", "/api/sessions/s@B/inject",
                             {"prompt": "your view?", "from": "mine", "reply_expected": True, "wait": True})
    assert (status, body["status"]) == (200, "delivered"), body
    remote = b.request("GET", f"/api/deliveries/{body['evidence']['relay']['remote_delivery_id']}",
                       headers={"x-telepty-token": b.token})[1]
    assert (remote["from"], remote["reply_to"]) == ("mine", "mine@A")
    (text,) = [t for t in ap.files.submissions() if t.startswith("your view?")]
    assert text.count("[telepty] reply expected") == 1 and "telepty inject mine@A" in text


def test_crash_at_forward_stage_is_forwarded_again_and_lands_once(machines, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A died after B took the prompt but before recording B's answer: the restart
    forwards again with the same Idempotency-Key, B answers with the delivery it has."""
    import sqlite3

    a, b, ap = a_and_b_with_pane(machines, session, tmp_path)
    # It reached A over one hop already, so A forwards it as hop 2.
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "exactly once", "wait": True},
                             headers={"x-telepty-hop": "1"})
    assert (status, body["status"], body["evidence"]["relay"]["hop"]) == (200, "delivered", 2), body
    did = body["delivery_id"]
    remote_id = body["evidence"]["relay"]["remote_delivery_id"]
    wait_until_sync(lambda: ap.files.submissions() == ["exactly once"], 10, message="one submission")

    a.kill9()
    with sqlite3.connect(a.home / "telepty.db") as conn:  # the row as the crash left it
        conn.execute("UPDATE deliveries SET status = 'delivering', stage = 'forward', "
                     "evidence = json_object('relay', json_object('hop', 2)), "
                     "finished_at = NULL, confirmed = NULL WHERE id = ?", (did,))
    a2 = machines("A").start()  # the same home and machine id: a restart
    rec = a2.final(did)
    assert (rec["status"], rec["attempts"]) == ("delivered", 2), rec
    assert rec["evidence"]["relay"]["remote_delivery_id"] == remote_id
    assert rec["evidence"]["relay"]["hop"] == 2  # the hop count survived the restart
    status, on_b = b.request("GET", "/api/deliveries?session=s")
    assert status == 200 and [d["delivery_id"] for d in on_b] == [remote_id], on_b
    assert ap.files.submissions() == ["exactly once"]
    a2.stop()
