"""``telepty mcp`` driven by the MCP SDK's own stdio client, against a real daemon and panes.

The client starts ``python -m telepty mcp`` exactly as an agent CLI would (a child
process speaking JSON-RPC on stdin/stdout), so this covers the protocol, the tool
schemas, and the HTTP calls behind them end to end.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import libtmux
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from tests.helpers import DaemonProcess, wait_until
from tests.integration.agents import AgentPane, agent_files, start_agent_pane
from tests.integration.identity_helpers import all_files_bytes, spawned_agent_command

pytestmark = pytest.mark.integration

TOOLS = {"list_sessions", "inject", "delivery_status", "read_screen", "reply"}


@asynccontextmanager
async def mcp_session(daemon: DaemonProcess, **env: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "telepty", "mcp"],
                                   env={**daemon.env, **env})
    with (daemon.home / "mcp-stderr.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            yield s


async def call(s: ClientSession, tool: str, **args: Any) -> Any:
    result = await s.call_tool(tool, args)
    assert not result.is_error, result.content
    data = result.structured_content
    assert data is not None
    return data.get("result", data)


async def fake_agent(daemon: DaemonProcess, session: libtmux.Session, tmp_path: Path, name: str) -> AgentPane:
    ap = start_agent_pane(session, tmp_path, name)
    await wait_until(lambda: "ready>" in ap.screen(), 10, message=f"agent {name} ready")
    status, body = daemon.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": name, "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent"})
    assert status == 201, body
    return ap


async def test_mcp_client_lists_sessions_and_injects_into_a_real_pane(
    daemon: DaemonProcess, session: libtmux.Session, tmp_path: Path,
) -> None:
    pane = await fake_agent(daemon, session, tmp_path, "worker")
    async with mcp_session(daemon) as s:
        listed = await s.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        sessions = await call(s, "list_sessions")
        assert [(x["id"], x["type"], x["state"]) for x in sessions] == [("worker", "pane", "running")]

        prompt = "please run the tests — ünïcødé ✓"
        record = await call(s, "inject", target="worker", prompt=prompt, wait=True, timeout=20)
        assert record["status"] == "delivered" and record["session_id"] == "worker"
        await wait_until(lambda: pane.files.submissions() == [prompt], message="the pane got the prompt")

        status = await call(s, "delivery_status", delivery_id=record["delivery_id"])
        assert status["status"] == "delivered" and status["attempts"] == 1

        async def screen_shows_it() -> bool:
            return "submitted 1" in await call(s, "read_screen", target="worker", lines=10)

        await wait_until(screen_shows_it, message="read_screen shows the submission")

        failed = await s.call_tool("inject", {"target": "ghost", "prompt": "x"})
        assert failed.is_error
        assert "session_not_found" in failed.content[0].text  # type: ignore[union-attr]
    _, audit = daemon.request("GET", "/api/injects")
    assert [r["session_id"] for r in audit] == ["worker"]


async def test_mcp_reply_answers_as_the_session_it_runs_in(
    daemon: DaemonProcess, session: libtmux.Session, tmp_path: Path,
) -> None:
    asker = await fake_agent(daemon, session, tmp_path, "asker")
    files = agent_files(tmp_path, "spawned")
    token_file = tmp_path / "spawned.token"
    argv = spawned_agent_command(files, token_file)
    status, body = daemon.request("POST", "/api/sessions/spawn", {
        "session_id": "helper", "command": argv[0], "args": argv[1:], "cwd": str(tmp_path)})
    assert status == 201, body
    await wait_until(lambda: token_file.exists() and token_file.read_text(), message="the child's token")
    token = token_file.read_text()
    assert token not in str(body)
    status, body = daemon.request("POST", "/api/sessions/helper/inject", {
        "prompt": "what is 6*7?", "from": "asker", "wait": True, "timeout": 20})
    assert status == 200, body
    await wait_until(lambda: files.submissions() == ["what is 6*7?"], message="the question arrived")

    # The agent in "helper" starts `telepty mcp` with its own environment (its token).
    async with mcp_session(daemon, TELEPTY_SESSION_TOKEN=token) as s:
        record = await call(s, "reply", prompt="42", wait=True, timeout=20)
    assert record["status"] == "delivered"
    assert (record["session_id"], record["from"], record["verified_sender"]) == ("asker", "helper", "helper")
    await wait_until(lambda: asker.files.submissions() == ["42"], message="the answer reached the asker")
    assert token.encode() not in all_files_bytes(daemon.home)


async def test_mcp_tools_share_argument_names_and_explain_bad_arguments_plainly(
    daemon: DaemonProcess,
) -> None:
    async with mcp_session(daemon) as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        for tool in tools.values():
            props = tool.input_schema["properties"]
            assert "session_id" not in props, tool.name  # a session is always `target`
            for name, schema in props.items():
                assert schema.get("description"), (tool.name, name)  # every argument is described
        assert "target" in tools["inject"].input_schema["properties"]
        assert "target" in tools["read_screen"].input_schema["properties"]

        async def error(tool: str, args: dict[str, Any]) -> str:
            result = await s.call_tool(tool, args)
            assert result.is_error, result
            text = result.content[0].text  # type: ignore[union-attr]
            for raw in ("validation error", "pydantic", "type=", "input_value", "errors.pydantic.dev"):
                assert raw not in text, text
            return str(text)

        assert await error("read_screen", {"session_id": "worker"}) == (
            "read_screen: unknown argument 'session_id'. Its arguments: target, lines? (? = optional)")
        assert await error("inject", {"prompt": "x", "timeout": "soon"}) == (
            "inject: missing argument 'target'; argument 'timeout' must be a number from 0 to 3600. "
            "Its arguments: target, prompt, reply_expected?, thread_id?, no_enter?, wait?, timeout? "
            "(? = optional)")
        assert "argument 'lines' must be a whole number from 1 to 10000" in await error(
            "read_screen", {"target": "w", "lines": 0})
        # The daemon's own errors, in the tools' words: no API field names.
        bad = await error("inject", {"target": "ghost", "prompt": "bad \x1b[1m"})
        assert bad.endswith("only \\n and \\t are allowed (the inject tool sends no other control "
                            "characters)") and "raw" not in bad, bad
        ghost = await error("inject", {"target": "ghost", "prompt": "hello"})
        assert "session_not_found" in ghost and "the list_sessions tool shows" in ghost, ghost
        outside = await error("reply", {"prompt": "42"})
        assert "no_session_identity" in outside and not re.search(r"\bsession_id\b", outside), outside
