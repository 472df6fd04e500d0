"""PasteBufferTransport: a prompt into a tmux pane through a named paste buffer.

The prompt travels tmux's stdin into a uniquely named buffer and is pasted with
``paste-buffer -p -d``, so tmux frames bracketed paste itself when the app asked for
it, and the text never appears on any command line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from telepty.delivery.model import (
    PANE_DEAD,
    STAGE_CHECK_READY,
    STAGE_QUIET_GUARD,
    TMUX_CMD_FAILED,
    TMUX_UNAVAILABLE,
    DeliveryError,
)
from telepty.delivery.profiles import SubmitProfile
from telepty.delivery.transport import DeliveryOutcome
from telepty.tmux import TmuxError, TmuxServer

GUARD_TAIL_LINES = 8


def _classified(exc: TmuxError, *, before_paste: bool) -> DeliveryError:
    # A tmux hiccup before anything was pasted can be retried safely; after the
    # paste stage began it cannot, or the prompt might land twice.
    retryable = before_paste and exc.code == TMUX_CMD_FAILED
    return DeliveryError(exc.code, exc.detail, stage=exc.stage, retryable=retryable)


class PasteBufferTransport:
    name = "paste_buffer"

    def __init__(self, tmux: TmuxServer, pane_id: str) -> None:
        self.tmux = tmux
        self.pane_id = pane_id

    async def check_ready(self) -> None:
        if not self.tmux.available():
            raise DeliveryError(TMUX_UNAVAILABLE, "tmux is not installed or not on PATH",
                                stage=STAGE_CHECK_READY)
        try:
            info = await self.tmux.pane_info(self.pane_id)
        except TmuxError as exc:
            raise _classified(exc, before_paste=True) from None
        if info is None or info.pane_dead:
            raise DeliveryError(PANE_DEAD, f"pane {self.pane_id} no longer exists",
                                stage=STAGE_CHECK_READY)

    async def is_quiet(self, quiet_ms: int) -> bool:
        """Two captures of the pane tail ``quiet_ms`` apart must be identical."""
        try:
            before = await self.tmux.capture_tail(self.pane_id, GUARD_TAIL_LINES,
                                                  stage=STAGE_QUIET_GUARD)
            await asyncio.sleep(quiet_ms / 1000.0)
            after = await self.tmux.capture_tail(self.pane_id, GUARD_TAIL_LINES,
                                                 stage=STAGE_QUIET_GUARD)
        except TmuxError as exc:
            raise _classified(exc, before_paste=True) from None
        return before == after

    async def deliver(
        self, prompt: bytes, *, no_enter: bool, profile: SubmitProfile,
        on_stage: Callable[[str], Awaitable[None]],
    ) -> DeliveryOutcome:
        await on_stage("paste")
        try:
            result = await self.tmux.paste(
                self.pane_id, prompt, submit_keys=profile.submit_keys,
                settle_s=profile.settle_ms / 1000.0, no_enter=no_enter,
            )
        except TmuxError as exc:
            before = exc.stage in {"capture_before", "load_buffer"}
            raise _classified(exc, before_paste=before) from None
        return DeliveryOutcome(
            confirmed="unverified",
            detail={
                "transport": self.name,
                "pane": self.pane_id,
                "tail_before": result.tail_before,
                "tail_after": result.tail_after,
                "left_copy_mode": result.left_mode,
                "timings_ms": {k: round(v * 1000, 2) for k, v in result.timings.items()},
            },
        )
