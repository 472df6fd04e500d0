"""The bus on NATS JetStream, end to end: a real ``nats-server -js`` on a loopback port
with two or three real daemons, each with its own home and machine id.

What must hold: a turn_request published on one machine reaches a pane on another; a
prompt for a machine whose daemon is down waits and is delivered once when it comes
back; kill -9 of a daemon mid-delivery loses and duplicates nothing; every machine's
events replay in one order from a cursor, on any daemon; a NATS server restart loses
nothing that was acknowledged.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import DaemonProcess, wait_until, wait_until_sync
from tests.integration.agents import start_agent_pane
from tests.integration.bus_helpers import Frames, turn_request
from tests.integration.nats_helpers import NatsServer, stop_leftover_servers
from tests.integration.test_relay import register_pane

pytestmark = pytest.mark.integration


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """Requested before ``machines``, so it is stopped after the daemons."""
    yield NatsServer(tmp_path / "nats").start()
    stop_leftover_servers()


@pytest.fixture
def nats_nkey_server(tmp_path: Path) -> Iterator[NatsServer]:
    """The same, asking for an nkey: the daemons read its seed from a file."""
    yield NatsServer(tmp_path / "nats", auth="nkey").start()
    stop_leftover_servers()


def on_nats(machines: Any, server: NatsServer, name: str, **env: str) -> DaemonProcess:
    return machines(name, **server.env(), **env)  # type: ignore[no-any-return]


def events_since(d: DaemonProcess, since: int, *, kinds: str = "", page: int = 1000) -> list[dict[str, Any]]:
    """Every event after ``since``, paging with ``next_since`` as a reader would."""
    out: list[dict[str, Any]] = []
    while True:
        query = f"/api/bus/events?since={since}&limit={page}" + (f"&kinds={kinds}" if kinds else "")
        status, body = d.request("GET", query)
        assert status == 200, body
        out += body["events"]
        since = body["next_since"]
        if not body["more"]:
            return out


def last_seq(d: DaemonProcess) -> int:
    return int(d.request("GET", "/api/bus/events?limit=1")[1]["last_seq"])


def pane_on(d: DaemonProcess, session: Any, tmp_path: Path, **kw: Any) -> Any:
    ap = start_agent_pane(session, tmp_path, **kw)
    if not kw.get("busy"):
        wait_until_sync(lambda: "ready>" in ap.screen(), message="agent ready")
    register_pane(d, ap)
    return ap


def test_turn_request_published_on_a_reaches_a_pane_on_c(nats_server, machines, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = on_nats(machines, nats_server, "C").start()
    b = on_nats(machines, nats_server, "B").start()
    a = on_nats(machines, nats_server, "A").start()
    ap = pane_on(c, session, tmp_path)
    start = last_seq(b)

    prompt = "Round 1, over NATS: your position?"
    turn = turn_request("s@C", prompt, message_id="turn-fleet-1")
    status, receipt = a.request("POST", "/api/bus/publish", turn)
    assert status == 202, receipt
    route = receipt["route"]
    assert (route["status"], route["session_id"]) == ("accepted", "s@c"), route
    rec = a.final(route["delivery_id"])
    assert (rec["status"], rec["origin"], rec["idempotency_key"]) == (
        "delivered", "relay", "bus:turn-fleet-1")
    relay = rec["evidence"]["relay"]
    assert (relay["via"], relay["stream"], relay["remote_status"], relay["machine_id"]) == (
        "nats", "telepty-work-c", "delivered", "C"), relay
    wait_until_sync(lambda: ap.files.submissions() == [prompt], 10, message="the prompt in C's pane")
    remote = c.delivery(relay["remote_delivery_id"])
    assert (remote["status"], remote["origin"], remote["session_id"], remote["idempotency_key"]) == (
        "delivered", "api", "s", f"relay:A:{route['delivery_id']}")

    # B took no part, and reads the whole story from the one stream, in order.
    def story() -> list[dict[str, Any]] | None:
        events = events_since(b, start)
        return events if any(e["kind"] == "message_routed" for e in events) else None

    events = wait_until_sync(story, 10, message="message_routed on the stream")
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    kinds = ("turn_request", "inject_written", "message_routed", "relay.status")
    told = [(e["kind"], e["source_host"], e.get("source_type") or e.get("status"))
            for e in events if e["kind"] in kinds]
    assert told[0] == ("turn_request", "A", None)
    assert ("inject_written", "C", "api") in told  # written on C, by C
    assert ("relay.status", "C", "delivered") in told
    written_on_a = told.index(("inject_written", "C", "relay"))  # A's record, naming the host
    assert told[written_on_a + 1:][-1] == ("message_routed", "A", None)
    assert told.index(("relay.status", "C", "delivered")) < written_on_a

    # Published again: the stream keeps one copy and nothing is typed twice.
    status, again = a.request("POST", "/api/bus/publish", turn)
    assert (status, again["duplicate"], again["seq"]) == (202, True, receipt["seq"])
    assert again["route"]["delivery_id"] == route["delivery_id"]
    time.sleep(0.5)  # nothing else may arrive late
    assert ap.files.submissions() == [prompt]


def test_a_prompt_for_a_machine_that_is_down_is_delivered_once_when_it_returns(  # type: ignore[no-untyped-def]
        nats_server, machines, session, tmp_path) -> None:
    b = on_nats(machines, nats_server, "B").start()
    ap = pane_on(b, session, tmp_path)
    b.stop()
    a = on_nats(machines, nats_server, "A").start()
    status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "while you were out"})
    assert status == 202, body
    did = body["delivery_id"]

    def queued() -> dict[str, Any] | None:
        rec = a.delivery(did)
        return rec if rec["evidence"].get("relay", {}).get("work_seq") else None

    rec = wait_until_sync(queued, 10, message="the prompt in B's work queue")
    # Seen from the sender all along: on its way, waiting in B's queue.
    assert (rec["status"], rec["stage"], rec["evidence"]["relay"]["remote_status"]) == (
        "delivering", "forward", "queued"), rec
    a.kill9()  # the sender dying meanwhile changes nothing either
    a = on_nats(machines, nats_server, "A").start()
    rec = wait_until_sync(queued, 10, message="the resumed record")
    assert (rec["status"], rec["evidence"]["relay"]["remote_status"]) == ("delivering", "queued")
    assert ap.files.submissions() == []

    b = on_nats(machines, nats_server, "B").start()
    rec = a.final(did)
    assert (rec["status"], rec["origin"], rec["evidence"]["relay"]["remote_status"]) == (
        "delivered", "relay", "delivered"), rec
    wait_until_sync(lambda: ap.files.submissions() == ["while you were out"], 10, message="one submission")

    # Acknowledged once final: another start of B is handed nothing again.
    b.stop()
    b = on_nats(machines, nats_server, "B").start()
    time.sleep(0.5)  # nothing else may arrive late
    assert ap.files.submissions() == ["while you were out"]
    on_b = b.request("GET", "/api/deliveries?session=s")[1]
    assert [(d["idempotency_key"], d["status"]) for d in on_b] == [(f"relay:A:{did}", "delivered")]
    doctor = b.cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["nats work queue"]["ok"], checks
    assert "0 waiting" in checks["nats work queue"]["detail"]


def test_kill_9_of_the_target_mid_delivery_loses_and_duplicates_nothing(  # type: ignore[no-untyped-def]
        nats_server, machines, session, tmp_path) -> None:
    patient = {"TELEPTY_RETRY_SCHEDULE": ",".join(["0.3"] * 200)}
    b = on_nats(machines, nats_server, "B", **patient).start()
    ap = pane_on(b, session, tmp_path, busy=True)  # prints until its stop file appears
    a = on_nats(machines, nats_server, "A").start()
    prompts = [f"prompt {i} ✓" for i in range(3)]
    ids = []
    for p in prompts:
        status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": p})
        assert status == 202, body
        ids.append(body["delivery_id"])

    def b_is_retrying() -> bool:
        recs = b.request("GET", "/api/deliveries?session=s")[1]
        return len(recs) == 1 and recs[0]["status"] == "retrying" and recs[0]["attempts"] >= 2

    # One at a time, in order: A keeps the others until B has reported on the first.
    wait_until_sync(b_is_retrying, 15, message="B retrying the first prompt (the agent is busy)")
    assert [a.delivery(i)["status"] for i in ids] == ["delivering", "queued", "queued"]
    first = wait_until_sync(lambda: a.delivery(ids[0])["evidence"]["relay"].get("remote_status") == "retrying"
                            and a.delivery(ids[0])["evidence"]["relay"], 10, message="A seeing B retry")
    assert first["remote_attempts"] >= 1, first
    b.kill9()
    b = on_nats(machines, nats_server, "B", **patient).start()
    ap.files.stop.touch()  # the agent falls quiet
    recs = a.finals(ids, 40)
    assert [r["status"] for r in recs] == ["delivered"] * 3, recs
    wait_until_sync(lambda: ap.files.submissions() == prompts, 15, message="each prompt once, in order")
    time.sleep(0.5)  # nothing else may arrive late
    assert ap.files.submissions() == prompts
    on_b = b.request("GET", "/api/deliveries?session=s")[1]
    assert sorted(d["idempotency_key"] for d in on_b) == sorted(f"relay:A:{i}" for i in ids)
    assert {d["status"] for d in on_b} == {"delivered"}


async def test_the_events_of_all_daemons_replay_in_one_order_from_a_cursor(  # type: ignore[no-untyped-def]
        nats_nkey_server, machines) -> None:
    server = nats_nkey_server
    daemons = {n: on_nats(machines, server, n).start() for n in "ABC"}
    cursor = last_seq(daemons["A"])
    receipts: dict[str, int] = {}

    def publish_from(name: str) -> None:
        for i in range(20):
            status, body = daemons[name].request(
                "POST", "/api/bus/publish", {"kind": "fleet.test", "message_id": f"{name}-{i}",
                                             "payload": {"n": i}})
            assert status == 202, body
            receipts[body["message_id"]] = body["seq"]

    threads = [threading.Thread(target=publish_from, args=(n,)) for n in daemons]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(receipts) == 60

    replays = {n: events_since(d, cursor, kinds="fleet.test", page=7) for n, d in daemons.items()}
    order = [(e["seq"], e["message_id"]) for e in replays["A"]]
    assert order == [(e["seq"], e["message_id"]) for e in replays["B"]]
    assert order == [(e["seq"], e["message_id"]) for e in replays["C"]]
    assert sorted(receipts.items(), key=lambda kv: kv[1]) == [(m, s) for s, m in order]
    assert [s for s, _ in order] == sorted({s for s, _ in order})
    for n in daemons:  # each machine's events in the order it accepted them
        assert [e["payload"]["n"] for e in replays["A"] if e["source_host"] == n] == list(range(20))

    async with aiohttp.ClientSession() as http:
        ws = "ws" + daemons["A"].url[len("http"):] + f"/api/bus?since={cursor}&kinds=fleet.test"
        frames = Frames(await http.ws_connect(ws))
        await frames.wait_live()
        assert [(e["seq"], e["message_id"]) for e in frames.events] == order
        status, late = daemons["C"].request("POST", "/api/bus/publish",
                                            {"kind": "fleet.test", "message_id": "C-late"})
        assert status == 202
        await wait_until(lambda: frames.events[-1]["message_id"] == "C-late", 10,
                         message="C's event live on A's socket")
        assert frames.events[-1]["seq"] == late["seq"] > order[-1][0]
        await frames.close()

    # The same message id from another machine is the same event: stored once.
    status, dup = daemons["B"].request("POST", "/api/bus/publish",
                                       {"kind": "fleet.test", "message_id": "A-3"})
    assert (status, dup["duplicate"], dup["seq"]) == (202, True, receipts["A-3"])
    two = events_since(daemons["B"], cursor, kinds="fleet.test,session_register")
    assert [e["message_id"] for e in two if e["kind"] == "fleet.test"][-1] == "C-late"


def test_a_nats_server_restart_loses_nothing_that_was_acknowledged(nats_server, machines) -> None:  # type: ignore[no-untyped-def]
    a = on_nats(machines, nats_server, "A").start()
    b = on_nats(machines, nats_server, "B").start()
    stop = threading.Event()
    acked: dict[str, int] = {}
    refused: list[Any] = []

    def publisher(d: DaemonProcess, name: str) -> None:
        i = 0
        while not stop.is_set():
            mid = f"{name}-{i}"
            try:
                status, body = d.request("POST", "/api/bus/publish",
                                         {"kind": "restart.test", "message_id": mid}, timeout=30)
            except OSError as exc:
                refused.append((mid, repr(exc)))
            else:
                if status == 202:
                    acked[mid] = body["seq"]
                else:
                    refused.append((mid, status, body))
            i += 1

    threads = [threading.Thread(target=publisher, args=(d, d.env["TELEPTY_MACHINE_ID"])) for d in (a, b)]
    for t in threads:
        t.start()
    try:
        wait_until_sync(lambda: len(acked) >= 100, 20, message="publishing under way")
        nats_server.kill9()  # not even a chance to flush on the way out
        before = len(acked)
        nats_server.start()  # the same port and store
        wait_until_sync(lambda: len(acked) >= before + 100, 30, message="publishing again after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    stored = events_since(a, 0, kinds="restart.test")
    by_id = {e["message_id"]: e["seq"] for e in stored}
    assert len(by_id) == len(stored), "a message id stored twice"
    lost = {m: s for m, s in acked.items() if by_id.get(m) != s}
    assert not lost, f"acknowledged but not in the stream at their seq: {lost}"
    assert all(body[1] == 503 for body in refused if len(body) == 3), refused
    # The feed and the work queues came back too: a prompt crosses and its outcome returns.
    _, body = a.request("POST", "/api/sessions/nobody@B/inject",
                        {"prompt": "anyone?", "wait": True, "timeout": 20}, timeout=30)
    assert (body["status"], body["reason"], body["evidence"]["relay"]["via"]) == (
        "failed", "session_not_found", "nats"), body


def test_without_nats_py_the_daemon_says_what_to_install(machines, tmp_path) -> None:  # type: ignore[no-untyped-def]
    hidden = tmp_path / "no-nats"
    (hidden / "nats").mkdir(parents=True)
    (hidden / "nats" / "__init__.py").write_text("raise ImportError('nats-py is not installed here')\n")
    d = machines("A", PYTHONPATH=str(hidden), TELEPTY_BUS_URL="nats://127.0.0.1:4222")
    out = subprocess.run([sys.executable, "-m", "telepty", "daemon", "--port", "0"], env=d.env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, out
    assert "pip install 'telepty[nats]'" in out.stderr, out.stderr
    # Without TELEPTY_BUS_URL the same daemon never imports it: the SQLite bus as ever.
    plain = machines("B", PYTHONPATH=str(hidden)).start()
    status, body = plain.request("POST", "/api/bus/publish", {"kind": "plain.test"})
    assert (status, body["seq"]) == (202, 1), body


def test_refused_credentials_stop_the_daemon_with_a_clear_error(nats_server, machines) -> None:  # type: ignore[no-untyped-def]
    d = machines("A", TELEPTY_BUS_URL=nats_server.url, TELEPTY_NATS_TOKEN="not-the-token")
    out = subprocess.run([sys.executable, "-m", "telepty", "daemon", "--port", "0"], env=d.env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, out
    assert "refused our credentials" in out.stderr and "not-the-token" not in out.stderr, out.stderr
    doctor = d.cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert not checks["nats"]["ok"] and "credentials" in checks["nats"]["detail"] + checks["nats"]["hint"]


def test_with_the_server_gone_the_bus_says_so_and_a_retry_stores_once(nats_server, machines) -> None:  # type: ignore[no-untyped-def]
    a = on_nats(machines, nats_server, "A").start()
    nats_server.stop()
    status, body = a.request("GET", "/api/bus/events?since=0", timeout=30)
    assert (status, body["error"]) == (503, "bus_unavailable"), body
    event = {"kind": "gone.test", "message_id": "gone-1"}
    status, body = a.request("POST", "/api/bus/publish", event, timeout=30)
    assert (status, body["error"]) == (503, "bus_unavailable"), body
    assert "same message_id" in body["detail"]
    nats_server.start()
    def accepted() -> tuple[int, Any] | None:
        answer = a.request("POST", "/api/bus/publish", event, timeout=30)
        return answer if answer[0] == 202 else None

    _, body = wait_until_sync(accepted, 30, message="publishing again once the server is back")
    stored = events_since(a, 0, kinds="gone.test")
    assert [(e["message_id"], e["seq"]) for e in stored] == [("gone-1", body["seq"])]
