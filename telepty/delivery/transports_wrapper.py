"""WrapperTransport: a prompt into a ``telepty wrap`` PTY, over the wrapper's socket.

The wrapper does the writing (it owns the PTY and knows whether the app enabled
bracketed paste); the daemon only asks and waits for the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telepty.delivery.model import (
    SESSION_DISCONNECTED,
    STAGE_CHECK_READY,
    STAGE_QUIET_GUARD,
    WRITE_FAILED,
    DeliveryError,
)
from telepty.delivery.profiles import SubmitProfile
from telepty.delivery.transport import DeliveryOutcome
from telepty.sessions.wrapper_link import WrapperGone, WrapperLink


class WrapperTransport:
    name = "wrapper"

    def __init__(self, link: WrapperLink) -> None:
        self.link = link

    async def check_ready(self) -> None:
        if self.link.closed.is_set() or self.link.ws.closed:
            raise DeliveryError(SESSION_DISCONNECTED, "the wrapper is not connected",
                                stage=STAGE_CHECK_READY, retryable=True)

    async def is_quiet(self, quiet_ms: int) -> bool:
        try:
            return await self.link.is_quiet(quiet_ms)
        except WrapperGone as exc:
            raise DeliveryError(SESSION_DISCONNECTED, str(exc), stage=STAGE_QUIET_GUARD,
                                retryable=True) from None

    async def deliver(
        self, prompt: bytes, *, no_enter: bool, profile: SubmitProfile,
        on_stage: Callable[[str], Awaitable[None]],
    ) -> DeliveryOutcome:
        await on_stage("paste")
        try:
            reply = await self.link.paste(prompt, profile.submit_bytes, profile.settle_ms, no_enter)
        except WrapperGone as exc:
            # The request may or may not have reached the wrapper: never retried.
            raise DeliveryError(SESSION_DISCONNECTED, str(exc), stage="paste") from None
        if not reply.get("ok"):
            raise DeliveryError(str(reply.get("error") or WRITE_FAILED),
                                str(reply.get("detail") or "the wrapper could not write"),
                                stage="paste")
        return DeliveryOutcome(
            confirmed="unverified",
            detail={"transport": self.name, "bracketed": bool(reply.get("bracketed"))},
        )
