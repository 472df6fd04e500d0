"""PtyTransport: a prompt into a daemon-owned PTY (spawned sessions).

There is no tmux to capture here: the screen is the PTY's recent output, run through
a small terminal emulator (``telepty.delivery.screen.TerminalScreen``), fed
incrementally while a delivery watches it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from telepty.delivery.keys import sequence_bytes
from telepty.delivery.model import SESSION_EXITED, WRITE_FAILED, DeliveryError
from telepty.delivery.profiles import SubmitProfiles
from telepty.delivery.transports_stream import KEY_GAP_S, ScrollbackScreen, StreamTransport, dims
from telepty.pty.activity import OutputActivity
from telepty.pty.spawned import PtyClosedError, SpawnedPty
from telepty.sessions.model import Session


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


class PtyTerminal:
    """``TerminalIO`` over a SpawnedPty."""

    def __init__(self, pty: SpawnedPty, cols: int, rows: int) -> None:
        self.pty = pty
        self.view = ScrollbackScreen(pty.scrollback, cols, rows)

    async def screen(self) -> list[str]:
        return self.view.lines()

    async def paste(self, data: bytes) -> None:
        try:
            await self.pty.paste(data, no_enter=True)
        except PtyClosedError as exc:
            raise DeliveryError(SESSION_EXITED, exc.detail, stage="paste") from None
        except OSError as exc:
            raise DeliveryError(WRITE_FAILED, str(exc), stage="paste") from None

    async def press(self, keys: Sequence[Any]) -> None:
        chunks = sequence_bytes(keys, app_cursor=self.view.app_cursor())
        try:
            for i, chunk in enumerate(chunks):
                if i:
                    await asyncio.sleep(KEY_GAP_S)
                await self.pty.write(chunk)
        except PtyClosedError as exc:
            raise DeliveryError(SESSION_EXITED, exc.detail, stage="send_keys") from None
        except OSError as exc:
            raise DeliveryError(WRITE_FAILED, str(exc), stage="send_keys") from None


class PtyTransport(StreamTransport):
    name = "pty"

    def __init__(self, pty: SpawnedPty, session: Session | None = None,
                 profiles: SubmitProfiles | None = None) -> None:
        super().__init__(PtyTerminal(pty, *dims(session)), session, profiles)
        self.pty = pty

    def _ensure_connected(self, stage: str) -> None:
        if not self.pty.running:
            raise DeliveryError(SESSION_EXITED, "the session's process has exited", stage=stage)

    def _pid(self) -> int | None:
        return self.pty.pid

    async def _output_quiet(self, quiet_ms: int) -> bool:
        return await wait_for_quiet(self.pty.activity, quiet_ms)

    def _evidence_extra(self) -> dict[str, Any]:
        return {"bracketed": self.pty.bracketed.enabled}

    def _explain_extra(self) -> dict[str, Any]:
        return {"source": "pty scrollback", "bracketed": self.pty.bracketed.enabled}
