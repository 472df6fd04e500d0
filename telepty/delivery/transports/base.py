"""The one interface every transport implements, and what a transport that lacks a part gets.

The engine owns ordering, the retry schedule, holds, persistence and events; a
transport only knows how to reach one kind of terminal: a tmux pane (``tmux``), a
daemon-owned PTY (``pty``), a ``telepty wrap`` wrapper (``wrapper``), another machine
(``relay``). The engine calls every part of ``Transport`` directly and never asks
whether a transport has it: a kind of terminal that cannot do something says so
through ``TransportBase``'s defaults (a ``DeliveryError`` naming the reason, or None
for "cannot tell"). That is what lets the engine run in unit tests against a fake with
exactly the interface of the real ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from telepty.delivery.model import (
    INTERRUPTED,
    NO_TRANSPORT,
    STAGE_CHECK_READY,
    Delivery,
    DeliveryError,
)
from telepty.delivery.profiles import SubmitProfile

StageCallback = Callable[[str], Awaitable[None]]
# A wait to start later: resolves once the terminal's output has settled (see ``settled``).
Settled = Callable[[], Awaitable[None]]

# ``explain``'s answer for a transport with no screen to show (never a delivery's reason).
NO_SCREEN = "no_screen"

CONFIRMED_SCREEN = "screen"
CONFIRMED_ECHO = "echo"
CONFIRMED_UNVERIFIED = "unverified"


@dataclass(frozen=True)
class DeliveryOutcome:
    confirmed: str  # "screen" | "echo" | "unverified"
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. tail_before/tail_after, timings


class ScreenView(Protocol):
    """A terminal's screen, to look at (recovery after a restart, holds)."""

    async def screen(self) -> list[str]:
        """The visible screen, one string per line."""
        ...

    async def input_lines(self) -> list[str]:
        """The screen from the top down to the cursor's row: where a line-oriented
        program's input is (a blank last row: nothing typed)."""
        ...


class Transport(Protocol):
    """One delivery target. Failures are ``DeliveryError``s (``telepty.delivery.model``).

    ``retryable=True`` on a ``DeliveryError`` promises that no byte reached the target in
    this attempt; anything raised after the paste may have landed must be non-retryable,
    or a retry would paste the prompt twice.
    """

    name: str  # "paste_buffer" | "wrapper" | "pty" | "relay"
    # The profile of the agent ``check_ready`` found in the terminal (an "other" session
    # running claude reads as claude); None: the session's own profile applies.
    profile: SubmitProfile | None
    # What the last quiet guard saw, for the record (None: nothing worth keeping).
    guard: dict[str, Any] | None
    # The screen, for looking at what reached the input; None: this kind cannot show it.
    term: ScreenView | None

    async def check_ready(self, *, for_keys: bool = False) -> None:
        """Raise DeliveryError (pane_dead, session_disconnected, blocked_dialog, …) unless
        the terminal can take a prompt now (``for_keys``: keys, which a dialog does not
        block). Sets ``profile``."""
        ...

    async def is_quiet(self, quiet_ms: int) -> bool:
        """The quiet guard for this kind of target; may take about ``quiet_ms``."""
        ...

    def settled(self, quiet_ms: int, *, needs_output: bool) -> Settled | None:
        """A wait that resolves once the terminal has been quiet for ``quiet_ms`` — with
        ``needs_output``, after printing something *after this call* first (a screen that
        said "busy" must change before another look can say anything new). None: this
        kind cannot tell; only the retry schedule ends the wait. The engine starts the
        wait later, so what "after this call" means is fixed now."""
        ...

    async def deliver(self, d: Delivery, *, profile: SubmitProfile,
                      on_stage: StageCallback) -> DeliveryOutcome:
        """Paste ``d.prompt``, settle, submit (unless ``d.no_enter``), confirm
        (``telepty.delivery.confirm``). Must ``await on_stage("paste")`` before the first
        byte can reach the target (the engine persists it: that is what makes a restart
        safe); later stages may be reported too. A prompt still in the composer after the
        rescue steps is a non-retryable ``not_submitted``, never an outcome. ``d`` is the
        engine's live record: only the relay writes to it (its evidence, which the next
        stage persists)."""
        ...

    async def send_keys(self, keys: Sequence[Any], *, on_stage: StageCallback) -> DeliveryOutcome:
        """Raw keys (``telepty.delivery.keys``), after ``on_stage("keys")``."""
        ...

    async def submit_pasted(self, prompt: bytes, *, profile: SubmitProfile,
                            on_stage: StageCallback) -> DeliveryOutcome:
        """Submit a prompt that already sits whole in the input (``telepty.delivery.recovery``)."""
        ...

    async def clear_input(self, keys: Sequence[str]) -> None:
        """Press the profile's clear keys (recovery emptying an interrupted paste's remains)."""
        ...

    async def explain(self, tail: int = 20, quiet_ms: int | None = None) -> dict[str, Any]:
        """What readiness would see now (``telepty explain``); changes nothing."""
        ...


class TransportBase(ABC):
    """``Transport`` with the answers of a terminal that can only take prompts.

    A transport implements ``check_ready``, ``is_quiet`` and ``deliver``; everything
    else it may leave: it then cannot tell when its output settles, has no screen to
    show, and refuses raw keys and the recovery steps with a reason a person can read.
    """

    name = "transport"
    profile: SubmitProfile | None = None
    guard: dict[str, Any] | None = None
    term: ScreenView | None = None

    @abstractmethod
    async def check_ready(self, *, for_keys: bool = False) -> None: ...

    @abstractmethod
    async def is_quiet(self, quiet_ms: int) -> bool: ...

    @abstractmethod
    async def deliver(self, d: Delivery, *, profile: SubmitProfile,
                      on_stage: StageCallback) -> DeliveryOutcome: ...

    def settled(self, quiet_ms: int, *, needs_output: bool) -> Settled | None:
        return None

    async def send_keys(self, keys: Sequence[Any], *, on_stage: StageCallback) -> DeliveryOutcome:
        raise DeliveryError(NO_TRANSPORT, f"the {self.name} transport cannot send raw keys",
                            stage=STAGE_CHECK_READY)

    async def submit_pasted(self, prompt: bytes, *, profile: SubmitProfile,
                            on_stage: StageCallback) -> DeliveryOutcome:
        raise DeliveryError(INTERRUPTED, f"the {self.name} transport cannot submit what is in the "
                            "input; not pasted again")

    async def clear_input(self, keys: Sequence[str]) -> None:
        raise DeliveryError(INTERRUPTED, f"the {self.name} transport cannot clear the input; not "
                            "pasted again")

    async def explain(self, tail: int = 20, quiet_ms: int | None = None) -> dict[str, Any]:
        raise DeliveryError(NO_SCREEN, f"the {self.name} transport cannot show its screen",
                            stage="explain")
