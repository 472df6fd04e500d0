"""A loopback stand-in for the three model APIs the real agent CLIs talk to.

Claude Code speaks Anthropic Messages (``POST /v1/messages``), Codex the OpenAI
Responses API (``POST /v1/responses``, through a custom model provider), Gemini CLI
``streamGenerateContent?alt=sse``. This server answers just enough of each for the agent
to finish a turn, and writes what it received to a JSON-lines log: that log, not the
agent's screen and not telepty, is the ground truth of what was submitted.

What counts as a submitted prompt: a *main* request (one that offers the agent's tools;
title and routing side requests offer none) whose conversation holds one more human
turn than any earlier main request did. The agent's own context blocks
(``<system-reminder>``, ``<environment_context>``, ``<session_context>``) are not the
human's words and are left out; tool results are not turns. Retries of the same
request (the agents retry on errors) add nothing; a request whose history lost a
cancelled turn but ends in different words (Gemini CLI does that) is a new turn. Each new turn is logged as
``{"event": "received", "text": ..., "t": ...}``.

How it answers is chosen by markers in the prompt, so a test says what it wants in the
prompt itself:

- ``[mock:slow=S]``: think for S seconds before answering, as a model reasoning does
  (every agent shows its working indicator meanwhile);
- ``[mock:stream=S]``: stream the answer text over S seconds;
- ``[mock:tool]``: answer with a shell tool call (``touch mock-tool-ran``), which
  raises the agent's permission dialog; the turn after the tool result is a short text;
- anything else: a short text answer at once.

Run: ``python -m tests.realagents.mock_model --log LOG --port-file FILE``; the port is
written to FILE once the server listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

ANTHROPIC = "anthropic"
OPENAI = "openai"
GEMINI = "gemini"

# Text the agents add to a human turn on their own: not the human's words.
CONTEXT_PREFIXES = (
    "<system-reminder>",
    "<environment_context>",
    "<session_context>",
    "<user_instructions>",
    "<INSTRUCTIONS>",
    "# AGENTS.md instructions",
    "<turn_aborted>",
    "[Request interrupted by user",  # Claude Code, after a refused tool call
)
SLOW_RE = re.compile(r"\[mock:slow=(\d+(?:\.\d+)?)\]")
STREAM_RE = re.compile(r"\[mock:stream=(\d+(?:\.\d+)?)\]")
TOOL_MARK = "[mock:tool]"
TOOL_COMMAND = "touch mock-tool-ran"
SIDE_ANSWER = '{"title": "Mock session", "next_speaker": "user", "reasoning": "mock"}'
STREAM_STEP_S = 0.25
MAX_BODY = 64 * 1024 * 1024


@dataclass
class Turn:
    """What a main request asked for: the human turns of its conversation and whether
    its last message is a tool result (then it continues a tool call, not a new turn)."""

    humans: list[str]
    after_tool: bool


@dataclass
class MockModel:
    log: TextIO
    dump: Path | None = None
    seen: int = 0  # human turns already logged
    last: tuple[int, str] = (0, "")  # (turns, last words) of the previous main request
    requests: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def write(self, **event: Any) -> None:
        self.log.write(json.dumps({"t": time.time(), **event}, ensure_ascii=False) + "\n")
        self.log.flush()

    def note(self, api: str, path: str, body: dict[str, Any], turn: Turn | None) -> str | None:
        """Log the request and any new human turn; the text the answer is chosen by."""
        self.requests += 1
        if self.dump is not None:  # whole request bodies, for reading a new agent version
            (self.dump / f"{self.requests:04d}-{api}.json").write_text(json.dumps(body, indent=1))
        main = turn is not None
        self.write(event="request", api=api, path=path, main=main, n=self.requests,
                   stream=bool(body.get("stream")) or "alt=sse" in path,
                   humans=len(turn.humans) if turn else None)
        if turn is None or not turn.humans:
            return None
        last = (len(turn.humans), turn.humans[-1])
        if len(turn.humans) > self.seen:
            new = turn.humans[self.seen:]
        elif not turn.after_tool and last != self.last:
            new = turn.humans[-1:]  # the agent dropped a cancelled turn from its history
        else:
            new = []  # a retry, or a tool result continuing the turn
        for text in new:
            self.write(event="received", api=api, text=text)
        self.seen, self.last = len(turn.humans), last
        return None if turn.after_tool else turn.humans[-1]


# -- reading the three request formats ------------------------------------------------


def _human(texts: list[str]) -> str | None:
    kept = [t for t in texts if not t.lstrip().startswith(CONTEXT_PREFIXES)]
    return "\n".join(kept) if kept else None


def anthropic_turn(body: dict[str, Any]) -> Turn | None:
    if not body.get("tools"):
        return None
    humans: list[str] = []
    after_tool = False
    for msg in body.get("messages", []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        # After a refused tool call the human's next words share a message with the
        # tool result: words make it a turn, a bare tool result only continues one.
        text = _human([b.get("text", "") for b in blocks if b.get("type") == "text"])
        if text is not None:
            humans.append(text)
        after_tool = text is None and any(b.get("type") == "tool_result" for b in blocks)
    return Turn(humans, after_tool)


def openai_turn(body: dict[str, Any]) -> Turn | None:
    if not body.get("tools"):
        return None
    humans: list[str] = []
    after_tool = False
    for item in body.get("input", []):
        kind = item.get("type", "message")
        if kind.endswith("_output"):  # function_call_output, custom_tool_call_output
            after_tool = True
            continue
        if kind != "message" or item.get("role") != "user":
            continue
        parts = item.get("content") or []
        if isinstance(parts, str):
            parts = [{"type": "input_text", "text": parts}]
        text = _human([p.get("text", "") for p in parts if p.get("type") == "input_text"])
        if text is not None:
            humans.append(text)
            after_tool = False
    return Turn(humans, after_tool)


def gemini_turn(body: dict[str, Any]) -> Turn | None:
    if not body.get("tools"):
        return None
    humans: list[str] = []
    after_tool = False
    for content in body.get("contents", []):
        if content.get("role") != "user":
            continue
        parts = content.get("parts") or []
        text = _human([p["text"] for p in parts if "text" in p and not p.get("thought")])
        if text is not None:
            humans.append(text)
        after_tool = text is None and any("functionResponse" in p for p in parts)
    return Turn(humans, after_tool)


# -- answers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    text: str
    think: float = 0.0  # seconds before the first word
    stream: float = 0.0  # spread the text over this long
    tool: bool = False


def choose(prompt: str | None, side: bool) -> Answer:
    if side:
        return Answer(SIDE_ANSWER)
    if prompt is None:
        return Answer("Done.")
    if TOOL_MARK in prompt:
        return Answer("Running it.", tool=True)
    think, stream = SLOW_RE.search(prompt), STREAM_RE.search(prompt)
    return Answer(f"Mock answer to {len(prompt)} characters.",
                  think=float(think.group(1)) if think else 0.0,
                  stream=float(stream.group(1)) if stream else 0.0)


async def chunks(answer: Answer) -> AsyncIterator[str]:
    """The answer's text in pieces: after ``think`` seconds, spread over ``stream``."""
    if answer.think > 0:
        await asyncio.sleep(answer.think)  # the model "reasoning", not synchronisation
    if answer.stream <= 0:
        yield answer.text
        return
    deadline = time.monotonic() + answer.stream
    words = answer.text.split(" ")
    i = 0
    while time.monotonic() < deadline:
        yield (words[i % len(words)] + " ")
        i += 1
        await asyncio.sleep(STREAM_STEP_S)  # the slow answer itself, not synchronisation
    yield "(end)"


async def sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    return resp


async def send(resp: web.StreamResponse, data: dict[str, Any], event: str | None = None) -> None:
    head = f"event: {event}\n" if event else ""
    await resp.write((head + "data: " + json.dumps(data) + "\n\n").encode())


# Anthropic Messages -------------------------------------------------------------------


def _usage() -> dict[str, int]:
    return {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0}


async def anthropic_stream(request: web.Request, model: str, answer: Answer) -> web.StreamResponse:
    resp = await sse(request)
    msg = {"id": f"msg_{time.time_ns()}", "type": "message", "role": "assistant", "model": model,
           "content": [], "stop_reason": None, "stop_sequence": None, "usage": _usage()}
    await send(resp, {"type": "message_start", "message": msg}, "message_start")
    await send(resp, {"type": "content_block_start", "index": 0,
                      "content_block": {"type": "text", "text": ""}}, "content_block_start")
    async for piece in chunks(answer):
        await send(resp, {"type": "content_block_delta", "index": 0,
                          "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
    await send(resp, {"type": "content_block_stop", "index": 0}, "content_block_stop")
    stop = "end_turn"
    if answer.tool:
        stop = "tool_use"
        await send(resp, {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": f"toolu_{time.time_ns()}", "name": "Bash", "input": {}}},
            "content_block_start")
        args = json.dumps({"command": TOOL_COMMAND, "description": "Create a marker file"})
        await send(resp, {"type": "content_block_delta", "index": 1,
                          "delta": {"type": "input_json_delta", "partial_json": args}},
                   "content_block_delta")
        await send(resp, {"type": "content_block_stop", "index": 1}, "content_block_stop")
    await send(resp, {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                      "usage": {"output_tokens": 5}}, "message_delta")
    await send(resp, {"type": "message_stop"}, "message_stop")
    await resp.write_eof()
    return resp


def anthropic_json(model: str, answer: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": answer.text}]
    stop = "end_turn"
    if answer.tool:
        stop = "tool_use"
        content.append({"type": "tool_use", "id": f"toolu_{time.time_ns()}", "name": "Bash",
                        "input": {"command": TOOL_COMMAND, "description": "Create a marker file"}})
    return {"id": f"msg_{time.time_ns()}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": None, "usage": _usage()}


# OpenAI Responses ---------------------------------------------------------------------


async def openai_stream(request: web.Request, model: str, answer: Answer) -> web.StreamResponse:
    resp = await sse(request)
    rid = f"resp_{time.time_ns()}"
    await send(resp, {"type": "response.created", "response": {"id": rid, "model": model}},
               "response.created")
    mid = f"msg_{time.time_ns()}"
    await send(resp, {"type": "response.output_item.added", "output_index": 0, "item": {
        "type": "message", "id": mid, "role": "assistant", "content": []}}, "response.output_item.added")
    text = ""
    async for piece in chunks(answer):
        text += piece
        await send(resp, {"type": "response.output_text.delta", "item_id": mid, "output_index": 0,
                          "content_index": 0, "delta": piece}, "response.output_text.delta")
    await send(resp, {"type": "response.output_item.done", "output_index": 0, "item": {
        "type": "message", "id": mid, "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}]}},
        "response.output_item.done")
    if answer.tool:
        args = json.dumps({"cmd": TOOL_COMMAND, "sandbox_permissions": "require_escalated",
                           "justification": "The mock model wants to create a marker file."})
        await send(resp, {"type": "response.output_item.done", "output_index": 1, "item": {
            "type": "function_call", "id": f"fc_{time.time_ns()}", "call_id": f"call_{time.time_ns()}",
            "name": "exec_command", "arguments": args, "status": "completed"}},
            "response.output_item.done")
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
    await send(resp, {"type": "response.completed", "response": {
        "id": rid, "model": model, "status": "completed", "usage": usage}}, "response.completed")
    await resp.write_eof()
    return resp


# Gemini -------------------------------------------------------------------------------


def _gemini_chunk(parts: list[dict[str, Any]], model: str, done: bool) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if done:
        cand["finishReason"] = "STOP"
    return {"candidates": [cand], "modelVersion": model, "usageMetadata": {
        "promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}}


async def gemini_stream(request: web.Request, model: str, answer: Answer) -> web.StreamResponse:
    resp = await sse(request)
    async for piece in chunks(answer):
        await send(resp, _gemini_chunk([{"text": piece}], model, done=False))
    last: list[dict[str, Any]] = [{"text": ""}]
    if answer.tool:
        last = [{"functionCall": {"name": "run_shell_command", "args": {
            "command": TOOL_COMMAND, "description": "Create a marker file"}}}]
    await send(resp, _gemini_chunk(last, model, done=True))
    await resp.write_eof()
    return resp


def gemini_json(model: str, answer: Answer) -> dict[str, Any]:
    return _gemini_chunk([{"text": answer.text}], model, done=True)


# -- the server -----------------------------------------------------------------------


def make_app(mock: MockModel) -> web.Application:
    async def read(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}

    def answered(api: str, turn: Turn | None) -> None:
        if turn is not None:  # when a turn's answer ended: "the agent was busy until"
            mock.write(event="answered", api=api, humans=len(turn.humans))

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await read(request)
        turn = anthropic_turn(body)
        async with mock.lock:
            prompt = mock.note(ANTHROPIC, request.path_qs, body, turn)
        answer = choose(prompt, side=turn is None)
        model = str(body.get("model", "claude-mock"))
        if body.get("stream"):
            resp = await anthropic_stream(request, model, answer)
        else:
            resp = web.json_response(anthropic_json(model, answer))
        answered(ANTHROPIC, turn)
        return resp

    async def count_tokens(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"input_tokens": 10})

    async def responses(request: web.Request) -> web.StreamResponse:
        body = await read(request)
        turn = openai_turn(body)
        async with mock.lock:
            prompt = mock.note(OPENAI, request.path_qs, body, turn)
        resp = await openai_stream(request, str(body.get("model", "mock-model")),
                                   choose(prompt, side=turn is None))
        answered(OPENAI, turn)
        return resp

    async def gemini(request: web.Request) -> web.StreamResponse:
        body = await read(request)
        model, _, method = request.match_info["call"].partition(":")
        if method == "countTokens":
            return web.json_response({"totalTokens": 10})
        turn = gemini_turn(body)
        async with mock.lock:
            prompt = mock.note(GEMINI, request.path_qs, body, turn)
        answer = choose(prompt, side=turn is None)
        if method == "streamGenerateContent":
            resp = await gemini_stream(request, model, answer)
        else:
            resp = web.json_response(gemini_json(model, answer))
        answered(GEMINI, turn)
        return resp

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [], "models": []})

    async def other(request: web.Request) -> web.Response:
        await request.read()
        mock.write(event="unhandled", method=request.method, path=request.path_qs)
        return web.json_response({"error": {"message": "not mocked"}}, status=404)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1beta/models/{call}", gemini)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


async def serve(log: TextIO, port_file: Path, dump: Path | None = None) -> None:
    runner = web.AppRunner(make_app(MockModel(log, dump)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--port-file", required=True, type=Path)
    ap.add_argument("--dump", type=Path, help="also write every request body into this folder")
    args = ap.parse_args(argv)
    with open(args.log, "a", encoding="utf-8") as log:
        try:
            asyncio.run(serve(log, args.port_file, args.dump))
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
