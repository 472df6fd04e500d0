"""Reading agent screens with the shipped profiles: verdicts, composers, prompt fingerprints.

The screens are transcribed from the agents' own layouts (as the profile comments show
them), so a broken shipped pattern fails here first.
"""

from __future__ import annotations

import pytest

from telepty.delivery.confirm import OTHER_TEXT, STUCK, SUBMITTED, UNKNOWN_STATE, judge
from telepty.delivery.profiles import load_profiles
from telepty.delivery.screen import (
    BLOCKED,
    BUSY,
    COMPOSER_HAS_TEXT,
    IDLE,
    UNKNOWN,
    echoed,
    holds_prompt,
    normalise,
    read_screen,
)
from telepty.delivery.terminal_screen import TerminalScreen, render_output

P = load_profiles(None)
CLAUDE, CODEX, GEMINI, AIDER, DEFAULT = (P.profile_for(n) for n in ("claude", "codex", "gemini", "aider",
                                                                    "default"))

CLAUDE_IDLE = """
> earlier question about the parser
⏺ The parser handles it.

╭──────────────────────────────────────────────╮
│ > Try "refactor <filepath>"                  │
╰──────────────────────────────────────────────╯
  ? for shortcuts
"""
CLAUDE_NEW_STYLE_IDLE = """
> earlier question
⏺ Sure.

──────────────────────────────────────────────
>
──────────────────────────────────────────────
  ⏵⏵ accept edits on (shift+tab to cycle)
"""
CLAUDE_TYPED = """
╭──────────────────────────────────────────────╮
│ > fix the failing test in src/app.py and     │
│   then run the whole suite                   │
╰──────────────────────────────────────────────╯
  ? for shortcuts
"""
CLAUDE_PLACEHOLDER = """
╭──────────────────────────────────────────────╮
│ > [Pasted text #2 +42 lines]                 │
╰──────────────────────────────────────────────╯
"""
CLAUDE_BUSY = """
> fix the failing test
⏺ Reading src/app.py

✻ Cogitating… (12s · ↑ 1.2k tokens · esc to interrupt)

╭──────────────────────────────────────────────╮
│ >                                            │
╰──────────────────────────────────────────────╯
"""
CLAUDE_DIALOG = """
> remove the build dir
⏺ I'll remove it.
╭──────────────────────────────────────────────╮
│ Bash command                                 │
│                                              │
│   rm -rf build/                              │
│                                              │
│ Do you want to proceed?                      │
│ ❯ 1. Yes                                     │
│   2. No, and tell Claude what to do (esc)    │
╰──────────────────────────────────────────────╯
"""
CLAUDE_OLD_DIALOG_TEXT_ABOVE_COMPOSER = """
> why did you ask "Do you want to proceed?" earlier
⏺ Because the command was destructive.

╭──────────────────────────────────────────────╮
│ >                                            │
╰──────────────────────────────────────────────╯
"""
CODEX_IDLE = """
› explain the repo
• This repository is a daemon.

› Ask Codex to do anything

  ⏎ send   ⌃J newline   ⌃T transcript   ⌃C quit
"""
CODEX_WORKING = """
› explain the repo

• Working (4s • esc to interrupt)

› Ask Codex to do anything
"""
CODEX_APPROVAL = """
› clean up
  Would you like to run the following command?
  $ rm -rf target
› 1. Yes, proceed (y)
  2. No, and tell Codex what to do differently (esc)
"""
GEMINI_IDLE = """
╭──────────────────────────────────────────────────────╮
│ >   Type your message or @path/to/file               │
╰──────────────────────────────────────────────────────╯
~/project (main*)     no sandbox     gemini-2.5-pro (100% context left)
"""
AIDER_IDLE = """
Aider v0.86.1
Main model: anthropic/claude-sonnet with diff edit format

>
"""
AIDER_CONFIRM = """
> add the tests
Add file to the chat? (Y)es/(N)o/(A)ll/(S)kip all/(D)on't ask again [Yes]:
"""


def lines(text: str) -> list[str]:
    return text.strip("\n").split("\n")


@pytest.mark.parametrize(
    ("profile", "screen", "verdict"),
    [
        (CLAUDE, CLAUDE_IDLE, IDLE),
        (CLAUDE, CLAUDE_NEW_STYLE_IDLE, IDLE),
        (CLAUDE, CLAUDE_TYPED, COMPOSER_HAS_TEXT),
        (CLAUDE, CLAUDE_PLACEHOLDER, COMPOSER_HAS_TEXT),
        (CLAUDE, CLAUDE_BUSY, BUSY),
        (CLAUDE, CLAUDE_DIALOG, BLOCKED),
        (CLAUDE, CLAUDE_OLD_DIALOG_TEXT_ABOVE_COMPOSER, IDLE),
        (CODEX, CODEX_IDLE, IDLE),
        (CODEX, CODEX_WORKING, BUSY),
        (CODEX, CODEX_APPROVAL, BLOCKED),
        (GEMINI, GEMINI_IDLE, IDLE),
        (AIDER, AIDER_IDLE, IDLE),
        (AIDER, AIDER_CONFIRM, BLOCKED),
        (CLAUDE, "$ ls\nREADME.md\n$", UNKNOWN),
        (DEFAULT, CLAUDE_IDLE, UNKNOWN),
    ],
)
def test_verdicts_name_the_pattern(profile, screen: str, verdict: str) -> None:  # type: ignore[no-untyped-def]
    r = read_screen(lines(screen), profile)
    assert r.verdict == verdict, r.why
    if verdict == UNKNOWN:
        assert r.pattern is None and "no composer" in r.why
    else:
        assert r.pattern is not None and r.line is not None and repr(r.pattern) in r.why


def test_composer_text_spans_continuation_lines_without_borders() -> None:
    r = read_screen(lines(CLAUDE_TYPED), CLAUDE)
    assert r.composer is not None
    assert r.composer.text == "fix the failing test in src/app.py and\nthen run the whole suite"


def test_the_live_composer_is_the_last_one() -> None:
    r = read_screen(lines(CODEX_IDLE), CODEX)
    assert r.composer is not None and r.composer.empty
    assert r.composer.lines[0] == "› Ask Codex to do anything"


@pytest.mark.parametrize(
    ("screen", "prompt", "held"),
    [
        (CLAUDE_TYPED, "fix the failing test in src/app.py and then run the whole suite", "text"),
        (CLAUDE_TYPED, "rename the module", None),  # someone else's text
        (CLAUDE_PLACEHOLDER, "whatever\n" * 42, "placeholder"),
        (CLAUDE_IDLE, "refactor <filepath>", None),  # the placeholder suggestion is not text
        (CLAUDE_IDLE, "Try", None),
    ],
)
def test_holds_prompt(screen: str, prompt: str, held: str | None) -> None:
    r = read_screen(lines(screen), CLAUDE)
    assert holds_prompt(r.composer, prompt, CLAUDE) == held


def test_a_scrolled_window_of_a_long_prompt_counts_as_ours() -> None:
    prompt = " ".join(f"word{i}" for i in range(200))
    screen = ["› " + "word57 word58 word59 word60 word61"]
    r = read_screen(screen, CODEX)
    assert holds_prompt(r.composer, prompt, CODEX) == "text"


def test_normalise_ignores_wrapping_padding_and_borders() -> None:
    assert normalise("│ > a b\t c │") == ">abc"


# -- judging a submission -----------------------------------------------------------------


def test_judge_submitted_when_the_composer_is_empty_again() -> None:
    before = lines(CLAUDE_TYPED)
    after = lines(CLAUDE_IDLE)
    j = judge(after, before, "fix the failing test in src/app.py and then run the whole suite", CLAUDE)
    assert (j.state, j.how) == (SUBMITTED, "screen") and j.pattern in CLAUDE.idle_patterns


def test_judge_stuck_while_the_text_or_placeholder_is_there() -> None:
    prompt = "fix the failing test in src/app.py and then run the whole suite"
    j = judge(lines(CLAUDE_TYPED), lines(CLAUDE_TYPED), prompt, CLAUDE)
    assert (j.state, j.held) == (STUCK, "text")
    j = judge(lines(CLAUDE_PLACEHOLDER), [], "x\n" * 42, CLAUDE)
    assert (j.state, j.held) == (STUCK, "placeholder")


def test_judge_busy_or_dialog_after_submit_means_taken() -> None:
    assert judge(lines(CLAUDE_BUSY), [], "fix the failing test", CLAUDE).state == SUBMITTED
    j = judge(lines(CLAUDE_DIALOG), [], "remove the build dir", CLAUDE)
    assert j.state == SUBMITTED and "proceed" in (j.line or "")


def test_judge_aider_prompt_line_pushed_up_by_the_spinner() -> None:
    after = ["> add a docstring to parse()", "Waiting for anthropic/claude-sonnet"]
    j = judge(after, ["> add a docstring to parse()"], "add a docstring to parse()", AIDER)
    assert j.state == SUBMITTED and j.pattern == r"\bWaiting for \S+"


def test_judge_other_text_and_unknown() -> None:
    other = ["› /review ", "", "  ⏎ send"]
    assert judge(other, [], "/rev this please", CODEX).state == OTHER_TEXT
    assert judge(["$ "], ["$ "], "hello", CODEX).state == UNKNOWN_STATE


def test_judge_echo_without_a_composer() -> None:
    before = ["some output"]
    after = ["some output", "You: refactor the parser module now", "Assistant: on it"]
    j = judge(after, before, "refactor the parser module now", CODEX)
    assert (j.state, j.how) == (SUBMITTED, "echo")
    assert echoed("refactor the parser module now", after, after) is None  # nothing new


# -- the PTY terminal ----------------------------------------------------------------------


def test_terminal_screen_full_screen_redraws() -> None:
    t = TerminalScreen(40, 6)
    t.feed(b"\x1b[?1049h\x1b[H\x1b[2Jhello\r\nworld")
    t.feed(b"\x1b[H\x1b[2J\x1b[3;1H> typed text\x1b[1;1Htop")
    assert t.lines() == ["top", "", "> typed text"]


def test_terminal_screen_erase_wrap_scroll_and_wide_chars() -> None:
    t = TerminalScreen(10, 3)
    t.feed(b"0123456789abc\r\nline2\r\nline3\r\nline4")
    assert t.lines() == ["abc", "line2", "line3", "line4"][-3:]
    t.feed(b"\r\x1b[K> \xe6\x97\xa5\xe6\x9c\xac")  # 日本: two wide characters
    assert t.lines()[-1] == "> 日本"
    t.feed(b"\x1b[2D\x1b[K")
    assert t.lines()[-1] == "> 日"


def test_render_output_of_a_line_oriented_agent() -> None:
    data = b"Aider v0.86\r\n\r\n> \x1b[?2004hadd tests\r\nWaiting for gpt\r\x1b[K\r\n> "
    assert render_output(data, 80, 10) == ["Aider v0.86", "", "> add tests", "", ">"]
