"""An orchestrator written for the Node.js daemon, against this one.

It publishes the envelopes of the seed's BUS_EVENT_SCHEMA.md and of the Node.js daemon
(v1 ``type``, ``deliberation_route_turn`` with ``target_session_id``, a prompt at the
top level, ``session_state_report``), over HTTP and the bus socket, and waits the way
such an orchestrator waits: for the ``inject_written`` whose ``original_message_id`` is
its message's id, from ``sender: "daemon"``, with a ``timestamp``. The prompts land in a
real program in a real PTY, whose log says exactly what was submitted, and how often.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import wait_until
from tests.integration.agents import AgentFiles
from tests.integration.test_node_cli_contract import NODE, node, spawn_agent


class OldOrchestrator:
    """Listens on the bus like the Node.js CLI's `listen`, publishes like its orchestrators."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.events: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task[None] | None = None

    async def listen(self) -> OldOrchestrator:
        self.ws = await self.client.ws_connect(f"/api/bus?token={NODE['x-telepty-token']}", headers=NODE)
        self.task = asyncio.ensure_future(self._pump())
        await wait_until(lambda: any(e.get("kind") == "bus.live" for e in self.events), 5, message="live")
        return self

    async def _pump(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            self.events.append(json.loads(msg.data))

    async def publish_ws(self, event: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(event))

    async def publish_http(self, event: dict[str, Any]) -> tuple[int, Any]:
        return await node(self.client, "POST", "/api/bus/publish", event)

    async def ack(self, kind: str, message_id: str, timeout: float = 15) -> dict[str, Any]:
        """What it waits for: the daemon's event naming its message (v1 field names)."""
        def found() -> dict[str, Any] | None:
            return next((e for e in self.events if e.get("type") == kind
                         and e.get("original_message_id") == message_id), None)

        event = await wait_until(found, timeout, message=f"{kind} for {message_id}")
        assert event["sender"] == "daemon"
        datetime.fromisoformat(event["timestamp"])
        return dict(event)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            await self.task


def mid(kind: str) -> str:
    return f"{kind}-{uuid.uuid4()}"


async def submitted(files: AgentFiles, expected: list[str]) -> None:
    await wait_until(lambda: files.submissions() == expected, 15,
                     message=f"submissions {expected} (have {files.submissions()})")


async def test_every_old_routed_envelope_is_delivered_and_acked(client: Any, tmp_path: Path) -> None:
    agent = await spawn_agent(client, tmp_path, "orch-a")
    orch = await OldOrchestrator(client).listen()
    try:
        # 1. the seed schema's turn_request, v1 style (type, version 1), on the socket
        prompt = "Round 1: your view on the parser?"
        m1 = mid("turn_request")
        await orch.publish_ws({
            "type": "turn_request", "version": 1, "message_id": m1, "session_id": "delib-7",
            "project": "proj", "source": "deliberation:delib-7", "target": "orch-a", "reply_to": "delib-7",
            "trace": ["project:proj", "speaker:orch-a", "turn:t1"],
            "payload": {"turn_id": "t1", "round": 1, "max_rounds": 2, "speaker": "orch-a", "role": None,
                        "prompt": prompt, "prompt_sha1": hashlib.sha1(prompt.encode()).hexdigest(),
                        "history_entries": 0, "transport_timeout_ms": 30000, "semantic_timeout_ms": 600000},
            "ts": "2026-03-15T09:30:00.000Z"})
        ack = await orch.ack("inject_written", m1)
        assert (ack["target_agent"], ack["source_type"], ack["delivered"], ack["turn_id"]) == (
            "orch-a", "bus_auto_route", True, "t1")
        assert ack["request_message_id"] == m1  # ours beside the old name
        routed = await orch.ack("message_routed", m1)
        assert (routed["to"], routed["deliberation_session_id"]) == ("orch-a", "delib-7")

        # 2. the Node.js daemon's deliberation_route_turn: target_session_id, a top-level prompt
        m2 = mid("route")
        status, receipt = await orch.publish_http({
            "type": "deliberation_route_turn", "message_id": m2, "target_session_id": "orch-a",
            "prompt": "Round 2: answer the critique."})
        assert status == 202 and receipt["route"]["status"] == "accepted", receipt
        await orch.ack("inject_written", m2)

        # 3. a turn_request carrying its prompt as `content` (no payload)
        m3 = mid("turn_request")
        status, _ = await orch.publish_http({"kind": "turn_request", "message_id": m3, "target": "orch-a",
                                             "content": "Round 3: wrap up."})
        assert status == 202
        await orch.ack("inject_written", m3)
        await submitted(agent, [prompt, "Round 2: answer the critique.", "Round 3: wrap up."])

        # 4. the same message again: acknowledged as a duplicate, never typed twice
        status, receipt = await orch.publish_http({"kind": "turn_request", "message_id": m3,
                                                   "target": "orch-a", "content": "Round 3: wrap up."})
        assert status == 202 and receipt["duplicate"] is True
        await asyncio.sleep(0.5)
        assert agent.submissions() == [prompt, "Round 2: answer the critique.", "Round 3: wrap up."]
        assert len([e for e in orch.of_kind("inject_written") if e.get("original_message_id") == m3]) == 1
    finally:
        await orch.close()


async def test_a_turn_for_no_session_fails_with_the_old_names(client: Any) -> None:
    orch = await OldOrchestrator(client).listen()
    try:
        m = mid("route")
        status, receipt = await orch.publish_http({"type": "deliberation_route_turn", "message_id": m,
                                                   "target_session_id": "nobody", "prompt": "hello?"})
        assert status == 202 and receipt["route"]["reason"] == "session_not_found"
        failed = await orch.ack("delivery.failed", m)
        assert (failed["reason"], failed["stage"], failed["delivery_id"]) == (
            "session_not_found", "route", None)
    finally:
        await orch.close()


async def test_state_reports_on_the_bus_are_applied(client: Any, tmp_path: Path) -> None:
    await spawn_agent(client, tmp_path, "orch-s")
    orch = await OldOrchestrator(client).listen()
    try:
        await orch.publish_ws({"type": "session_state_report", "session_id": "orch-s", "phase": "reviewing",
                               "current_task": "PR 12", "blocker": "CI red", "needs_input": False,
                               "thread_id": "thr-1", "seq": 9, "source": "self_report"})
        report = await wait_until(lambda: next(iter(orch.of_kind("session_state_report")), None), 5,
                                  message="the report on the bus")
        assert (report["session_id"], report["phase"], report["report_seq"]) == ("orch-s", "reviewing", 9)
        _, info = await node(client, "GET", "/api/sessions/orch-s")
        assert info["semantic"] == {"phase": "reviewing", "current_task": "PR 12", "blocker": "CI red",
                                    "needs_input": False, "thread_id": "thr-1", "source": "self_report",
                                    "seq": 9}
        # refused before it is logged: no session, no phase (a bus.error on the socket, 4xx over HTTP)
        await orch.publish_ws({"type": "session_state_report", "session_id": "orch-s", "message_id": "bad-1",
                               "current_task": "no phase"})
        error = await wait_until(
            lambda: next((e for e in orch.events if e.get("message_id") == "bad-1"), None), 5,
            message="the refusal")
        assert (error["kind"], error["error"]) == ("bus.error", "missing_field")
        status, body = await orch.publish_http({"type": "session_state_report", "session_id": "nobody",
                                                "phase": "x"})
        assert status == 404 and body["error"] == "session_not_found"
        _, page = await node(client, "GET", "/api/bus/events?kinds=session_state_report")
        assert len(page["events"]) == 1
        _, info = await node(client, "GET", "/api/sessions/orch-s")
        assert info["semantic"]["phase"] == "reviewing"
    finally:
        await orch.close()
