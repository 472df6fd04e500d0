"""``telepty mcp``: telepty as a Model Context Protocol server, over stdio.

An agent CLI that speaks MCP (Claude Code, Codex, Gemini CLI, …) starts this as a
child process and gets tools instead of a shell: list the sessions, inject a prompt
(optionally waiting until it is submitted), follow a delivery, read a screen, reply.

It is a thin client of the local daemon's HTTP API, the same one the ``telepty`` CLI
uses, so everything the daemon enforces (auth, the fan-out cap, the audit log, sender
identity) holds here too. Because the agent starts it, it inherits the agent's
environment: inside a wrapped or spawned session that includes
``TELEPTY_SESSION_TOKEN``, so what the agent injects through these tools is recorded
with the agent's verified identity, and ``reply`` knows which session is answering.

stdout belongs to the protocol: nothing else may ever be printed there.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from telepty import __version__
from telepty.cli.client import Client, CliError
from telepty.config import Config

INSTRUCTIONS = """\
telepty delivers prompts into other AI agent CLIs running on this machine (each one a
"session" with an id). Use list_sessions to see who is there, inject to send a session a
prompt (wait=true to learn whether it was submitted), reply to answer the last prompt
you received, read_screen to see a session's terminal, delivery_status to follow a
delivery. Do not reply to messages that say "no further reply needed", "thread closed",
"ack received" or "ack-only".
"""

_SESSION_FIELDS = ("id", "alias", "type", "agent", "state", "idle_seconds", "tmux_pane", "command")
_DELIVERY_FIELDS = ("delivery_id", "session_id", "target", "status", "reason", "detail", "attempts",
                    "confirmed", "from", "verified_sender", "spoofed", "reply_to", "thread_id",
                    "created_at", "finished_at", "prompt_bytes")


def _summary(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: record[k] for k in fields if k in record}


class DaemonTools:
    """The tools' logic, apart from the MCP plumbing (and testable without it)."""

    def __init__(self, config: Config) -> None:
        self.client = Client(config)

    async def _call(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                    http_timeout: float | None = None, headers: dict[str, str] | None = None) -> Any:
        """One daemon request off the event loop; a daemon error becomes a tool error.

        A final delivery failure comes back as an error status with the record in the
        body: that is an answer (the record says why), not a tool failure.
        """
        def call() -> Any:
            return self.client.request(method, path, body, query=query, timeout=http_timeout,
                                       headers=headers)

        try:
            return await anyio.to_thread.run_sync(call)
        except CliError as exc:
            if isinstance(exc.body, dict) and "delivery_id" in exc.body:
                return exc.body
            raise ToolError(str(exc)) from None

    async def list_sessions(self, include_exited: bool = False) -> list[dict[str, Any]]:
        sessions = await self._call("GET", "/api/sessions", query={"all": "1" if include_exited else "0"})
        out = []
        for s in sessions:
            item = _summary(s, _SESSION_FIELDS)
            item["project"] = (s.get("locator") or {}).get("project_id")
            out.append(item)
        return out

    async def inject(self, target: str, prompt: str, *, reply_expected: bool = False,
                     thread_id: str | None = None, no_enter: bool = False, wait: bool = False,
                     timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109 (the daemon's wait)
        body: dict[str, Any] = {"prompt": prompt, "reply_expected": reply_expected, "no_enter": no_enter}
        if thread_id is not None:
            body["thread_id"] = thread_id
        if wait:
            body.update(wait=True, timeout=timeout)
        # One key per tool call: a retried HTTP request cannot deliver twice.
        headers = {"Idempotency-Key": f"mcp-{uuid.uuid4()}"}
        record = await self._call("POST", f"/api/sessions/{_path(target)}/inject", body,
                                  http_timeout=(timeout + 10.0) if wait else None, headers=headers)
        return _summary(record, _DELIVERY_FIELDS)

    async def delivery_status(self, delivery_id: str) -> dict[str, Any]:
        record = await self._call("GET", f"/api/deliveries/{_path(delivery_id)}")
        return _summary(record, _DELIVERY_FIELDS)

    async def read_screen(self, session_id: str, lines: int = 40) -> str:
        body = await self._call("GET", f"/api/sessions/{_path(session_id)}/screen", query={"lines": lines})
        return str(body.get("text", ""))

    async def reply(self, prompt: str, *, reply_expected: bool = False, wait: bool = False,
                    timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109 (the daemon's wait)
        body: dict[str, Any] = {"prompt": prompt, "reply_expected": reply_expected}
        if wait:
            body.update(wait=True, timeout=timeout)
        headers = {"Idempotency-Key": f"mcp-{uuid.uuid4()}"}
        record = await self._call("POST", "/api/reply", body,
                                  http_timeout=(timeout + 10.0) if wait else None, headers=headers)
        return _summary(record, (*_DELIVERY_FIELDS, "in_reply_to"))


def _path(value: str) -> str:
    return quote(value, safe="")


def build_server(config: Config) -> MCPServer:
    tools = DaemonTools(config)
    server: MCPServer = MCPServer("telepty", version=__version__, instructions=INSTRUCTIONS,
                                  log_level="WARNING")

    @server.tool()
    async def list_sessions(include_exited: bool = False) -> list[dict[str, Any]]:
        """List the agent sessions telepty knows (id, agent kind, state, idle time, project)."""
        return await tools.list_sessions(include_exited)

    @server.tool()
    async def inject(target: str, prompt: str, reply_expected: bool = False, thread_id: str | None = None,
                     no_enter: bool = False, wait: bool = False,
                     timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109 (the daemon's wait)
        """Deliver a prompt into a session (id or alias) and submit it.

        With wait=true, return once the delivery is final (delivered or failed, with the
        reason) or after timeout seconds; otherwise return at once with its delivery_id.
        reply_expected=true adds a line telling the receiver how to answer you.
        """
        return await tools.inject(target, prompt, reply_expected=reply_expected, thread_id=thread_id,
                                  no_enter=no_enter, wait=wait, timeout=timeout)

    @server.tool()
    async def delivery_status(delivery_id: str) -> dict[str, Any]:
        """The current state of a delivery: queued, delivering, retrying, delivered or failed (why)."""
        return await tools.delivery_status(delivery_id)

    @server.tool()
    async def read_screen(session_id: str, lines: int = 40) -> str:
        """The last lines a session's terminal shows (ANSI stripped)."""
        return await tools.read_screen(session_id, lines)

    @server.tool()
    async def reply(prompt: str, reply_expected: bool = False, wait: bool = False,
                    timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109 (the daemon's wait)
        """Answer the last prompt this session received that named a sender (its reply_to)."""
        return await tools.reply(prompt, reply_expected=reply_expected, wait=wait, timeout=timeout)

    return server


def run_mcp(config: Config) -> int:
    build_server(config).run("stdio")
    return 0
