"""Paste, submit, and make sure the prompt really left the composer.

"Delivered" means submitted (SPEC §3). The procedure, the same for every transport:

1. read the screen; a dialog that appeared since the readiness check stops us here
   (nothing written yet, so the engine may retry);
2. ``on_stage("paste")``, then paste;
3. wait until the composer shows the prompt (or the agent's placeholder for a long
   paste) *and* the profile's settle delay has passed since the paste. A composer that
   never changes means the paste went somewhere else: the submit key is not sent;
4. send the submit keys, then watch the screen until it shows the submission: the
   composer is empty again, the agent shows it is working or asking for permission, or
   (no composer on screen) the prompt appears as a new line. The state must hold for
   two looks in a row: a screen caught mid-redraw must not count as a submission;
5. still in the composer after ``confirm_ms`` → the profile's rescue steps (at most
   two, e.g. Enter, then Escape+Enter), each followed by another watch;
6. otherwise fail ``not_submitted``; a screen that explains nothing fails ``unconfirmed``
   rather than passing as delivered.

Profiles without composer patterns cannot tell stuck from submitted: they paste, wait
the settle delay, submit, and record ``confirmed: unverified``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from telepty.clock import monotonic
from telepty.delivery.model import (
    BLOCKED_DIALOG,
    NOT_SUBMITTED,
    STAGE_PASTE,
    STAGE_SUBMIT,
    UNCONFIRMED,
    DeliveryError,
)
from telepty.delivery.profiles import SubmitProfile
from telepty.delivery.recovery import bottom_shows_tail
from telepty.delivery.screen import (
    BLOCKED,
    BUSY,
    ScreenReading,
    echoed,
    holds_prompt,
    read_screen,
    trim,
)
from telepty.delivery.transports.base import (
    CONFIRMED_ECHO,
    CONFIRMED_SCREEN,
    CONFIRMED_UNVERIFIED,
    DeliveryOutcome,
    ScreenView,
)

STAGE_SETTLE = "settle"
STAGE_CONFIRM = "confirm"
STAGE_RESCUE = "rescue"

SUBMITTED = "submitted"
STUCK = "stuck"
OTHER_TEXT = "other_text"
UNKNOWN_STATE = "unknown"

TAIL_LINES = 12
GRACE_POLLS = 5
# A huge paste takes a while to render: wait this much longer per 100 KiB.
RENDER_MS_PER_100K = 1000


class TerminalIO(ScreenView, Protocol):
    """What the procedure needs from a transport's terminal; errors are ``DeliveryError``s."""

    async def paste(self, data: bytes) -> None:
        """Paste ``data`` (bracketed when the app asked for it), without submitting."""
        ...

    async def press(self, keys: Sequence[Any]) -> None:
        """Send keys (``telepty.delivery.keys``: tmux key names or ``{"text": …}``), each
        as its own key event."""
        ...


@dataclass(frozen=True)
class Judgement:
    state: str  # submitted | stuck | other_text | unknown
    how: str | None = None  # screen | echo, when submitted
    pattern: str | None = None
    line: str | None = None
    held: str | None = None  # "text" | "placeholder", when stuck

    def to_public(self) -> dict[str, Any]:
        return {k: v for k, v in {"state": self.state, "how": self.how, "pattern": self.pattern,
                                  "line": self.line, "held": self.held}.items() if v is not None}


def judge(after: Sequence[str], before: Sequence[str], prompt: str, profile: SubmitProfile) -> Judgement:
    """Has ``prompt`` left the composer on the ``after`` screen? (Pure; see module doc.)"""
    r = read_screen(after, profile)
    c = r.composer
    if r.verdict == BLOCKED and r.dialog is not None:
        # The agent is asking permission to act: it took the prompt.
        return Judgement(SUBMITTED, CONFIRMED_SCREEN, r.dialog.pattern, r.dialog.line)
    if r.busy is not None and (c is None or r.busy.index >= c.end):
        # Working, with no composer under the spinner: what matched as a composer above
        # it is the transcript's copy of the prompt.
        return Judgement(SUBMITTED, CONFIRMED_SCREEN, r.busy.pattern, r.busy.line)
    held = holds_prompt(c, prompt, profile)
    if held is not None and c is not None:
        return Judgement(STUCK, pattern=c.pattern, line=after_line(r, c.index), held=held)
    if r.verdict == BUSY and r.busy is not None:
        return Judgement(SUBMITTED, CONFIRMED_SCREEN, r.busy.pattern, r.busy.line)
    if c is not None:
        if c.empty:
            decided = c.idle.pattern if c.idle is not None else c.pattern
            return Judgement(SUBMITTED, CONFIRMED_SCREEN, decided, after_line(r, c.index))
        return Judgement(OTHER_TEXT, pattern=c.pattern, line=after_line(r, c.index))
    line = echoed(prompt, before, r.lines)
    if line is not None:
        return Judgement(SUBMITTED, CONFIRMED_ECHO, None, line)
    return Judgement(UNKNOWN_STATE)


def after_line(r: ScreenReading, index: int) -> str | None:
    return r.lines[index] if 0 <= index < len(r.lines) else None


@dataclass
class Procedure:
    """One prompt's way through paste → settle → submit → confirm (→ rescue)."""

    io: TerminalIO
    profile: SubmitProfile
    prompt: bytes
    no_enter: bool
    on_stage: Callable[[str], Awaitable[None]]
    poll_s: float = 0.02
    stable_polls: int = 2
    clock: Callable[[], float] = monotonic
    evidence: dict[str, Any] = field(default_factory=dict)
    # Told when the submit key went out: the transport's echo span ends there for an
    # agent whose screen is read (what it prints next is its answer; see telepty.activity).
    on_submitted: Callable[[], None] | None = None
    _t0: float = 0.0
    _text: str = ""

    async def run(self) -> DeliveryOutcome:
        self._t0 = self.clock()
        self._text = self.prompt.decode("utf-8", errors="replace")
        p = self.profile
        self.evidence.update(profile=p.name, settle_ms=p.settle_ms)
        before = trim(await self.io.screen())
        self.evidence["tail_before"] = "\n".join(before[-TAIL_LINES:])
        reading = read_screen(before, p)
        if reading.verdict == BLOCKED and reading.dialog is not None:
            raise DeliveryError(
                BLOCKED_DIALOG, f"a dialog is waiting for an answer: {reading.dialog.line.strip()!r}",
                stage="capture_before", retryable=True,
                evidence={**self.evidence, "dialog": reading.dialog.to_public()},
            )
        await self.on_stage(STAGE_PASTE)
        try:
            return await self._after_paste(before, reading)
        except DeliveryError as exc:
            exc.retryable = False  # something may be on the agent's screen now
            exc.evidence = {**self.evidence, **exc.evidence}
            raise

    def _ms(self) -> float:
        return round((self.clock() - self._t0) * 1000, 1)

    async def _after_paste(self, before: list[str], reading: ScreenReading) -> DeliveryOutcome:
        p = self.profile
        await self.io.paste(self.prompt)
        t_paste = self.clock()
        timings: dict[str, float] = {"paste": self._ms()}
        self.evidence["timings_ms"] = timings
        seen = None
        if p.reads_screen:
            seen = await self._wait_visible(before, reading)
            timings["visible"] = self._ms()
            self.evidence["paste_seen"] = seen
        remaining = p.settle_ms / 1000.0 - (self.clock() - t_paste)
        if remaining > 0:
            await asyncio.sleep(remaining)  # the profile's settle delay, not synchronisation
        if self.no_enter:
            after = trim(await self.io.screen())
            self.evidence["tail_after"] = "\n".join(after[-TAIL_LINES:])
            return DeliveryOutcome(CONFIRMED_SCREEN if seen in ("text", "placeholder", "tail")
                                   else CONFIRMED_UNVERIFIED, self.evidence)
        return await self._submit(before, timings)

    async def run_submit(self) -> DeliveryOutcome:
        """Only submit and confirm: the prompt is already in the input (a paste that a
        crash interrupted before its submit key; ``telepty.delivery.recovery``)."""
        self._t0 = self.clock()
        self._text = self.prompt.decode("utf-8", errors="replace")
        self.evidence.update(profile=self.profile.name, settle_ms=self.profile.settle_ms)
        before = trim(await self.io.screen())
        self.evidence["tail_before"] = "\n".join(before[-TAIL_LINES:])
        timings: dict[str, float] = {}
        self.evidence["timings_ms"] = timings
        try:
            return await self._submit(before, timings)
        except DeliveryError as exc:
            exc.retryable = False
            exc.evidence = {**self.evidence, **exc.evidence}
            raise

    async def _submit(self, before: list[str], timings: dict[str, float]) -> DeliveryOutcome:
        p = self.profile
        await self.on_stage(STAGE_SUBMIT)
        await self.io.press(p.submit_keys)
        timings["submit"] = self._ms()
        if self.on_submitted is not None:
            self.on_submitted()
        if not p.reads_screen:
            after = trim(await self.io.screen())
            self.evidence["tail_after"] = "\n".join(after[-TAIL_LINES:])
            return DeliveryOutcome(CONFIRMED_UNVERIFIED, self.evidence)

        await self.on_stage(STAGE_CONFIRM)
        verdict, after = await self._watch(before)
        rescued: list[list[str]] = []
        for step in p.rescue:
            if verdict.state != STUCK:
                break
            await self.on_stage(STAGE_RESCUE)
            await self.io.press(step)
            rescued.append(list(step))
            verdict, after = await self._watch(before)
        if rescued:
            self.evidence["rescued"] = rescued
        self.evidence["tail_after"] = "\n".join(after[-TAIL_LINES:])
        self.evidence["judgement"] = verdict.to_public()
        if verdict.state == SUBMITTED:
            timings["confirmed"] = self._ms()
            return DeliveryOutcome(verdict.how or CONFIRMED_SCREEN, self.evidence)
        if verdict.state == STUCK:
            raise DeliveryError(
                NOT_SUBMITTED,
                f"the prompt is still in the composer ({verdict.held}) after the submit key"
                + (f" and {len(rescued)} rescue step(s)" if rescued else ""),
                stage=STAGE_CONFIRM,
            )
        if verdict.state == OTHER_TEXT:
            raise DeliveryError(
                NOT_SUBMITTED,
                f"the composer holds other text after the submit key: {verdict.line!r}",
                stage=STAGE_CONFIRM,
            )
        raise DeliveryError(
            UNCONFIRMED,
            "the submit key was sent, but the screen showed neither the composer nor the prompt "
            "afterwards; it may or may not have been submitted",
            stage=STAGE_CONFIRM,
        )

    async def _wait_visible(self, before: list[str], reading: ScreenReading) -> str:
        """Until the composer shows the prompt; "changed" / raise if it never does."""
        p = self.profile
        limit = (p.confirm_ms + RENDER_MS_PER_100K * len(self.prompt) / 100_000) / 1000.0
        deadline = self.clock() + max(limit, p.settle_ms / 1000.0)
        old = reading.composer.text if reading.composer is not None else None
        last: list[str] = before
        while True:
            last = trim(await self.io.screen())
            r = read_screen(last, p)
            held = holds_prompt(r.composer, self._text, p)
            if held is not None:
                return held
            if r.composer is None and bottom_shows_tail(last, self._text):
                return "tail"  # the input scrolled out of view under a long paste's end
            if self.clock() >= deadline:
                break
            await asyncio.sleep(self.poll_s)
        r = read_screen(last, p)
        if r.composer is not None and not r.composer.empty and r.composer.text != old:
            return "changed"  # our text, drawn in a way the patterns do not recognise
        self.evidence["tail_after"] = "\n".join(last[-TAIL_LINES:])
        raise DeliveryError(
            NOT_SUBMITTED,
            "the pasted text never showed in the composer, so the submit key was not sent "
            f"(screen: {r.why})",
            stage=STAGE_PASTE,
        )

    async def _watch(self, before: list[str]) -> tuple[Judgement, list[str]]:
        """Look until a submission holds for ``stable_polls`` looks, or ``confirm_ms`` ends."""
        deadline = self.clock() + self.profile.confirm_ms / 1000.0
        streak = 0
        extra = GRACE_POLLS  # a screen caught mid-redraw at the deadline gets a few more looks
        verdict = Judgement(UNKNOWN_STATE)
        after: list[str] = []
        while True:
            after = trim(await self.io.screen())
            verdict = judge(after, before, self._text, self.profile)
            streak = streak + 1 if verdict.state == SUBMITTED else 0
            if streak >= self.stable_polls:
                return verdict, after
            if self.clock() >= deadline and streak == 0:
                if verdict.state == STUCK or extra <= 0:
                    return verdict, after
                extra -= 1
            await asyncio.sleep(self.poll_s)


async def submit_pasted(
    io: TerminalIO,
    prompt: bytes,
    profile: SubmitProfile,
    *,
    on_stage: Callable[[str], Awaitable[None]],
    evidence: dict[str, Any] | None = None,
    poll_s: float = 0.02,
    on_submitted: Callable[[], None] | None = None,
) -> DeliveryOutcome:
    """Submit a prompt that already sits whole in the input, and confirm it."""
    proc = Procedure(io, profile, prompt, False, on_stage, poll_s=poll_s, evidence=dict(evidence or {}),
                     on_submitted=on_submitted)
    return await proc.run_submit()


async def submit_prompt(
    io: TerminalIO,
    prompt: bytes,
    profile: SubmitProfile,
    *,
    no_enter: bool,
    on_stage: Callable[[str], Awaitable[None]],
    evidence: dict[str, Any] | None = None,
    poll_s: float = 0.02,
    on_submitted: Callable[[], None] | None = None,
) -> DeliveryOutcome:
    proc = Procedure(io, profile, prompt, no_enter, on_stage, poll_s=poll_s,
                     evidence=dict(evidence or {}), on_submitted=on_submitted)
    return await proc.run()
