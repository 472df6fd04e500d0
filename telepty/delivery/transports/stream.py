"""What the spawned-PTY and wrapper transports share: a terminal known by its output stream.

Neither has tmux to capture a screen. Both keep the program's recent output
(``Scrollback``) and read the screen by running it through a small emulator; both
check readiness, watch the quiet guard and confirm a submission the same way. They
differ only in how they reach the terminal (our own PTY, or a wrapper's socket), how
they know it is alive, and where its output activity comes from: those are the hooks
``StreamTransport`` leaves to its subclasses.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from telepty.activity import EndEcho, OutputActivity
from telepty.delivery.confirm import TerminalIO, submit_pasted, submit_prompt
from telepty.delivery.keys import describe
from telepty.delivery.model import STAGE_CHECK_READY, Delivery, DeliveryError
from telepty.delivery.profiles import SubmitProfile, SubmitProfiles, load_profiles
from telepty.delivery.readiness import (
    AgentCheck,
    check_agent,
    check_screen_quiet,
    check_screen_ready,
    explain,
    require_agent,
)
from telepty.delivery.screen import read_screen, trim
from telepty.delivery.terminal_screen import TerminalScreen
from telepty.delivery.transports.base import (
    CONFIRMED_UNVERIFIED,
    DeliveryOutcome,
    Settled,
    StageCallback,
    TransportBase,
)
from telepty.pty.scrollback import Scrollback
from telepty.sessions.model import Session

KEY_GAP_S = 0.03  # between key events, so Escape+Enter is not read as Alt+Enter
STAGE_KEYS = "keys"


def dims(session: Session | None) -> tuple[int, int]:
    meta = session.meta if session is not None else {}
    cols, rows = meta.get("cols"), meta.get("rows")
    ok = isinstance(cols, int) and isinstance(rows, int) and cols > 0 and rows > 0
    return (cols, rows) if ok else (120, 40)  # type: ignore[return-value]


class ScrollbackScreen:
    """The screen of a program known only by its output stream.

    One per stream, kept for its life (``stream_view``) and fed everything the stream
    prints from its first look on. A model rebuilt from a recent tail for each look
    loses what a TUI drew once and never redraws (Codex writes its ``›`` input marker
    once and then only the cells that change): after enough transcript, the tail no
    longer holds it, and the last ``› …`` line of the transcript passes for the input.
    """

    def __init__(self, scrollback: Scrollback, cols: int, rows: int) -> None:
        self.scrollback = scrollback
        self.term = TerminalScreen(cols, rows)
        self.fed = scrollback.total_bytes - len(scrollback)  # all that is retained: seed with it
        scrollback.on_append = self._keep_up

    def _feed(self) -> None:
        """Everything the stream printed since the last look."""
        total = self.scrollback.total_bytes
        new = total - self.fed
        if new > len(self.scrollback):
            # More arrived than the stream keeps: the model lost its thread; start over
            # from everything retained.
            self.term = TerminalScreen(self.term.cols, self.term.rows)
            new = len(self.scrollback)
        if new > 0:
            self.term.feed(self.scrollback.tail(new))
            self.fed = total

    def _keep_up(self) -> None:
        # Feed in large slices, never letting the stream's window run past the model.
        if self.scrollback.total_bytes - self.fed > self.scrollback.capacity // 2:
            self._feed()

    def lines(self) -> list[str]:
        self._feed()
        return self.term.lines()

    def input_lines(self) -> list[str]:
        self._feed()
        return self.term.lines_to_cursor()

    def app_cursor(self) -> bool:
        """Whether arrow keys must be sent as the program asked (``ESC [ ? 1 h``)."""
        self._feed()
        return self.term.app_cursor


_VIEWS: weakref.WeakKeyDictionary[Scrollback, ScrollbackScreen] = weakref.WeakKeyDictionary()


def stream_view(scrollback: Scrollback, cols: int, rows: int) -> ScrollbackScreen:
    """The one screen model of a stream (see ``ScrollbackScreen``); a new one when the
    terminal's size changed."""
    view = _VIEWS.get(scrollback)
    if view is None or (view.term.cols, view.term.rows) != (max(2, cols), max(2, rows)):
        view = ScrollbackScreen(scrollback, cols, rows)
        _VIEWS[scrollback] = view
    return view


class StreamTransport(TransportBase):
    """Readiness, quiet guard, delivery and keys for a stream-backed terminal."""

    name = "stream"
    term: TerminalIO

    def __init__(self, term: TerminalIO, session: Session | None,
                 profiles: SubmitProfiles | None) -> None:
        self.term = term
        self.session = session
        self.profiles = profiles or load_profiles(None)
        self.agent: AgentCheck | None = None
        self.profile: SubmitProfile | None = None
        self.guard: dict[str, Any] | None = None  # what the quiet guard saw, for the record
        self._for_keys = False

    # -- the hooks ------------------------------------------------------------------------

    def _ensure_connected(self, stage: str) -> None:
        """Raise the transport's own DeliveryError when the terminal cannot be reached."""

    def _pid(self) -> int | None:
        """The process at the root of the terminal's tree."""
        return None

    def _agent_checkable(self, pid: int | None) -> bool:
        """Whether an agent missing from the tree under ``pid`` means it exited."""
        return True

    def _activity(self) -> OutputActivity:
        """When the terminal last printed (the stream's bytes, as the daemon reads them)."""
        raise NotImplementedError

    def _output_trusted(self) -> bool:
        """False when output may be happening that we do not see (a stalled mirror)."""
        return True

    def _evidence_extra(self) -> dict[str, Any]:
        return {}

    def _explain_extra(self) -> dict[str, Any]:
        return {}

    # -- the procedure --------------------------------------------------------------------

    def _kind(self) -> str:
        return self.session.agent if self.session is not None else "other"

    async def check_ready(self, *, for_keys: bool = False) -> None:
        self._for_keys = for_keys
        self._ensure_connected(STAGE_CHECK_READY)
        pid = self._pid()
        self.agent = await check_agent(self._kind(), pid)
        if self._agent_checkable(pid):
            require_agent(self.agent, f"the {self.name} terminal (pid {pid})")
        self.profile = self.profiles.profile_for(self.agent.profile_kind)
        check_screen_ready(read_screen(await self.term.screen(), self.profile), self.profile,
                           for_keys=for_keys)

    async def is_quiet(self, quiet_ms: int) -> bool:
        """No output of its own for ``quiet_ms`` (waiting at most what is left of that
        window), and no busy pattern or someone's text on the screen."""
        if not self._output_trusted():
            self.guard = {"quiet_ms": quiet_ms, "quiet": False, "stalled": True}
            return False
        quiet, self.guard = await self._activity().guard(quiet_ms)
        if not quiet:
            return False
        if self.profile is not None:
            check_screen_quiet(read_screen(await self.term.screen(), self.profile),
                               for_keys=self._for_keys)
        return True

    def settled(self, quiet_ms: int, *, needs_output: bool) -> Settled:
        activity = self._activity()
        since = activity.now() if needs_output else None
        return lambda: activity.wait_quiet(quiet_ms / 1000.0, printed_after=since)

    def _evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"transport": self.name, **self._evidence_extra()}
        if self.guard is not None:
            out["quiet_guard"] = self.guard
        if self.agent is not None:
            out["agent"] = self.agent.to_public()
        return out

    async def deliver(self, d: Delivery, *, profile: SubmitProfile,
                      on_stage: StageCallback) -> DeliveryOutcome:
        self._ensure_connected("capture_before")
        p = self.profile or profile
        with self._activity().ours() as end_echo:
            return await submit_prompt(self.term, d.prompt, p, no_enter=d.no_enter, on_stage=on_stage,
                                       evidence=self._evidence(), on_submitted=answer_starts(p, end_echo))

    async def send_keys(self, keys: Sequence[Any], *, on_stage: StageCallback) -> DeliveryOutcome:
        with self._activity().ours():
            return await press_keys(self.term, keys, on_stage, self._evidence())

    async def submit_pasted(
        self, prompt: bytes, *, profile: SubmitProfile, on_stage: StageCallback,
    ) -> DeliveryOutcome:
        """Submit a prompt that already sits whole in the input (see ``recovery``)."""
        self._ensure_connected("capture_before")
        p = self.profile or profile
        with self._activity().ours() as end_echo:
            return await submit_pasted(self.term, prompt, p, on_stage=on_stage, evidence=self._evidence(),
                                       on_submitted=answer_starts(p, end_echo))

    async def clear_input(self, keys: Sequence[str]) -> None:
        with self._activity().ours():
            await self.term.press(keys)

    async def explain(self, tail: int = 20, quiet_ms: int | None = None) -> dict[str, Any]:
        agent = await check_agent(self._kind(), self._pid())
        return explain(session=self.session, transport=self.name, tail=tail, profiles=self.profiles,
                       agent=agent, lines=await self.term.screen(), extra=self._explain_extra(),
                       output=self._activity().describe(quiet_ms))


def answer_starts(profile: SubmitProfile, end_echo: EndEcho) -> Callable[[], None] | None:
    """What a submit key ends: for an agent whose screen is read, the echo span, at once —
    what it prints next is it taking the prompt, and a next prompt waits for that to
    settle like any output. A program telepty cannot read keeps the short grace, so that
    back-to-back lines into ``cat`` or a shell are not each held a quiet window."""
    return (lambda: end_echo(0.0)) if profile.reads_screen else None


async def press_keys(term: TerminalIO, keys: Sequence[Any], on_stage: StageCallback,
                     evidence: dict[str, Any]) -> DeliveryOutcome:
    """Keys into any terminal, with the screen before and after as evidence.

    Keys have nothing to confirm against, so the two screens are what a person (or
    ``telepty explain``) looks at afterwards. Once the keys stage is entered nothing is
    retried: a key sent twice is a different answer.
    """
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
