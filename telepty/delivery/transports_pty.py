"""PtyTransport: a prompt into a daemon-owned PTY (spawned sessions)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from telepty.delivery.model import SESSION_EXITED, STAGE_CHECK_READY, WRITE_FAILED, DeliveryError
from telepty.delivery.profiles import SubmitProfile
from telepty.delivery.transport import DeliveryOutcome
from telepty.pty.activity import OutputActivity
from telepty.pty.spawned import PtyClosedError, SpawnedPty


async def wait_for_quiet(activity: OutputActivity, quiet_ms: int) -> bool:
    """True once there has been no output for ``quiet_ms``, waiting at most that long.

    Output arriving during the wait means the target is busy: the caller retries on
    its schedule instead of us waiting indefinitely here.
    """
    need = quiet_ms / 1000.0
    deadline = time.monotonic() + need
    while True:
        idle = activity.idle_seconds()
        if idle >= need:
            return True
        remaining = need - idle
        if time.monotonic() + remaining > deadline + 0.005:
            return False
        await asyncio.sleep(remaining)


class PtyTransport:
    name = "pty"

    def __init__(self, pty: SpawnedPty) -> None:
        self.pty = pty

    async def check_ready(self) -> None:
        if not self.pty.running:
            raise DeliveryError(SESSION_EXITED, "the session's process has exited",
                                stage=STAGE_CHECK_READY)

    async def is_quiet(self, quiet_ms: int) -> bool:
        return await wait_for_quiet(self.pty.activity, quiet_ms)

    async def deliver(
        self, prompt: bytes, *, no_enter: bool, profile: SubmitProfile,
        on_stage: Callable[[str], Awaitable[None]],
    ) -> DeliveryOutcome:
        bracketed = self.pty.bracketed.enabled
        await on_stage("paste")
        try:
            await self.pty.paste(prompt, submit=profile.submit_bytes,
                                 settle_s=profile.settle_ms / 1000.0, no_enter=no_enter)
        except PtyClosedError as exc:
            raise DeliveryError(SESSION_EXITED, exc.detail, stage="paste") from None
        except OSError as exc:
            raise DeliveryError(WRITE_FAILED, str(exc), stage="paste") from None
        return DeliveryOutcome(confirmed="unverified",
                               detail={"transport": self.name, "bracketed": bracketed})
