"""The auto-router end to end: a turn_request on the bus lands in a real tmux pane.

What is asserted is what the fake agent submitted (its log), and the exact events a
subscriber saw, with their seqs.
"""

from __future__ import annotations

from typing import Any

from telepty.delivery.reply_guide import reply_footer
from tests.helpers import wait_until
from tests.integration.agents import AgentPane, start_agent_pane
from tests.integration.bus_helpers import Frames, sha1, turn_request

ACK_KINDS = "turn_request,inject_written,message_routed,delivery.failed"


async def pane_session(client, session, tmp_path, sid: str = "p1") -> AgentPane:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path, name=sid)
    await wait_until(lambda: "ready>" in ap.screen(), message="agent ready")
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": sid, "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent", "agent": "other"})
    assert resp.status == 201, await resp.text()
    return ap


async def watch(client) -> Frames:  # type: ignore[no-untyped-def]
    frames = Frames(await client.ws_connect(f"/api/bus?kinds={ACK_KINDS}"))
    await frames.wait_live()
    return frames


async def deliveries(client) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return await (await client.get("/api/deliveries")).json()


async def log_kinds(client) -> list[str]:  # type: ignore[no-untyped-def]
    page = await (await client.get("/api/bus/events", params={"since": 0, "limit": 1000})).json()
    return [e["kind"] for e in page["events"] if e["kind"] in ACK_KINDS.split(",")]


def check_acks(frames: Frames, *, turn: dict[str, Any], delivery_id: str, prompt: str) -> None:
    """turn_request → inject_written → message_routed, in that seq order, with the schema's fields."""
    (req,) = frames.of("turn_request")
    (written,) = frames.of("inject_written")
    (routed,) = frames.of("message_routed")
    assert req["seq"] < written["seq"] < routed["seq"]
    assert req["message_id"] == turn["message_id"]
    envelope = {"version": 2, "kind": "inject_written", "type": "inject_written", "source": "daemon",
                "source_host": "test-machine", "target": "p1"}
    assert {k: written[k] for k in envelope} == envelope
    assert written["inject_id"] == delivery_id and written["target_agent"] == "p1"
    assert written["delivered"] is True and written["source_type"] == "bus_auto_route"
    assert written["from"] == "deliberation:d1" and written["reply_to"] == "d1"
    assert written["prompt_bytes"] == len(prompt.encode())
    expected_routed = {
        "kind": "message_routed", "type": "message_routed", "source": "daemon",
        "source_host": "test-machine", "target": "p1", "request_message_id": turn["message_id"],
        "from": "deliberation:d1", "to": "p1", "reply_to": "d1", "inject_id": delivery_id,
        "thread_id": turn.get("thread_id"), "deliberation_session_id": "d1",
    }
    assert {k: routed[k] for k in expected_routed} == expected_routed
    assert routed["message_id"] != turn["message_id"]  # every event has its own id
    assert frames.of("delivery.failed") == []


async def test_turn_request_over_http_lands_in_the_pane(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = await pane_session(client, session, tmp_path)
    frames = await watch(client)
    prompt = "Round 1: state your position on the API naming.\nKeep it short — 한국어도 OK ✓"
    turn = turn_request("p1", prompt, message_id="turn_request-http-1", thread_id="thr-1")
    resp = await client.post("/api/bus/publish", json=turn)
    assert resp.status == 202
    receipt = await resp.json()
    route = receipt["route"]
    assert (receipt["duplicate"], route["status"], route["session_id"]) == (False, "accepted", "p1")
    await wait_until(lambda: ap.files.submissions() == [prompt], 15, message="one exact submission")
    await frames.wait_for("message_routed")
    check_acks(frames, turn=turn, delivery_id=route["delivery_id"], prompt=prompt)
    (d,) = await deliveries(client)
    assert (d["delivery_id"], d["origin"], d["status"], d["idempotency_key"]) == (
        route["delivery_id"], "bus_auto_route", "delivered", "bus:turn_request-http-1")
    assert ap.files.submissions() == [prompt]
    await frames.close()


async def test_turn_request_over_the_socket_lands_in_the_pane(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = await pane_session(client, session, tmp_path)
    frames = await watch(client)
    publisher = Frames(await client.ws_connect("/api/bus?receive=0"))
    prompt = "Round 2 (ws): respond to the critique."
    turn = turn_request("p1", prompt, message_id="turn_request-ws-1")
    await publisher.ws.send_json(turn)
    (ack,) = await publisher.wait_for("bus.ack")
    assert (ack["message_id"], ack["event_kind"], ack["route"]["status"]) == (
        "turn_request-ws-1", "turn_request", "accepted")
    await wait_until(lambda: ap.files.submissions() == [prompt], 15, message="one exact submission")
    await frames.wait_for("message_routed")
    check_acks(frames, turn=turn, delivery_id=ack["route"]["delivery_id"], prompt=prompt)
    await publisher.close()
    await frames.close()


async def test_a_duplicate_message_id_is_delivered_once(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = await pane_session(client, session, tmp_path)
    frames = await watch(client)
    prompt = "Deliver me exactly once."
    turn = turn_request("p1", prompt, message_id="turn_request-dup")
    first = await (await client.post("/api/bus/publish", json=turn)).json()
    second = await (await client.post("/api/bus/publish", json=turn)).json()
    publisher = Frames(await client.ws_connect("/api/bus?receive=0"))
    await publisher.ws.send_json(turn)
    (third,) = await publisher.wait_for("bus.ack")
    assert (first["duplicate"], second["duplicate"], third["duplicate"]) == (False, True, True)
    assert first["seq"] == second["seq"] == third["seq"]
    ids = {r["route"]["delivery_id"] for r in (first, second, third)}
    assert len(ids) == 1
    await wait_until(lambda: ap.files.submissions() == [prompt], 15, message="the submission")
    await frames.wait_for("message_routed")
    # Once the delivery is final nothing else can arrive; the log says one of each.
    assert [d["delivery_id"] for d in await deliveries(client)] == list(ids)
    assert await log_kinds(client) == ["turn_request", "inject_written", "message_routed"]
    assert ap.files.submissions() == [prompt]
    await publisher.close()
    await frames.close()


async def test_a_sha1_mismatch_is_refused_and_nothing_is_delivered(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = await pane_session(client, session, tmp_path)
    turn = turn_request("p1", "the real prompt")
    turn["payload"]["prompt_sha1"] = sha1("the prompt it claimed to be")
    resp = await client.post("/api/bus/publish", json=turn)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "prompt_sha1_mismatch" and sha1("the real prompt") in body["detail"]
    publisher = Frames(await client.ws_connect("/api/bus?receive=0"))
    await publisher.ws.send_json(turn)
    (err,) = await publisher.wait_for("bus.error")
    assert err["error"] == "prompt_sha1_mismatch"
    assert not publisher.ws.closed
    # Deliveries are persisted before any answer, so "none" is final, not "not yet".
    assert await deliveries(client) == []
    assert await log_kinds(client) == []
    # The pane is still usable and got only what came afterwards.
    ok = turn_request("p1", "after the refusal")
    assert (await client.post("/api/bus/publish", json=ok)).status == 202
    await wait_until(lambda: ap.files.submissions() == ["after the refusal"], 15, message="later prompt")
    await publisher.close()


async def test_reply_expected_adds_the_footer_in_the_pane(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = await pane_session(client, session, tmp_path)
    asks = turn_request("p1", "Your turn: propose a name.", reply_expected=True)
    closes = turn_request("p1", "Decision recorded. No further reply needed.", reply_expected=True)
    for turn in (asks, closes):
        assert (await client.post("/api/bus/publish", json=turn)).status == 202
    expected = ["Your turn: propose a name." + reply_footer("d1"),
                "Decision recorded. No further reply needed."]
    await wait_until(lambda: ap.files.submissions() == expected, 20, message="both submissions")


async def test_local_host_suffix_is_stripped_and_remote_hosts_fail_relay_unavailable(
    client, session, tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    ap = await pane_session(client, session, tmp_path)
    frames = await watch(client)
    local = turn_request("p1@test-machine", "for this machine")
    resp = await (await client.post("/api/bus/publish", json=local)).json()
    assert resp["route"]["status"] == "accepted"
    remote = turn_request("p1@other-box", "for another machine", message_id="turn-remote")
    resp = await (await client.post("/api/bus/publish", json=remote)).json()
    # With the relay wired (issue 9) a host that is no known peer fails unknown_peer.
    assert resp["route"] == {"status": "failed", "reason": "unknown_peer",
                             "detail": resp["route"]["detail"]}
    assert "other-box" in resp["route"]["detail"]
    (failed,) = await frames.wait_for("delivery.failed")
    assert (failed["reason"], failed["request_message_id"], failed["target"], failed["delivery_id"],
            failed["stage"], failed["source_type"]) == (
        "unknown_peer", "turn-remote", "p1@other-box", None, "route", "bus_auto_route")
    await wait_until(lambda: ap.files.submissions() == ["for this machine"], 15, message="local one")
    assert len(await deliveries(client)) == 1
    await frames.close()


async def test_an_unknown_target_fails_then_a_retry_after_registration_delivers(
    client, session, tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    frames = await watch(client)
    turn = turn_request("late", "are you there?", message_id="turn-late")
    first = await (await client.post("/api/bus/publish", json=turn)).json()
    assert (first["route"]["status"], first["route"]["reason"]) == ("failed", "session_not_found")
    (failed,) = await frames.wait_for("delivery.failed")
    assert failed["request_message_id"] == "turn-late" and failed["reason"] == "session_not_found"
    ap = await pane_session(client, session, tmp_path, sid="late")
    again = await (await client.post("/api/bus/publish", json=turn)).json()
    assert again["duplicate"] is True and again["route"]["status"] == "accepted"
    await wait_until(lambda: ap.files.submissions() == ["are you there?"], 15, message="delivered")
    await frames.wait_for("message_routed")
    await frames.close()
