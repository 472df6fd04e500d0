"""The shipped profiles against screens the real agent CLIs drew (tests/realagents/screens).

Each fixture is what the daemon judged during a real-agent test; its name says which
agent, which terminal and what state it was in. These run in milliseconds, so a pattern
change is checked against every real screen without starting an agent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from telepty.delivery.confirm import OTHER_TEXT, SUBMITTED, judge
from telepty.delivery.profiles import load_profiles
from telepty.delivery.screen import (
    BLOCKED,
    BUSY,
    COMPOSER_HAS_TEXT,
    IDLE,
    holds_prompt,
    read_screen,
)

SCREENS = Path(__file__).resolve().parents[1] / "realagents" / "screens"
FIXTURES = sorted(SCREENS.glob("*.txt"))
PROFILES = load_profiles(None)
VERDICT = {"idle": IDLE, "busy": BUSY, "dialog": BLOCKED, "typed": COMPOSER_HAS_TEXT,
           "placeholder": COMPOSER_HAS_TEXT, "queued": BUSY}
EVERY_AGENT = ("idle", "busy", "dialog", "typed", "placeholder")  # "queued" is Claude's
TYPED = "half typed, never sent"


def _load(path: Path) -> tuple[str, str, list[str]]:
    agent, _mode, phase = path.stem.split("-", 2)
    return agent, phase, path.read_text(encoding="utf-8").split("\n")


def test_every_agent_and_state_has_a_screen() -> None:
    names = {p.stem for p in FIXTURES}
    for agent in ("claude", "codex", "gemini"):
        for phase in EVERY_AGENT:
            assert f"{agent}-pane-{phase}" in names


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_real_screen_verdict(path: Path) -> None:
    agent, phase, lines = _load(path)
    profile = PROFILES.profile_for(agent)
    reading = read_screen(lines, profile)
    assert reading.verdict == VERDICT[phase], reading.why
    composer = reading.composer
    if phase == "idle":
        assert composer is not None and composer.empty
    elif phase == "busy":
        assert reading.busy is not None
    elif phase == "dialog":
        assert reading.dialog is not None
        # A prompt that raised a dialog was taken by the agent.
        assert judge(lines, [], "Please run the tool. [mock:tool]", profile).state == SUBMITTED
    elif phase == "typed":
        assert composer is not None and composer.text == TYPED
        assert holds_prompt(composer, TYPED, profile) == "text"
    elif phase == "placeholder":
        assert holds_prompt(composer, "any long paste", profile) == "placeholder"
    elif phase == "queued":
        assert composer is not None and composer.empty, reading.why


def test_a_prompt_claude_queued_was_taken() -> None:
    """Claude Code takes a prompt sent while it works into its queue, and its input then
    reads "❯ Press up to edit queued messages" (after a no-break space): the prompt was
    taken and goes to the model as its own message when the answer ends. Under load the
    answer's last output can be a quiet window old, spinner gone, before Claude ends its
    turn; a prompt sent then is queued too, and the input line alone must say it was
    taken (it was judged "other text", failed not_submitted, and still reached the model)."""
    profile = PROFILES.profile_for("claude")
    _, _, lines = _load(SCREENS / "claude-pane-queued.txt")
    prompt = "Queued while it was thinking."
    assert judge(lines, [], prompt, profile).state == SUBMITTED
    no_spinner = [line for line in lines
                  if not any(re.search(p, line) for p in profile.busy_patterns)]
    assert len(no_spinner) < len(lines)
    assert judge(no_spinner, [], prompt, profile).state == SUBMITTED


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini"])
def test_a_prompt_in_the_transcript_is_not_the_composer(agent: str) -> None:
    """Every agent echoes past prompts with its input marker; the input line is the last
    one, so a submitted prompt never looks stuck, and other text is not ours."""
    profile = PROFILES.profile_for(agent)
    _, _, busy = _load(SCREENS / f"{agent}-pane-busy.txt")
    assert judge(busy, [], "Think hard about this one. [mock:slow=5]", profile).state == SUBMITTED
    _, _, typed = _load(SCREENS / f"{agent}-pane-typed.txt")
    assert "Sent while the dialog was open." in "\n".join(typed)
    assert judge(typed, [], "Sent while the dialog was open.", profile).state == OTHER_TEXT
