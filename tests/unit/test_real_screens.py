"""The shipped profiles against screens the real agent CLIs drew (tests/realagents/screens).

Each fixture is what the daemon judged during a real-agent test; its name says which
agent, which terminal and what state it was in. These run in milliseconds, so a pattern
change is checked against every real screen without starting an agent.
"""

from __future__ import annotations

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
           "placeholder": COMPOSER_HAS_TEXT}
TYPED = "half typed, never sent"


def _load(path: Path) -> tuple[str, str, list[str]]:
    agent, _mode, phase = path.stem.split("-", 2)
    return agent, phase, path.read_text(encoding="utf-8").split("\n")


def test_every_agent_and_state_has_a_screen() -> None:
    names = {p.stem for p in FIXTURES}
    for agent in ("claude", "codex", "gemini"):
        for phase in VERDICT:
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
