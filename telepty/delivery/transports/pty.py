"""PtyTransport: a prompt into a daemon-owned PTY (spawned sessions).

There is no tmux to capture here: the screen is the PTY's output, run through the
stream's terminal model (``telepty.delivery.transports.stream.stream_view``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from telepty.activity import OutputActivity
from telepty.delivery.keys import sequence_bytes
from telepty.delivery.model import SESSION_EXITED, WRITE_FAILED, DeliveryError
from telepty.delivery.profiles import SubmitProfiles
from telepty.delivery.transports.stream import KEY_GAP_S, StreamTransport, dims, stream_view
from telepty.pty.spawned import PtyClosedError, SpawnedPty
from telepty.sessions.model import Session


class PtyTerminal:
    """``TerminalIO`` over a SpawnedPty."""

    def __init__(self, pty: SpawnedPty, cols: int, rows: int) -> None:
        self.pty = pty
        self.view = stream_view(pty.scrollback, cols, rows)

    async def screen(self) -> list[str]:
        return self.view.lines()

    async def input_lines(self) -> list[str]:
        return self.view.input_lines()

    async def paste(self, data: bytes) -> None:
        try:
            await self.pty.paste(data)
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

    def _activity(self) -> OutputActivity:
        return self.pty.activity

    def _evidence_extra(self) -> dict[str, Any]:
        return {"bracketed": self.pty.bracketed.enabled}

    def _explain_extra(self) -> dict[str, Any]:
        return {"source": "pty scrollback", "bracketed": self.pty.bracketed.enabled}
