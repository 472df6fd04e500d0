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
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field, ValidationError

from telepty import __version__
from telepty.cli.client import Client, CliError
from telepty.cli.wording import MCP_WORDS
from telepty.config import Config
from telepty.delivery.limits import MAX_WAIT_TIMEOUT

INSTRUCTIONS = """\
telepty delivers prompts into other AI agent CLIs running on this machine (each one a
"session" with an id). Use list_sessions to see who is there, inject to send a session a
prompt (wait=true to learn whether it was submitted), reply to answer the last prompt
you received, read_screen to see a session's terminal, delivery_status to follow a
delivery. A session is always named by the argument `target` (its id or alias).
Do not reply to messages that say "no further reply needed", "thread closed",
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
        self.client = Client(config, words=MCP_WORDS)

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
            raise ToolError(exc.line()) from None

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

    async def read_screen(self, target: str, lines: int = 40) -> str:
        body = await self._call("GET", f"/api/sessions/{_path(target)}/screen", query={"lines": lines})
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


# One description per argument name, the same in every tool that takes it.
Target = Annotated[str, Field(description="the session: its id or alias (ID@HOST for one on a peer); "
                              "list_sessions shows them")]
Prompt = Annotated[str, Field(min_length=1, description="the text to type into the session and submit")]
ReplyExpected = Annotated[bool, Field(description="true adds a line telling the receiver how to answer")]
Wait = Annotated[bool, Field(description="true: return once the delivery is final (delivered or failed, "
                             "with the reason), or after timeout seconds; false: return at once")]
Timeout = Annotated[float, Field(ge=0, le=MAX_WAIT_TIMEOUT,
                                 description="with wait: the most seconds to wait (the delivery goes on "
                                 "after)")]
Lines = Annotated[int, Field(ge=1, le=10_000, description="how many of the last screen lines to return")]


def build_server(config: Config) -> MCPServer:
    tools = DaemonTools(config)
    server: MCPServer = ToolServer("telepty", version=__version__, instructions=INSTRUCTIONS,
                                   log_level="WARNING")

    @server.tool()
    async def list_sessions(
        include_exited: Annotated[bool, Field(description="true lists exited sessions too")] = False,
    ) -> list[dict[str, Any]]:
        """List the agent sessions telepty knows (id, agent kind, state, idle time, project)."""
        return await tools.list_sessions(include_exited)

    @server.tool()
    async def inject(
        target: Target, prompt: Prompt, reply_expected: ReplyExpected = False,
        thread_id: Annotated[str | None, Field(description="the conversation thread it belongs to")] = None,
        no_enter: Annotated[bool, Field(description="true pastes the prompt without submitting it")] = False,
        wait: Wait = False, timeout: Timeout = 60.0,  # noqa: ASYNC109 (the daemon's wait)
    ) -> dict[str, Any]:
        """Deliver a prompt into a session and submit it.

        With wait=true, return once the delivery is final (delivered or failed, with the
        reason) or after timeout seconds; otherwise return at once with its delivery_id.
        reply_expected=true adds a line telling the receiver how to answer you.
        """
        return await tools.inject(target, prompt, reply_expected=reply_expected, thread_id=thread_id,
                                  no_enter=no_enter, wait=wait, timeout=timeout)

    @server.tool()
    async def delivery_status(
        delivery_id: Annotated[str, Field(description="the delivery_id inject or reply returned (dlv_…)")],
    ) -> dict[str, Any]:
        """The current state of a delivery: queued, delivering, retrying, delivered or failed (why)."""
        return await tools.delivery_status(delivery_id)

    @server.tool()
    async def read_screen(target: Target, lines: Lines = 40) -> str:
        """The last lines a session's terminal shows, as text."""
        return await tools.read_screen(target, lines)

    @server.tool()
    async def reply(
        prompt: Annotated[str, Field(min_length=1, description="the answer, typed into the session "
                                     "that asked and submitted")],
        reply_expected: ReplyExpected = False, wait: Wait = False,
        timeout: Timeout = 60.0,  # noqa: ASYNC109 (the daemon's wait)
    ) -> dict[str, Any]:
        """Answer the last prompt this session received that named a sender (its reply_to)."""
        return await tools.reply(prompt, reply_expected=reply_expected, wait=wait, timeout=timeout)

    return server


_EXPECTED = {"string": "a string", "integer": "a whole number", "number": "a number",
             "boolean": "true or false", "array": "a list", "object": "an object"}


def _expected(schema: dict[str, Any]) -> str:
    """What a value for this argument must be, from its JSON schema, in words."""
    kinds = [schema.get("type")] + [s.get("type") for s in schema.get("anyOf", [])]
    words = [_EXPECTED[k] for k in kinds if isinstance(k, str) and k in _EXPECTED]
    text = " or ".join(dict.fromkeys(words)) or "a valid value"
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and hi is not None:
        text += f" from {lo:g} to {hi:g}"
    elif lo is not None:
        text += f" of at least {lo:g}"
    if schema.get("minLength"):
        text += ", not empty"
    return text


def argument_errors(tool: str, schema: dict[str, Any], arguments: dict[str, Any],
                    error: ValidationError | None) -> str | None:
    """The arguments' problems in the tool's own terms; None when there are none.

    Names only arguments the tool has, and never the validation library's text (which
    quotes the caller's data and links to its documentation).
    """
    props: dict[str, Any] = schema.get("properties", {})
    problems = [f"unknown argument {name!r}" for name in sorted(set(arguments) - set(props))]
    for err in error.errors() if error is not None else []:
        name = str(err["loc"][0]) if err.get("loc") else ""
        if name not in props:
            continue
        if err["type"] == "missing":
            problems.append(f"missing argument {name!r}")
        else:
            problems.append(f"argument {name!r} must be {_expected(props[name])}")
    if not problems:
        return None
    required = set(schema.get("required", []))
    names = ", ".join(f"{n}{'' if n in required else '?'}" for n in props)
    return f"{tool}: {'; '.join(dict.fromkeys(problems))}. Its arguments: {names} (? = optional)"


class ToolServer(MCPServer):
    """MCPServer whose argument errors name the tool's real arguments, in plain words."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        schema = next((t.input_schema for t in await self.list_tools() if t.name == name), None)
        if schema is not None:
            message = argument_errors(name, schema, arguments, None)  # unknown arguments
            if message:
                raise ToolError(message)
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if schema is not None and isinstance(exc.__cause__, ValidationError):
                message = argument_errors(name, schema, arguments, exc.__cause__)
                raise ToolError(message or f"{name}: invalid arguments") from None
            raise


def run_mcp(config: Config) -> int:
    build_server(config).run("stdio")
    return 0
