"""The daemon's errors in the words of the front end that shows them.

The HTTP API names JSON fields (``raw: true``, ``{"text": ...}``, ``session_id``); a
person at the CLI knows ``--raw``, ``text:WORDS`` and ``--session``, and an agent
using the MCP tools knows only the tools' arguments. One table per front end turns
the first into the second, and adds the setting to change where a limit was hit,
so no front end shows an error that names something its user cannot type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Replacement = str | Callable[[re.Match[str]], str]


def _key_number(m: re.Match[str]) -> str:
    return f"key {int(m.group(1)) + 1}"


def _key_text(m: re.Match[str]) -> str:
    return f"the text:WORDS of {_key_number(m)}"


@dataclass(frozen=True)
class Vocabulary:
    """How one front end names what the API calls fields, and what it suggests per error."""

    phrases: tuple[tuple[str, Replacement], ...] = ()  # (regex, replacement), applied in order
    hints: Mapping[str, str] = field(default_factory=dict)  # error code → what to do about it

    def detail(self, detail: str) -> str:
        for pattern, replacement in self.phrases:
            detail = re.sub(pattern, replacement, detail)
        return detail

    def hint(self, code: str, detail: str) -> str | None:
        if code == "too_large":
            setting = "TELEPTY_MAX_BODY_BYTES" if "request body" in detail else "TELEPTY_MAX_PROMPT_BYTES"
            return f"the daemon's {setting} setting raises the limit (restart the daemon with it)"
        return self.hints.get(code)


CLI_WORDS = Vocabulary(
    phrases=(
        (r"unless raw is true", "unless --raw is given"),
        (r'send text as \{"text": "\.\.\."\}', "type text as text:WORDS"),
        (r'must be a key name or \{"text": "\.\.\."\}', "must be a key name or text:WORDS"),
        (r"keys\[(\d+)\]\.text", _key_text),
        (r"keys\[(\d+)\]", _key_number),
        (r"\bor pass session_id\b", "or pass --session ID"),
        (r"\bsession_id is\b", "--session is"),
        (r"\bquiet_ms must be\b", "--quiet-ms must be"),
        (r"\btimeout must be\b", "--timeout must be"),
        (r"\blines must be\b", "--lines must be"),
        (r"\blimit must be\b", "--limit must be"),
    ),
    hints={"session_not_found": "`telepty list` shows the sessions there are"},
)

MCP_WORDS = Vocabulary(
    phrases=(
        (r" unless raw is true", " (the inject tool sends no other control characters)"),
        (r"\btimeout must be\b", "the timeout argument must be"),
        (r"\blines must be\b", "the lines argument must be"),
        (r"\(TELEPTY_SESSION_TOKEN\) or pass session_id",
         "(the agent that started `telepty mcp` must run in one: its TELEPTY_SESSION_TOKEN says who it is)"),
    ),
    hints={"session_not_found": "the list_sessions tool shows the sessions there are"},
)
