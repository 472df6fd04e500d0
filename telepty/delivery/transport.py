"""The one interface every transport (tmux paste-buffer, wrapper, spawned PTY) implements.

The engine owns ordering, the quiet-guard retry schedule, persistence and events; a
transport only knows how to reach one kind of terminal. Keeping the seam this narrow is
what lets the engine run against a fake in unit tests and a real tmux in integration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from telepty.delivery.profiles import SubmitProfile
from telepty.sessions.model import Session

StageCallback = Callable[[str], Awaitable[None]]

CONFIRMED_SCREEN = "screen"
CONFIRMED_ECHO = "echo"
CONFIRMED_UNVERIFIED = "unverified"


@dataclass(frozen=True)
class DeliveryOutcome:
    confirmed: str  # "screen" | "echo" | "unverified"
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. tail_before/tail_after, timings


class Transport(Protocol):
    """One delivery target. Failures are ``DeliveryError``s (``telepty.delivery.model``).

    ``retryable=True`` on a ``DeliveryError`` promises that no byte reached the target in
    this attempt; anything raised after the paste may have landed must be non-retryable,
    or a retry would paste the prompt twice.
    """

    name: str  # "paste_buffer" | "wrapper" | "pty"

    async def check_ready(self) -> None:
        """Raise DeliveryError (pane_dead, session_disconnected, session_exited, …) if not.

        The real transports also take ``for_keys=True`` (dialogs do not block keys), set
        ``self.profile`` to the profile of the agent they found, and offer
        ``send_keys(keys, on_stage=…)`` and ``explain()``; the engine looks for those
        with ``getattr`` so a minimal transport (a test fake) needs none of them.
        """
        ...

    async def is_quiet(self, quiet_ms: int) -> bool:
        """The quiet guard for this kind of target; may take about ``quiet_ms``."""
        ...

    async def deliver(
        self,
        prompt: bytes,
        *,
        no_enter: bool,
        profile: SubmitProfile,
        on_stage: StageCallback,
    ) -> DeliveryOutcome:
        """Paste, settle, submit, confirm (``telepty.delivery.confirm``). Must ``await
        on_stage("paste")`` before the first byte can reach the target (the engine
        persists it: that is what makes a restart safe); later stages may be reported
        too. A prompt still in the composer after the rescue steps is a non-retryable
        ``not_submitted``, never an outcome."""
        ...


# Raises DeliveryError(session_disconnected / no_transport) when the session has no usable
# transport right now (e.g. a wrapper that has not reconnected yet).
TransportResolver = Callable[[Session], Transport]
