"""PasteBufferTransport: a prompt into a tmux pane through a named paste buffer.

The prompt travels tmux's stdin into a uniquely named buffer and is pasted with
``paste-buffer -p -d``, so tmux frames bracketed paste itself when the app asked for
it, and the text never appears on any command line. Whether it was then submitted is
decided by looking at the pane (``telepty.delivery.confirm``).

Readiness, before anything is written: the pane exists and is alive; it is not in
copy/view mode (left with tmux's own ``copy-mode -q``, then looked at again, since a
pane in a mode lets the paste through but eats the Enter); the agent still runs under
the pane's shell; no dialog is up. The pane is looked at once more right before the
paste, because the quiet guard in between takes time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from telepty.activity import OutputActivity, ours
from telepty.clock import monotonic
from telepty.delivery.confirm import submit_pasted, submit_prompt
from telepty.delivery.model import (
    PANE_DEAD,
    PANE_IN_MODE,
    STAGE_CHECK_READY,
    STAGE_QUIET_GUARD,
    TMUX_CMD_FAILED,
    TMUX_UNAVAILABLE,
    Delivery,
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
from telepty.delivery.transports.base import DeliveryOutcome, Settled, StageCallback, TransportBase
from telepty.delivery.transports.stream import KEY_GAP_S, answer_starts, press_keys
from telepty.sessions.model import Session
from telepty.sessions.panes import PANE_PID_META, same_pane
from telepty.tmux import TmuxError, TmuxServer
from telepty.tmux.server import PaneInfo

GUARD_TAIL_LINES = 8
GUARD_POLL_S = 0.25  # how often the quiet guard looks at the pane during its window
RECHECK_AFTER_S = 0.1  # a readiness look younger than this needs no second one


def _classified(exc: TmuxError, *, before_paste: bool) -> DeliveryError:
    # A tmux hiccup before anything was pasted can be retried safely; after the
    # paste stage began it cannot, or the prompt might land twice.
    retryable = before_paste and exc.code == TMUX_CMD_FAILED
    return DeliveryError(exc.code, exc.detail, stage=exc.stage, retryable=retryable)


class PaneTerminal:
    """``TerminalIO`` over one tmux pane."""

    def __init__(self, tmux: TmuxServer, pane_id: str) -> None:
        self.tmux = tmux
        self.pane_id = pane_id
        self.screens = 0

    async def screen(self) -> list[str]:
        try:
            text = await self.tmux.capture_tail(self.pane_id, 0, stage="capture")
        except TmuxError as exc:
            raise _classified(exc, before_paste=True) from None
        self.screens += 1
        return text.split("\n")

    async def input_lines(self) -> list[str]:
        try:
            return await self.tmux.capture_to_cursor(self.pane_id, stage="capture")
        except TmuxError as exc:
            raise _classified(exc, before_paste=True) from None

    async def paste(self, data: bytes) -> None:
        try:
            await self.tmux.paste_bytes(self.pane_id, data)
        except TmuxError as exc:
            raise _classified(exc, before_paste=False) from None

    async def press(self, keys: Sequence[Any]) -> None:
        try:
            for i, key in enumerate(keys):
                if i:
                    await asyncio.sleep(KEY_GAP_S)
                if isinstance(key, dict):
                    await self.tmux.send_keys(self.pane_id, key["text"], literal=True)
                else:
                    await self.tmux.send_keys(self.pane_id, key)
        except TmuxError as exc:
            raise _classified(exc, before_paste=False) from None


class PasteBufferTransport(TransportBase):
    name = "paste_buffer"

    def __init__(self, tmux: TmuxServer, pane_id: str, session: Session | None = None,
                 profiles: SubmitProfiles | None = None) -> None:
        self.tmux = tmux
        self.pane_id = pane_id
        self.session = session
        self.profiles = profiles or load_profiles(None)
        self.term = PaneTerminal(tmux, pane_id)
        self.agent: AgentCheck | None = None
        self.profile: SubmitProfile | None = None
        self.left_mode = False
        self._command: str | None = None
        self._for_keys = False
        self._looked_at = float("-inf")  # monotonic time of the readiness look at the pane
        self.activity: OutputActivity | None = None  # the pane's output, while tmux reports it
        self.guard: dict[str, Any] | None = None  # what the quiet guard saw, for the record

    # -- readiness ------------------------------------------------------------------------

    async def _pane(self, stage: str) -> PaneInfo:
        if not self.tmux.available():
            raise DeliveryError(TMUX_UNAVAILABLE, "tmux is not installed or not on PATH", stage=stage)
        try:
            info = await self.tmux.pane_info(self.pane_id)
            if info is not None and not info.pane_dead and info.pane_in_mode:
                await self.tmux.exit_mode(self.pane_id, stage=stage)
                self.left_mode = True
                info = await self.tmux.pane_info(self.pane_id)
        except TmuxError as exc:
            raise _classified(exc, before_paste=True) from None
        if info is None or info.pane_dead:
            raise DeliveryError(PANE_DEAD, f"pane {self.pane_id} no longer exists", stage=stage)
        if self.session is not None and not same_pane(self.session, info.pane_pid):
            raise DeliveryError(PANE_DEAD, f"pane {self.pane_id} now runs another process (pid "
                                f"{info.pane_pid}, not {self.session.meta.get(PANE_PID_META)}): its "
                                "tmux server was restarted and the id reused", stage=stage)
        if info.pane_in_mode:
            raise DeliveryError(PANE_IN_MODE, f"pane {self.pane_id} stays in copy/view mode",
                                stage=stage, retryable=True)
        return info

    async def check_ready(self, *, for_keys: bool = False) -> None:
        self._for_keys = for_keys
        info = await self._pane(STAGE_CHECK_READY)
        self._looked_at = monotonic()
        try:
            self.activity = await self.tmux.watch_output(info)
        except TmuxError as exc:
            raise _classified(exc, before_paste=True) from None
        kind = self.session.agent if self.session is not None else "other"
        self.agent = await check_agent(kind, info.pane_pid)
        self._command = info.pane_current_command
        require_agent(self.agent, f"pane {self.pane_id}")
        self.profile = self.profiles.profile_for(self.agent.profile_kind)
        reading = read_screen(await self.term.screen(), self.profile)
        check_screen_ready(reading, self.profile, for_keys=for_keys)

    async def _recheck(self) -> None:
        """Right before writing: still alive, out of any mode, the same agent in front.

        Skipped when readiness looked a moment ago (``force``: no quiet guard in
        between); the paste procedure reads the screen once more anyway.
        """
        if monotonic() - self._looked_at < RECHECK_AFTER_S:
            return
        info = await self._pane("capture_before")
        if self.agent is not None and info.pane_current_command != self._command:
            # Something else is in the foreground now: look at the tree again.
            self.agent = await check_agent(self.agent.kind, info.pane_pid)
            self._command = info.pane_current_command
            require_agent(self.agent, f"pane {self.pane_id}")

    async def is_quiet(self, quiet_ms: int) -> bool:
        """Has the pane printed nothing (of itself) for ``quiet_ms``, and shows no busy
        pattern or someone's half-typed text?

        With tmux's ``%output`` watch this is known at once; a pane that printed a
        moment ago is waited for only until its window is over. Without it (no control
        mode), two captures ``quiet_ms`` apart must be identical. Either way the pane is
        looked at every ``GUARD_POLL_S`` while waiting, so a pane or server that goes
        away fails now (``pane_dead``), not at the end of the window.
        """
        try:
            if self.activity is not None:
                quiet, self.guard = await self.activity.guard(
                    quiet_ms, check=self._still_there, poll_s=GUARD_POLL_S)
                if not quiet:
                    return False
                lines = await self.term.screen()
            else:
                quiet, lines = await self._quiet_by_captures(quiet_ms)
                self.guard = {"quiet_ms": quiet_ms, "quiet": quiet, "by": "screen"}
                if not quiet:
                    return False
        except TmuxError as exc:
            raise _classified(exc, before_paste=True) from None
        if self.profile is not None:
            check_screen_quiet(read_screen(lines, self.profile), for_keys=self._for_keys)
        return True

    async def _still_there(self) -> None:
        await self._pane(STAGE_QUIET_GUARD)

    async def _quiet_by_captures(self, quiet_ms: int) -> tuple[bool, list[str]]:
        before = await self.tmux.capture_tail(self.pane_id, 0, stage=STAGE_QUIET_GUARD)
        tail = before.split("\n")[-GUARD_TAIL_LINES:]
        deadline = monotonic() + quiet_ms / 1000.0
        while True:
            left = deadline - monotonic()
            # The guard's own quiet window, not synchronisation.
            await asyncio.sleep(max(0.0, min(left, GUARD_POLL_S)))
            after = await self.tmux.capture_tail(self.pane_id, 0, stage=STAGE_QUIET_GUARD)
            lines = after.split("\n")
            if lines[-GUARD_TAIL_LINES:] != tail:
                return False, lines
            if left <= GUARD_POLL_S:
                return True, lines

    def settled(self, quiet_ms: int, *, needs_output: bool) -> Settled:
        # tmux's %output watch stamps output with the one monotonic clock.
        since = monotonic() if needs_output else None
        return lambda: self._settled(quiet_ms / 1000.0, since)

    async def _settled(self, quiet_s: float, printed_after: float | None) -> None:
        if self.activity is None:  # not looked at yet (a held delivery after a restart)
            try:
                info = await self.tmux.pane_info(self.pane_id)
                self.activity = await self.tmux.watch_output(info) if info is not None else None
            except TmuxError:
                self.activity = None
        if self.activity is None:
            await asyncio.Event().wait()  # tmux cannot tell us: only the caller's bound ends this
        await self.activity.wait_quiet(quiet_s, printed_after=printed_after)

    # -- writing --------------------------------------------------------------------------

    def _evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"transport": self.name, "pane": self.pane_id}
        if self.left_mode:
            out["left_copy_mode"] = True
        if self.guard is not None:
            out["quiet_guard"] = self.guard
        if self.agent is not None:
            out["agent"] = self.agent.to_public()
        return out

    async def deliver(self, d: Delivery, *, profile: SubmitProfile,
                      on_stage: StageCallback) -> DeliveryOutcome:
        await self._recheck()
        p = self.profile or profile
        with ours(self.activity) as end_echo:
            return await submit_prompt(self.term, d.prompt, p, no_enter=d.no_enter, on_stage=on_stage,
                                       evidence=self._evidence(), on_submitted=answer_starts(p, end_echo))

    async def send_keys(self, keys: Sequence[Any], *, on_stage: StageCallback) -> DeliveryOutcome:
        await self._recheck()
        with ours(self.activity):
            return await press_keys(self.term, keys, on_stage, self._evidence())

    async def submit_pasted(
        self, prompt: bytes, *, profile: SubmitProfile, on_stage: StageCallback,
    ) -> DeliveryOutcome:
        """Submit a prompt that already sits whole in the input (see ``recovery``)."""
        p = self.profile or profile
        with ours(self.activity) as end_echo:
            return await submit_pasted(self.term, prompt, p, on_stage=on_stage, evidence=self._evidence(),
                                       on_submitted=answer_starts(p, end_echo))

    async def clear_input(self, keys: Sequence[str]) -> None:
        with ours(self.activity):
            await self.term.press(keys)

    async def explain(self, tail: int = 20, quiet_ms: int | None = None) -> dict[str, Any]:
        """What readiness would see now; changes nothing (a pane in copy mode stays in it)."""
        try:
            info = await self.tmux.pane_info(self.pane_id)
        except TmuxError as exc:
            raise _classified(exc, before_paste=True) from None
        if info is None or info.pane_dead:
            raise DeliveryError(PANE_DEAD, f"pane {self.pane_id} no longer exists", stage="explain")
        kind = self.session.agent if self.session is not None else "other"
        agent = await check_agent(kind, info.pane_pid)
        lines = await self.term.screen()
        try:
            activity = await self.tmux.watch_output(info)
        except TmuxError:
            activity = None
        return explain(session=self.session, transport=self.name, tail=tail, profiles=self.profiles,
                       agent=agent, lines=lines,
                       output=activity.describe(quiet_ms) if activity is not None else None,
                       extra={"pane": self.pane_id, "pane_in_mode": info.pane_in_mode,
                              "pane_current_command": info.pane_current_command})
