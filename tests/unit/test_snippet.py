"""``telepty init --print-snippet``: what an agent is told, in markdown or JSON."""

from __future__ import annotations

import json

import pytest

from telepty.cli.agents_cmd import SNIPPET_FILES, TERMINATION_PHRASES, snippet, snippet_markdown
from telepty.cli.main import main
from telepty.delivery.reply_guide import termination_signal


def test_every_phrase_the_snippet_teaches_is_a_termination_signal() -> None:
    for phrase in TERMINATION_PHRASES:
        assert termination_signal(f"Thanks, {phrase}.") is not None, phrase


@pytest.mark.parametrize("target", sorted(SNIPPET_FILES))
def test_markdown_tells_identity_reply_peers_and_phrases(target: str) -> None:
    text = snippet_markdown(target)
    for needle in ("$TELEPTY_SESSION_ID", "telepty whoami", 'telepty reply "', "telepty list",
                   "telepty inject", "--reply-expected", *TERMINATION_PHRASES):
        assert needle in text, needle
    assert "never print" in text  # the token is a secret


def test_json_is_machine_readable() -> None:
    data = json.loads(snippet("gemini", "json"))
    assert data["file"] == "GEMINI.md"
    assert data["termination_phrases"] == list(TERMINATION_PHRASES)
    assert data["mcp"]["mcpServers"]["telepty"] == {"command": "telepty", "args": ["mcp"]}
    assert data["markdown"] == snippet_markdown("gemini")


def test_cli_prints_it_with_or_without_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--print-snippet", "--target", "agents", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["file"] == "AGENTS.md"
    # `telepty init` alone prints the snippet too (printing is all init ever does).
    assert main(["init"]) == 0
    assert capsys.readouterr().out == snippet("claude", "markdown")
