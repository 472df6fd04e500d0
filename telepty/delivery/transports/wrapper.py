"""WrapperTransport: a prompt into a ``telepty wrap`` PTY, over the wrapper's socket.

The wrapper does the writing (it owns the PTY and knows whether the app enabled
bracketed paste); the daemon asks, then watches the output the wrapper mirrors to it
(``link.scrollback``) to confirm the submission.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from telepty.activity import OutputActivity
from telepty.delivery.keys import sequence_bytes
from telepty.delivery.model import (
    SESSION_DISCONNECTED,
    WRITE_FAILED,
    DeliveryError,
)
from telepty.delivery.profiles import SubmitProfiles
from telepty.delivery.transports.stream import KEY_GAP_S, StreamTransport, dims, stream_view
from telepty.sessions.liveness import pid_alive
from telepty.sessions.model import Session
from telepty.sessions.wrapper_link import WrapperGone, WrapperLink


class WrapperTerminal:
    """``TerminalIO`` over a wrapper's link."""

    def __init__(self, link: WrapperLink, cols: int, rows: int) -> None:
        self.link = link
        self.view = stream_view(link.scrollback, cols, rows)
        self.bracketed = False

    async def screen(self) -> list[str]:
        return self.view.lines()

    async def input_lines(self) -> list[str]:
        return self.view.input_lines()

    async def paste(self, data: bytes) -> None:
        try:
            reply = await self.link.paste(data)
        except WrapperGone as exc:
            # The request may or may not have reached the wrapper: never retried.
            raise DeliveryError(SESSION_DISCONNECTED, str(exc), stage="paste") from None
        if not reply.ok:
            raise DeliveryError(reply.error or WRITE_FAILED, reply.detail or "the wrapper could not write",
                                stage="paste")
        self.bracketed = bool(reply.bracketed)

    async def press(self, keys: Sequence[Any]) -> None:
        for i, chunk in enumerate(sequence_bytes(keys, app_cursor=self.view.app_cursor())):
            if i:
                await asyncio.sleep(KEY_GAP_S)
            try:
                reply = await self.link.write(chunk)
            except WrapperGone as exc:
                raise DeliveryError(SESSION_DISCONNECTED, str(exc), stage="send_keys") from None
            if not reply.ok:
                raise DeliveryError(reply.error or WRITE_FAILED,
                                    reply.detail or "the wrapper could not write", stage="send_keys")


class WrapperTransport(StreamTransport):
    name = "wrapper"

    def __init__(self, link: WrapperLink, session: Session | None = None,
                 profiles: SubmitProfiles | None = None) -> None:
        super().__init__(WrapperTerminal(link, *dims(session)), session, profiles)
        self.link = link

    def _ensure_connected(self, stage: str) -> None:
        if self.link.closed.is_set() or self.link.ws.closed:
            raise DeliveryError(SESSION_DISCONNECTED, "the wrapper is not connected",
                                stage=stage, retryable=True)

    def _pid(self) -> int | None:
        return self.session.pid if self.session is not None else None

    def _agent_checkable(self, pid: int | None) -> bool:
        # A pid we cannot see (another pid namespace) proves nothing; the wrapper
        # reports its child's exit itself.
        return bool(pid) and pid_alive(pid)  # type: ignore[arg-type]

    def _activity(self) -> OutputActivity:
        return self.link.activity

    def _output_trusted(self) -> bool:
        # A stalled mirror hides whatever the child prints: never call that quiet.
        return not self.link.stalled

    def _evidence_extra(self) -> dict[str, Any]:
        return {"bracketed": self.link.bracketed_paste}

    def _explain_extra(self) -> dict[str, Any]:
        return {"source": "wrapper mirror", "stalled": self.link.stalled}
