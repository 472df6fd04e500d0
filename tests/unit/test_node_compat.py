"""The Node.js compatibility layer's pure parts: the dialect, the mappings, the old envelopes.

Each expectation is what the Node.js telepty 0.1.96 CLI (cli.js) or the seed's
BUS_EVENT_SCHEMA.md reads or sends; the integration tests drive the same shapes
through a real daemon.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from telepty.api.node_dialect import (
    auto_state,
    health_of,
    node_fanout_results,
    node_fields,
    speaks_node,
)
from telepty.bus.envelope import ACK_KINDS, make_event, normalize_envelope
from telepty.bus.router import parse_turn_request
from telepty.cli.node_daemon import identify, node_error, node_sessions
from telepty.errors import BadRequest
from telepty.sessions.model import Session, SessionState, SessionType
from telepty.sessions.state_report import parse_state_report

NOW = "2026-03-15T09:30:00.000Z"


def session(kind: SessionType, state: SessionState = SessionState.RUNNING, **meta: Any) -> Session:
    return Session(id="s1", type=kind, command="claude", cwd="/p/proj", created_at=NOW, updated_at=NOW,
                   state=state, last_activity_at=NOW, meta=meta)


# -- who speaks it ------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "node"), [
    ({"User-Agent": "node"}, True),  # Node's built-in fetch, i.e. the Node.js CLI
    ({"X-Telepty-Compat": "node"}, True),
    ({"X-Telepty-Compat": "Node "}, True),
    ({"User-Agent": "Python-urllib/3.11"}, False),  # this CLI
    ({"User-Agent": "node-fetch/1.0"}, False),
    ({"User-Agent": "curl/8"}, False),
    ({}, False),
])
def test_the_dialect_follows_the_caller(headers: dict[str, str], node: bool) -> None:
    assert speaks_node(make_mocked_request("GET", "/api/meta", headers=headers)) is node


# -- sessions in the Node.js words ------------------------------------------------------


@pytest.mark.parametrize(("kind", "state", "linked", "status"), [
    (SessionType.SPAWNED, SessionState.RUNNING, False, "CONNECTED"),
    (SessionType.PANE, SessionState.RUNNING, False, "CONNECTED"),
    (SessionType.WRAPPED, SessionState.RUNNING, True, "CONNECTED"),
    (SessionType.WRAPPED, SessionState.RUNNING, False, "RECONNECTING"),  # registered, socket not yet up
    (SessionType.WRAPPED, SessionState.DISCONNECTED, False, "RECONNECTING"),
    (SessionType.WRAPPED, SessionState.EXITED, False, "STALE"),
    (SessionType.SPAWNED, SessionState.EXITED, False, "STALE"),
])
def test_health_status(kind: SessionType, state: SessionState, linked: bool, status: str) -> None:
    assert health_of(session(kind, state), linked)[0] == status


def test_the_node_clean_never_removes_what_ours_keeps() -> None:
    """The Node.js CLI's `clean` deletes STALE and DISCONNECTED sessions; ours never removes a
    running or disconnected one, so only exited sessions may carry those two words."""
    for kind in SessionType:
        for state in SessionState:
            for linked in (True, False):
                status, _ = health_of(session(kind, state), linked)
                if status in ("STALE", "DISCONNECTED"):
                    assert state is SessionState.EXITED, (kind, state, linked)


def test_node_fields_are_what_list_and_session_info_read() -> None:
    s = session(SessionType.SPAWNED, state_report={"phase": "planning", "current_task": "t", "seq": 3,
                                                   "timestamp": NOW})
    s.clients = 2
    f = node_fields(s, linked=False, idle_seconds=12.7)
    assert f["healthStatus"] == "CONNECTED" and f["healthReason"] == "PTY_RUNNING"
    assert f["active_clients"] == 2 and f["createdAt"] == NOW and f["lastActivityAt"] == NOW
    assert f["idleSeconds"] == 12 and f["terminal"] == "daemon-pty" and f["ready"] is True
    assert f["semantic"]["phase"] == "planning" and f["semantic"]["seq"] == 3
    assert f["lastStateReportAt"] == NOW


def test_fanout_results_in_the_old_shape() -> None:
    ours = [{"target": "a", "session_id": "a", "delivery_id": "dlv_1", "status": "queued"},
            {"target": "b-alias", "session_id": "b", "delivery_id": None, "status": "failed",
             "reason": "session_not_found", "detail": "gone"}]
    assert node_fanout_results(ours) == {
        "successful": ["a"], "failed": [{"id": "b", "code": "session_not_found", "error": "gone"}]}


@pytest.mark.parametrize(("verdict", "state"), [
    ("idle", "idle"), ("composer-has-text", "idle"), ("busy", "running"), ("blocked", "waiting_input"),
    ("agent-exited", "exited"), ("unknown", "unknown"), ("something-new", "unknown"),
])
def test_auto_state_names(verdict: str, state: str) -> None:
    auto = auto_state({"verdict": verdict, "line": "> ", "lines": ["x", "> ", ""],
                       "output": {"idle_ms": 1500}})
    assert auto["state"] == state and auto["detail"]["trigger"] == verdict
    assert auto["last_output_preview"] == "> "
    assert (auto.get("duration_ms") == 1500) is (state == "idle")


def test_auto_state_without_a_screen() -> None:
    assert auto_state(None, why_not="session_disconnected") == {
        "state": "unknown", "confidence": 0.0, "detail": {"trigger": "session_disconnected"}}


# -- state reports ----------------------------------------------------------------------


def test_a_report_as_the_node_cli_sends_it() -> None:
    body = {"phase": "implementing", "source": "self_report", "current_task": " the parser ",
            "needs_input": True, "thread_id": "thr-1", "seq": 7}
    assert parse_state_report(body, previous_seq=2, now=NOW) == {
        "phase": "implementing", "current_task": "the parser", "blocker": None, "needs_input": True,
        "thread_id": "thr-1", "source": "self_report", "seq": 7, "timestamp": NOW}


def test_report_aliases_and_defaults() -> None:
    r = parse_state_report({"task_phase": "review", "task": "x", "blocker": ""}, previous_seq=4, now=NOW)
    assert (r["phase"], r["current_task"], r["blocker"], r["seq"], r["source"]) == (
        "review", "x", None, 5, "self_report")


@pytest.mark.parametrize("body", [
    {}, {"phase": "  "}, {"phase": 3}, {"phase": "p", "seq": -1}, {"phase": "p", "seq": True},
    {"phase": "p", "seq": "2"}, {"phase": "p", "needs_input": "yes"}, {"phase": "p", "blocker": ["x"]},
    {"phase": "x" * 2001},
])
def test_bad_reports_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        parse_state_report(body, previous_seq=None, now=NOW)


# -- old envelopes ----------------------------------------------------------------------


def routed(raw: dict[str, Any]) -> Any:
    env = normalize_envelope(raw, machine_id="m1", default_source="bus:http")
    return parse_turn_request(env, max_prompt_bytes=1024)


def test_deliberation_route_turn_with_target_session_id_and_a_top_level_prompt() -> None:
    t = routed({"type": "deliberation_route_turn", "target_session_id": "claude-1@m1",
                "prompt": "your turn", "message_id": "m-1"})
    assert (t.session, t.host, t.request.prompt, t.message_id) == ("claude-1", "m1", b"your turn", "m-1")


def test_a_top_level_content_is_the_prompt_when_there_is_no_payload() -> None:
    assert routed({"kind": "turn_request", "target": "s1", "content": "from content"}).request.prompt == \
        b"from content"


def test_payload_prompt_wins_over_the_old_places() -> None:
    t = routed({"kind": "turn_request", "target": "s1", "prompt": "old", "payload": {"prompt": "new"}})
    assert t.request.prompt == b"new"


@pytest.mark.parametrize("raw", [
    {"kind": "turn_request", "target": "s1"},  # no prompt anywhere
    {"kind": "turn_request", "target": "s1", "prompt": ""},
    {"kind": "turn_request", "target": "s1", "prompt": ["x"]},
    {"kind": "deliberation_route_turn", "prompt": "x"},  # no target of either name
    {"kind": "deliberation_route_turn", "target_session_id": 5, "prompt": "x"},
    {"kind": "deliberation_route_turn", "target_session_id": "bad id", "prompt": "x"},
    {"kind": "turn_request", "target": "s1", "prompt": "x\x1b[201~"},  # controls, as for an inject
])
def test_bad_old_envelopes_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        routed(raw)


@pytest.mark.parametrize("kind", sorted(ACK_KINDS))
def test_acks_carry_the_old_names_beside_ours(kind: str) -> None:
    env = make_event(kind, source_host="m1", target="s1", request_message_id="turn-1")
    assert env["sender"] == env["source"] == "daemon"
    assert env["timestamp"] == env["ts"]
    assert env["original_message_id"] == env["request_message_id"] == "turn-1"


def test_other_events_do_not_grow() -> None:
    env = make_event("session_register", source_host="m1", target="s1", session_id="s1")
    assert "sender" not in env and "timestamp" not in env
    ack = make_event("inject_written", source_host="m1", target="s1", inject_id="dlv_1")
    assert "original_message_id" not in ack  # not a routed turn's delivery


# -- this CLI in front of a Node.js daemon ------------------------------------------------

NODE_META = {"name": "@dmsdc-ai/aigentry-telepty", "version": "0.1.96", "pid": 1, "host": "127.0.0.1",
             "port": 3848, "machine_id": "vm", "capabilities": ["sessions", "wrapped-sessions"]}


def test_identify() -> None:
    url = "http://127.0.0.1:3848"
    assert identify(url, NODE_META).name == "the Node.js telepty 0.1.96"  # type: ignore[union-attr]
    assert identify(url, None, {"status": "ok", "version": "0.1.40"}).name == \
        "the Node.js telepty 0.1.40"  # type: ignore[union-attr]
    assert identify(url, {"name": "telepty", "version": "0.2.0", "home_id": "home_x"}) is None
    assert identify(url, {"name": "telepty", "home": "/h"}) is None  # ours, from before home ids
    assert identify(url, {"name": "other-thing", "version": "2"}).name == "other-thing 2"  # type: ignore[union-attr]
    assert identify(url, None, None) is None
    refusal = identify(url, NODE_META).refusal()  # type: ignore[union-attr]
    assert refusal == ("the daemon at http://127.0.0.1:3848 is the Node.js telepty 0.1.96, not this "
                       "implementation; against it only inject, list, spawn, kill and bus publish work")


def test_node_sessions_in_our_shape() -> None:
    answer = [{"id": "n1", "type": "spawned", "command": "claude --x", "cwd": "/tmp/proj",
               "healthStatus": "CONNECTED", "idleSeconds": 4, "active_clients": 1,
               "locator": {"machine_id": "vm", "session_id": "n1", "project_id": "proj"},
               "createdAt": NOW},
              {"id": "n2", "type": "wrapped", "command": "codex", "healthStatus": "STALE"},
              "garbage", {"no": "id"}]
    out = node_sessions(answer)
    assert [(s["id"], s["type"], s["agent"], s["state"], s["clients"]) for s in out] == [
        ("n1", "spawned", "claude", "running", 1), ("n2", "wrapped", "codex", "exited", 0)]
    assert out[0]["locator"]["project_id"] == "proj" and out[0]["idle_seconds"] == 4


@pytest.mark.parametrize(("err", "ours"), [
    ({"success": False, "code": "SESSION_NOT_FOUND", "error": "Session not found"},
     {"error": "session_not_found", "detail": "Session not found"}),
    ({"error": "Session not found", "requested": "x"}, {"error": "refused", "detail": "Session not found"}),
    ({"error": "session_not_found", "detail": "ours"}, {"error": "session_not_found", "detail": "ours"}),
])
def test_node_errors_in_our_shape(err: dict[str, Any], ours: dict[str, Any]) -> None:
    assert node_error(err) == ours
