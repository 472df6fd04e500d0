"""The CLI's parser, words and progress text: pure checks, no daemon."""

from __future__ import annotations

import argparse
import io
import json
import re

import pytest

from telepty.cli.client import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_DAEMON, EXIT_PENDING, EXIT_USAGE
from telepty.cli.completion_cmd import SESSIONS, describe
from telepty.cli.main import build_parser, main
from telepty.cli.waiting import describe as describe_record
from telepty.cli.wording import CLI_WORDS, MCP_WORDS
from telepty.clock import to_iso
from tests.helpers import ROOT


def _actions(parser: argparse.ArgumentParser, path: str = "telepty"):  # type: ignore[no-untyped-def]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _actions(sub, f"{path} {name}")
        else:
            yield path, a


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{path} {a.option_strings or a.dest}" for path, a in _actions(build_parser())
               if not a.help and not isinstance(a, argparse._HelpAction)]
    assert missing == []


def test_every_wait_says_its_default_timeout() -> None:
    for path, a in _actions(build_parser()):
        if "--timeout" in a.option_strings:
            rendered = a.help % {"default": a.default}
            assert rendered.endswith("(default: 120)"), (path, rendered)


def test_arguments_that_name_a_session_complete_session_ids() -> None:
    root = describe(build_parser())
    cmds = {c.name: c for c in root.subcommands}
    for name in ("inject", "keys", "explain", "screen", "kill", "attach", "rename", "multicast"):
        assert cmds[name].positionals[0] == SESSIONS, name
    assert cmds["deliveries"].values["--session"] == SESSIONS
    assert cmds["deliveries"].values["--status"] == ["queued", "delivering", "delivered", "retrying",
                                                     "held", "failed", "cancelled"]
    assert cmds["list"].values["--agent"] == ["claude", "codex", "gemini", "aider", "other"]
    assert cmds["completion"].positionals[0] == ["bash", "zsh", "fish", SESSIONS]
    assert cmds["inject"].positionals[1] is None  # the prompt: nothing to offer


def test_cli_words_name_the_cli_options_not_json_fields() -> None:
    raw = "prompt contains control character U+001B (escape) at index 4; only \\n and \\t are allowed " \
          "unless raw is true"
    assert CLI_WORDS.detail(raw).endswith("only \\n and \\t are allowed unless --raw is given")
    keys = ("keys[1] 'Foo' is not a key name (Enter, …, with C-/M-/S- prefixes); "
            'send text as {"text": "..."}')
    assert CLI_WORDS.detail(keys) == ("key 2 'Foo' is not a key name (Enter, …, with C-/M-/S- prefixes); "
                                      "type text as text:WORDS")
    assert CLI_WORDS.detail("keys[0].text must be 1-4096 characters") == (
        "the text:WORDS of key 1 must be 1-4096 characters")
    assert CLI_WORDS.hint("too_large", "prompt is 20 bytes of UTF-8; the limit is 10") == (
        "the daemon's TELEPTY_MAX_PROMPT_BYTES setting raises the limit (restart the daemon with it)")
    assert "TELEPTY_MAX_BODY_BYTES" in str(CLI_WORDS.hint("too_large", "request body over 5 bytes"))
    assert MCP_WORDS.detail(raw).endswith("(the inject tool sends no other control characters)")
    assert "session_id" not in MCP_WORDS.detail(
        "telepty reply answers for the session it runs in, and this request names none: run it inside a "
        "wrapped or spawned session (TELEPTY_SESSION_TOKEN) or pass session_id")


def test_progress_says_status_reason_attempt_and_next_try() -> None:
    record = {"delivery_id": "dlv_1", "status": "retrying", "reason": "busy", "attempts": 2,
              "next_attempt_at": to_iso(1000.0 + 41.2)}
    assert describe_record(record, 1000.0) == "dlv_1 retrying (busy), attempt 2, next try in 41s"
    assert describe_record({**record, "detail": "the screen kept changing"}, 1041.5) == (
        "dlv_1 retrying (busy: the screen kept changing), attempt 2, next try now")
    delivering = {"delivery_id": "dlv_1", "status": "delivering", "stage": "quiet_guard", "attempts": 3}
    assert describe_record(delivering, 0) == "dlv_1 delivering (stage quiet_guard), attempt 3"


def test_usage_errors_are_json_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inject", "--json"]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == {"error": "usage", "message": "the following arguments are required: target, "
                               "prompt", "hint": "see `telepty inject --help`", "exit": 2}
    assert main(["inject"]) == EXIT_USAGE  # without --json: argparse's usage text, as ever
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: telepty inject") and "error: the following" in err
    # --json after -- belongs to the wrapped command: not telepty's.
    assert main(["wrap", "--id", "bad id!", "--", "x", "--json"]) == EXIT_USAGE
    assert capsys.readouterr().out == ""


def test_empty_and_blank_prompts_are_refused_before_anything_is_sent(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEPTY_HOME", "/nonexistent/telepty-home")  # no daemon could be reached anyway
    for prompt, what in (("", "empty"), ("  \n\t ", "only whitespace")):
        for cmd in (["inject", "x", prompt], ["multicast", "x,y", prompt], ["broadcast", prompt],
                    ["reply", prompt]):
            assert main(cmd) == EXIT_USAGE, cmd
            assert capsys.readouterr().err == f"telepty: the prompt is {what}: there is nothing to deliver\n"


def test_readme_documents_every_exit_code() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Exit codes"):]
    section = section[: section.index("\n## ", 1)]
    documented = {int(m) for m in re.findall(r"^\| `(\d+)` \|", section, re.M)}
    assert documented == {0, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DAEMON, EXIT_PENDING, EXIT_INTERRUPTED}


def test_progress_prints_a_line_per_change_when_not_at_a_terminal() -> None:
    from telepty.cli.waiting import Progress

    stream = io.StringIO()
    with Progress(stream, live=False) as p:
        for text in ("a queued", "a queued", "a retrying (busy), attempt 1"):
            p.update(text)
        # A countdown alone is no change worth a line.
        p.update("a retrying (busy), attempt 2, next try in 29s", key=("retrying", 2))
        p.update("a retrying (busy), attempt 2, next try in 28s", key=("retrying", 2))
    assert stream.getvalue() == ("telepty: a queued\ntelepty: a retrying (busy), attempt 1\n"
                                 "telepty: a retrying (busy), attempt 2, next try in 29s\n")
