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

from telepty.delivery.confirm import submit_prompt
from telepty.delivery.keys import describe, sequence_bytes
from telepty.delivery.model import SESSION_EXITED, STAGE_CHECK_READY, WRITE_FAILED, DeliveryError
from telepty.delivery.profiles import SubmitProfile, SubmitProfiles, load_profiles
from telepty.delivery.readiness import (
    AgentCheck,
    check_agent,
    check_screen_quiet,
    check_screen_ready,
    explain,
    require_agent,
)
from telepty.delivery.screen import TerminalScreen, read_screen, trim
from telepty.delivery.transport import CONFIRMED_UNVERIFIED, DeliveryOutcome, StageCallback
from telepty.pty.activity import OutputActivity
from telepty.pty.scrollback import Scrollback
from telepty.pty.spawned import PtyClosedError, SpawnedPty
from telepty.sessions.model import Session

# How much recent output seeds the emulator: a few full redraws of a TUI.
SEED_BYTES = 32 * 1024
KEY_GAP_S = 0.03
STAGE_KEYS = "keys"
_APP_CURSOR_ON = b"\x1b[?1h"
_APP_CURSOR_OFF = b"\x1b[?1l"


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


def dims(session: Session | None) -> tuple[int, int]:
    meta = session.meta if session is not None else {}
    cols, rows = meta.get("cols"), meta.get("rows")
    ok = isinstance(cols, int) and isinstance(rows, int) and cols > 0 and rows > 0
    return (cols, rows) if ok else (120, 40)  # type: ignore[return-value]


class ScrollbackScreen:
    """The screen of a program known only by its output stream."""

    def __init__(self, scrollback: Scrollback, cols: int, rows: int) -> None:
        self.scrollback = scrollback
        self.term = TerminalScreen(cols, rows)
        self.fed = max(0, scrollback.total_bytes - min(len(scrollback), SEED_BYTES))

    def lines(self) -> list[str]:
        total = self.scrollback.total_bytes
        new = total - self.fed
        if new > 0:
            self.term.feed(self.scrollback.tail(min(new, len(self.scrollback))))
            self.fed = total
        return self.term.lines()

    def app_cursor(self) -> bool:
        tail = self.scrollback.tail(SEED_BYTES)
        return tail.rfind(_APP_CURSOR_ON) > tail.rfind(_APP_CURSOR_OFF)


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


class PtyTransport:
    name = "pty"

    def __init__(self, pty: SpawnedPty, session: Session | None = None,
                 profiles: SubmitProfiles | None = None) -> None:
        self.pty = pty
        self.session = session
        self.profiles = profiles or load_profiles(None)
        self.term = PtyTerminal(pty, *dims(session))
        self.agent: AgentCheck | None = None
        self.profile: SubmitProfile | None = None
        self._for_keys = False

    async def check_ready(self, *, for_keys: bool = False) -> None:
        self._for_keys = for_keys
        if not self.pty.running:
            raise DeliveryError(SESSION_EXITED, "the session's process has exited",
                                stage=STAGE_CHECK_READY)
        kind = self.session.agent if self.session is not None else "other"
        self.agent = await check_agent(kind, self.pty.pid)
        require_agent(self.agent, f"the PTY of pid {self.pty.pid}")
        self.profile = self.profiles.profile_for(self.agent.profile_kind)
        check_screen_ready(read_screen(await self.term.screen(), self.profile), self.profile,
                           for_keys=for_keys)

    async def is_quiet(self, quiet_ms: int) -> bool:
        if not await wait_for_quiet(self.pty.activity, quiet_ms):
            return False
        if self.profile is not None:
            check_screen_quiet(read_screen(await self.term.screen(), self.profile),
                               for_keys=self._for_keys)
        return True

    def _evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"transport": self.name, "bracketed": self.pty.bracketed.enabled}
        if self.agent is not None:
            out["agent"] = self.agent.to_public()
        return out

    async def deliver(
        self, prompt: bytes, *, no_enter: bool, profile: SubmitProfile, on_stage: StageCallback,
    ) -> DeliveryOutcome:
        if not self.pty.running:
            raise DeliveryError(SESSION_EXITED, "the session's process has exited",
                                stage="capture_before")
        return await submit_prompt(self.term, prompt, self.profile or profile, no_enter=no_enter,
                                   on_stage=on_stage, evidence=self._evidence())

    async def send_keys(self, keys: Sequence[Any], *, on_stage: StageCallback) -> DeliveryOutcome:
        return await send_keys_via(self.term, keys, on_stage, self._evidence())

    async def explain(self, tail: int = 20) -> dict[str, Any]:
        kind = self.session.agent if self.session is not None else "other"
        agent = await check_agent(kind, self.pty.pid)
        return explain(session=self.session, transport=self.name, tail=tail, profiles=self.profiles,
                       agent=agent, lines=await self.term.screen(),
                       extra={"source": "pty scrollback", "bracketed": self.pty.bracketed.enabled})


async def send_keys_via(term: Any, keys: Sequence[Any], on_stage: StageCallback,
                        evidence: dict[str, Any]) -> DeliveryOutcome:
    """Keys into a stream-backed terminal (spawned PTY or wrapper), screen before and after."""
    before = trim(await term.screen())
    await on_stage(STAGE_KEYS)
    try:
        await term.press(keys)
    except DeliveryError as exc:
        exc.retryable = False
        raise
    await asyncio.sleep(KEY_GAP_S)
    try:
        after = trim(await term.screen())
    except DeliveryError:
        after = []  # the keys are sent; a failed look afterwards must not resend them
    return DeliveryOutcome(CONFIRMED_UNVERIFIED, {
        **evidence, "keys": describe(keys),
        "tail_before": "\n".join(before[-12:]), "tail_after": "\n".join(after[-12:]),
    })
