"""Readiness: may this terminal receive a prompt (or keys) right now, and if not, why.

Checked before anything is written, so every refusal here is safe to retry — except
``agent_exited``: the agent is gone and the shell it leaves behind would run the prompt
as a command line, so that delivery fails at once instead of waiting for a shell to
turn back into an agent.

What is checked, in order (``SPEC §3``, "Readiness before sending"):

- the agent still runs in the terminal's process tree (sessions whose agent kind is
  known; an ``other`` session has nothing to look for);
- the screen: a permission/trust dialog (``blocked_dialog``) or, for profiles that
  know their composer, no composer in sight (``screen_unknown``). Keys skip these:
  answering dialogs is what they are for;
- in the quiet guard (skipped by ``force``): a busy pattern (``busy``) or someone
  else's text in the composer (``composer_has_text``, a paste would be merged with it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from telepty.delivery.model import (
    AGENT_EXITED,
    BLOCKED_DIALOG,
    BUSY,
    COMPOSER_HAS_TEXT,
    SCREEN_UNKNOWN,
    STAGE_CHECK_READY,
    STAGE_QUIET_GUARD,
    DeliveryError,
)
from telepty.delivery.profiles import SubmitProfile, SubmitProfiles
from telepty.delivery.screen import BLOCKED, UNKNOWN, ScreenReading, read_screen
from telepty.delivery.screen import BUSY as V_BUSY
from telepty.delivery.screen import COMPOSER_HAS_TEXT as V_COMPOSER_HAS_TEXT
from telepty.delivery.screen import IDLE as V_IDLE
from telepty.sessions.agents import OTHER, detect_agent_in_tree, programs_of

SCREEN_TAIL = 12


@dataclass
class AgentCheck:
    """Who runs in the terminal: the session's kind, and what the process tree shows."""

    kind: str  # the session's agent kind: a profile name, "other" when unknown
    detected: str | None  # nearest agent in the process tree, None if none
    pid: int | None

    @property
    def known(self) -> bool:
        return self.kind != OTHER

    @property
    def profile_kind(self) -> str:
        """The profile to use: the session's kind, else whatever the tree shows."""
        if self.known:
            return self.kind
        return self.detected or self.kind

    def to_public(self) -> dict[str, Any]:
        return {"agent": self.kind, "agent_detected": self.detected, "pid": self.pid}


async def check_agent(kind: str, pid: int | None) -> AgentCheck:
    """Walk the process tree under ``pid`` (in a thread: it reads /proc)."""
    detected = None
    kind = kind or OTHER
    if pid:
        # For a known agent, "none found" fails the delivery: make sure of it.
        detected = await asyncio.to_thread(partial(detect_agent_in_tree, pid,
                                                   confirm_none=kind != OTHER))
    return AgentCheck(kind=kind, detected=detected, pid=pid)


def require_agent(check: AgentCheck, where: str) -> None:
    """``agent_exited`` when a known agent no longer runs under the terminal."""
    if check.known and check.detected is None:
        raise DeliveryError(
            AGENT_EXITED,
            f"{check.kind} no longer runs in {where} (pid {check.pid}; looked for "
            f"{', '.join(programs_of(check.kind)) or check.kind}); not pasting into whatever is "
            "left there (a shell would run the prompt as a command)",
            stage=STAGE_CHECK_READY,
            evidence={"agent": check.to_public()},
        )


def _screen_evidence(reading: ScreenReading) -> dict[str, Any]:
    return {"screen": reading.to_public(tail=SCREEN_TAIL)}


def check_screen_ready(reading: ScreenReading, profile: SubmitProfile, *, for_keys: bool) -> None:
    """Dialogs and unreadable screens: wait (retryable) rather than paste into them."""
    if for_keys:
        return
    if reading.verdict == BLOCKED and reading.dialog is not None:
        raise DeliveryError(
            BLOCKED_DIALOG,
            f"a dialog is waiting for an answer ({reading.dialog.line.strip()!r}); answer it "
            "with `telepty keys`, then the delivery continues",
            stage=STAGE_CHECK_READY, retryable=True,
            evidence={**_screen_evidence(reading), "pattern": reading.dialog.pattern},
        )
    if profile.reads_screen and reading.composer is None and reading.verdict == UNKNOWN:
        raise DeliveryError(
            SCREEN_UNKNOWN,
            f"no composer pattern of profile {profile.name!r} matches the screen, so a "
            "submission could not be confirmed; see `telepty explain`",
            stage=STAGE_CHECK_READY, retryable=True, evidence=_screen_evidence(reading),
        )


def check_screen_quiet(reading: ScreenReading, *, for_keys: bool) -> None:
    """The pattern half of the quiet guard: a busy agent, or text already in the composer."""
    if reading.verdict == V_BUSY and reading.busy is not None:
        raise DeliveryError(
            BUSY, f"the agent is working ({reading.busy.line.strip()!r})",
            stage=STAGE_QUIET_GUARD, retryable=True,
            evidence={**_screen_evidence(reading), "pattern": reading.busy.pattern},
        )
    if not for_keys and reading.verdict == V_COMPOSER_HAS_TEXT and reading.composer is not None:
        raise DeliveryError(
            COMPOSER_HAS_TEXT,
            f"the composer already holds text ({reading.composer.text[:80]!r}); a paste would "
            "be merged with it",
            stage=STAGE_QUIET_GUARD, retryable=True,
            evidence={**_screen_evidence(reading), "pattern": reading.composer.pattern},
        )


def explain(
    *,
    session: Any,
    transport: str,
    profiles: SubmitProfiles,
    agent: AgentCheck,
    lines: Sequence[str],
    extra: dict[str, Any] | None = None,
    tail: int = 20,
    output: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``telepty explain`` prints: who runs there, which profile, what the screen says.

    ``output`` is the terminal's activity as the quiet guard sees it
    (``OutputActivity.describe``): a screen that reads idle while the terminal is still
    printing is busy to the engine, and so it is here.
    """
    profile = profiles.profile_for(agent.profile_kind)
    reading = read_screen(lines, profile)
    out: dict[str, Any] = {
        "session_id": session.id,
        "transport": transport,
        **agent.to_public(),
        # Without a pid (a wrapper that did not say) nothing can be told either way.
        "agent_present": (agent.detected is not None) if agent.known and agent.pid else None,
        "profile": profile.to_public(),
        **reading.to_public(tail=tail),
    }
    if output is not None:
        out["output"] = output
        if output.get("quiet") is False and reading.verdict in (V_IDLE, UNKNOWN):
            out["verdict"] = V_BUSY
            out["why"] = (f"printing: last output {output['quiet_for_ms']} ms ago; the quiet guard "
                          f"waits for {output['quiet_ms']} ms of silence")
    if agent.known and agent.pid and agent.detected is None:
        out["verdict"] = "agent-exited"
        out["why"] = f"{agent.kind} no longer runs under pid {agent.pid}"
    if extra:
        out.update(extra)
    return out
