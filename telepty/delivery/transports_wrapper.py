"""WrapperTransport: a prompt into a ``telepty wrap`` PTY, over the wrapper's socket.

The wrapper does the writing (it owns the PTY and knows whether the app enabled
bracketed paste); the daemon asks, then watches the output the wrapper mirrors to it
(``link.scrollback``) to confirm the submission.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from telepty.delivery.confirm import submit_prompt
from telepty.delivery.keys import sequence_bytes
from telepty.delivery.model import (
    SESSION_DISCONNECTED,
    STAGE_CHECK_READY,
    STAGE_QUIET_GUARD,
    WRITE_FAILED,
    DeliveryError,
)
from telepty.delivery.profiles import SubmitProfile, SubmitProfiles, load_profiles
from telepty.delivery.readiness import (
    AgentCheck,
    check_agent,
    check_screen_quiet,
    check_screen_ready,
    explain,
    require_agent,
)
from telepty.delivery.screen import read_screen
from telepty.delivery.transport import DeliveryOutcome, StageCallback
from telepty.delivery.transports_pty import KEY_GAP_S, ScrollbackScreen, dims, send_keys_via
from telepty.sessions.liveness import pid_alive
from telepty.sessions.model import Session
from telepty.sessions.wrapper_link import WrapperGone, WrapperLink


class WrapperTerminal:
    """``TerminalIO`` over a wrapper's link."""

    def __init__(self, link: WrapperLink, cols: int, rows: int) -> None:
        self.link = link
        self.view = ScrollbackScreen(link.scrollback, cols, rows)
        self.bracketed = False

    async def screen(self) -> list[str]:
        return self.view.lines()

    async def paste(self, data: bytes) -> None:
        try:
            reply = await self.link.paste(data, b"", 0, True)
        except WrapperGone as exc:
            # The request may or may not have reached the wrapper: never retried.
            raise DeliveryError(SESSION_DISCONNECTED, str(exc), stage="paste") from None
        if not reply.get("ok"):
            raise DeliveryError(str(reply.get("error") or WRITE_FAILED),
                                str(reply.get("detail") or "the wrapper could not write"),
                                stage="paste")
        self.bracketed = bool(reply.get("bracketed"))

    async def press(self, keys: Sequence[Any]) -> None:
        for i, chunk in enumerate(sequence_bytes(keys, app_cursor=self.view.app_cursor())):
            if i:
                await asyncio.sleep(KEY_GAP_S)
            try:
                reply = await self.link.write(chunk)
            except WrapperGone as exc:
                raise DeliveryError(SESSION_DISCONNECTED, str(exc), stage="send_keys") from None
            if not reply.get("ok"):
                raise DeliveryError(str(reply.get("error") or WRITE_FAILED),
                                    str(reply.get("detail") or "the wrapper could not write"),
                                    stage="send_keys")


class WrapperTransport:
    name = "wrapper"

    def __init__(self, link: WrapperLink, session: Session | None = None,
                 profiles: SubmitProfiles | None = None) -> None:
        self.link = link
        self.session = session
        self.profiles = profiles or load_profiles(None)
        self.term = WrapperTerminal(link, *dims(session))
        self.agent: AgentCheck | None = None
        self.profile: SubmitProfile | None = None
        self._for_keys = False

    async def check_ready(self, *, for_keys: bool = False) -> None:
        self._for_keys = for_keys
        if self.link.closed.is_set() or self.link.ws.closed:
            raise DeliveryError(SESSION_DISCONNECTED, "the wrapper is not connected",
                                stage=STAGE_CHECK_READY, retryable=True)
        kind = self.session.agent if self.session is not None else "other"
        pid = self.session.pid if self.session is not None else None
        self.agent = await check_agent(kind, pid)
        if pid and pid_alive(pid):
            # A pid we cannot see (another pid namespace) proves nothing; the wrapper
            # reports its child's exit itself.
            require_agent(self.agent, f"the wrapped terminal (pid {pid})")
        self.profile = self.profiles.profile_for(self.agent.profile_kind)
        check_screen_ready(read_screen(await self.term.screen(), self.profile), self.profile,
                           for_keys=for_keys)

    async def is_quiet(self, quiet_ms: int) -> bool:
        try:
            quiet = await self.link.is_quiet(quiet_ms)
        except WrapperGone as exc:
            raise DeliveryError(SESSION_DISCONNECTED, str(exc), stage=STAGE_QUIET_GUARD,
                                retryable=True) from None
        if quiet and self.profile is not None:
            check_screen_quiet(read_screen(await self.term.screen(), self.profile),
                               for_keys=self._for_keys)
        return quiet

    def _evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"transport": self.name, "bracketed": self.link.bracketed_paste}
        if self.agent is not None:
            out["agent"] = self.agent.to_public()
        return out

    async def deliver(
        self, prompt: bytes, *, no_enter: bool, profile: SubmitProfile, on_stage: StageCallback,
    ) -> DeliveryOutcome:
        return await submit_prompt(self.term, prompt, self.profile or profile, no_enter=no_enter,
                                   on_stage=on_stage, evidence=self._evidence())

    async def send_keys(self, keys: Sequence[Any], *, on_stage: StageCallback) -> DeliveryOutcome:
        return await send_keys_via(self.term, keys, on_stage, self._evidence())

    async def explain(self, tail: int = 20) -> dict[str, Any]:
        kind = self.session.agent if self.session is not None else "other"
        pid = self.session.pid if self.session is not None else None
        agent = await check_agent(kind, pid)
        return explain(session=self.session, transport=self.name, tail=tail, profiles=self.profiles,
                       agent=agent, lines=await self.term.screen(),
                       extra={"source": "wrapper mirror", "stalled": self.link.stalled})
