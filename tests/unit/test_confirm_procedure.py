"""The paste → settle → submit → confirm → rescue procedure against a simulated composer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from telepty.delivery.confirm import submit_prompt
from telepty.delivery.model import DeliveryError
from telepty.delivery.profiles import load_profiles

P = load_profiles(None)
CODEX = replace(P.profile_for("codex"), settle_ms=0, confirm_ms=80)
DEFAULT = replace(P.profile_for("default"), settle_ms=0)


class SimAgent:
    """A Codex-like composer. ``swallow`` Enters are lost; ``after_submit`` picks the screen."""

    def __init__(self, swallow: int = 0, drop_paste: bool = False, after_submit: str = "idle",
                 dialog: bool = False, fail_press: DeliveryError | None = None) -> None:
        self.composer = ""
        self.transcript: list[str] = []
        self.swallow = swallow
        self.drop_paste = drop_paste
        self.after_submit = after_submit
        self.dialog = dialog
        self.fail_press = fail_press
        self.submitted: list[str] = []
        self.pastes = 0
        self.keys: list[str] = []

    async def screen(self) -> list[str]:
        if self.dialog:
            return ["› earlier", "Would you like to run the following command?", "› 1. Yes, proceed (y)"]
        if self.submitted and self.after_submit == "shell":
            return ["$ "]
        box = [f"› {line}" if i == 0 else f"  {line}" for i, line in enumerate(self.composer.split("\n"))]
        if not self.composer:
            box = ["› Ask Codex to do anything"]
        return [*self.transcript, "", *box, "", "  ⏎ send   ⌃C quit"]

    async def paste(self, data: bytes) -> None:
        self.pastes += 1
        if not self.drop_paste:
            self.composer += data.decode()

    async def press(self, keys: Sequence[Any]) -> None:
        if self.fail_press is not None:
            raise self.fail_press
        for k in keys:
            self.keys.append(k)
            if k != "Enter" or not self.composer:
                continue
            if self.swallow:
                self.swallow -= 1
                continue
            self.submitted.append(self.composer)
            self.transcript.append(f"› {self.composer.splitlines()[0]}")
            self.composer = ""


class Stages:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, stage: str) -> None:
        self.seen.append(stage)


async def run(agent: SimAgent, prompt: str = "fix the failing test in src/app.py", profile: Any = CODEX,
              no_enter: bool = False) -> tuple[Any, Stages]:
    stages = Stages()
    out = await submit_prompt(agent, prompt.encode(), profile, no_enter=no_enter, on_stage=stages,
                              poll_s=0.005)
    return out, stages


async def test_submitted_and_confirmed_by_the_empty_composer() -> None:
    agent = SimAgent()
    out, stages = await run(agent)
    assert out.confirmed == "screen" and agent.submitted == ["fix the failing test in src/app.py"]
    assert stages.seen == ["paste", "submit", "confirm"]
    assert out.detail["paste_seen"] == "text" and "rescued" not in out.detail
    assert out.detail["judgement"]["state"] == "submitted"
    assert set(out.detail["timings_ms"]) == {"paste", "visible", "submit", "confirmed"}
    assert agent.keys == ["Enter"]


async def test_a_swallowed_enter_is_rescued_once() -> None:
    agent = SimAgent(swallow=1)
    out, stages = await run(agent)
    assert out.confirmed == "screen" and out.detail["rescued"] == [["Enter"]]
    assert agent.submitted == ["fix the failing test in src/app.py"] and agent.keys == ["Enter", "Enter"]
    assert stages.seen == ["paste", "submit", "confirm", "rescue"]


async def test_still_stuck_after_the_bounded_rescue_is_not_submitted() -> None:
    agent = SimAgent(swallow=10)
    with pytest.raises(DeliveryError) as e:
        await run(agent)
    err = e.value
    assert err.reason == "not_submitted" and not err.retryable
    assert err.evidence["rescued"] == [["Enter"], ["Escape", "Enter"]]  # two steps, no more
    assert err.evidence["judgement"] == {"state": "stuck", "pattern": CODEX.composer_patterns[0],
                                         "line": "› fix the failing test in src/app.py", "held": "text"}
    assert agent.keys == ["Enter", "Enter", "Escape", "Enter"] and agent.submitted == []


async def test_a_paste_that_never_reaches_the_composer_is_not_submitted() -> None:
    agent = SimAgent(drop_paste=True)
    with pytest.raises(DeliveryError) as e:
        await run(agent)
    assert e.value.reason == "not_submitted" and e.value.stage == "paste"
    assert "never showed in the composer" in e.value.detail and not e.value.retryable
    assert agent.keys == []  # no Enter into who knows what


async def test_a_dialog_before_the_paste_is_retryable_and_nothing_is_written() -> None:
    agent = SimAgent(dialog=True)
    with pytest.raises(DeliveryError) as e:
        await run(agent)
    assert (e.value.reason, e.value.retryable) == ("blocked_dialog", True)
    assert e.value.evidence["dialog"]["pattern"] == r"Would you like to run the following command\?"
    assert agent.pastes == 0


async def test_a_screen_that_explains_nothing_is_unconfirmed_never_delivered() -> None:
    agent = SimAgent(after_submit="shell")
    with pytest.raises(DeliveryError) as e:
        await run(agent)
    assert (e.value.reason, e.value.retryable) == ("unconfirmed", False)


async def test_without_composer_patterns_it_is_unverified() -> None:
    agent = SimAgent()
    out, stages = await run(agent, profile=DEFAULT)
    assert out.confirmed == "unverified" and agent.keys == ["Enter"]
    assert stages.seen == ["paste", "submit"] and "tail_after" in out.detail


async def test_no_enter_pastes_and_confirms_the_composer_holds_it() -> None:
    agent = SimAgent()
    out, stages = await run(agent, no_enter=True)
    assert out.confirmed == "screen" and agent.keys == [] and agent.submitted == []
    assert stages.seen == ["paste"]
    assert agent.composer == "fix the failing test in src/app.py"


async def test_errors_after_the_paste_are_never_retryable() -> None:
    agent = SimAgent(fail_press=DeliveryError("tmux_cmd_failed", "boom", retryable=True))
    with pytest.raises(DeliveryError) as e:
        await run(agent)
    assert e.value.retryable is False and e.value.evidence["profile"] == "codex"
