"""After a crash mid-delivery: what the screen says about the prompt we were handing over.

A daemon killed while it delivered a prompt knows, from the stage it had persisted,
whether the submit key can have gone out. The screen tells the rest. These pure
functions read it; the engine acts (``DeliveryEngine._recover``):

- stage ``paste`` (the submit key cannot have gone out):

  - ``WHOLE``: the input holds exactly the prompt → press the submit keys. It was never
    submitted, so this is no duplicate;
  - ``PART`` / ``UNKNOWN``: some of it, or the screen cannot tell → clear the input with
    the profile's ``clear_keys``, see it empty, paste again;
  - ``EMPTY``: nothing of it is there (the paste never landed) → paste again;

- stage ``submit`` or later (Enter may have gone out): never press it again. The screen
  confirms the submission, or the delivery fails ``unconfirmed``; if the prompt visibly
  still sits in the input, the session is held (a next paste would merge with it).

"Whole" must be provable: for a profile that knows its composer, the composer's text
is the prompt (whitespace and borders aside) or the agent's placeholder for a paste; for
a line-oriented program (a shell, ``cat``, a REPL) the bottom of the screen ends with
the prompt. Anything less is ``PART``, and clearing then pasting again costs only time.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from telepty.delivery.profiles import SubmitProfile
from telepty.delivery.screen import UNKNOWN as V_UNKNOWN
from telepty.delivery.screen import holds_prompt, normalise, read_screen, trim

# A shorter tail of the last line could match any prompt by chance.
MIN_MATCH_CHARS = 8


class InputView(StrEnum):
    WHOLE = "whole"
    PART = "part"
    EMPTY = "empty"
    UNKNOWN = "unknown"


def input_view(lines: Sequence[str], prompt: bytes, profile: SubmitProfile) -> InputView:
    """How much of ``prompt`` the input on this screen holds (``lines`` from ``look``)."""
    text = prompt.decode("utf-8", errors="replace")
    wanted = normalise(text)
    if profile.reads_screen:
        reading = read_screen(lines, profile)
        c = reading.composer
        if c is None:
            return InputView.UNKNOWN if reading.verdict == V_UNKNOWN else InputView.EMPTY
        held = holds_prompt(c, text, profile)
        if held == "placeholder":
            # Agents draw the placeholder once the paste has ended: all of it arrived.
            return InputView.WHOLE
        if held == "text":
            return InputView.WHOLE if normalise(c.text) == wanted else InputView.PART
        if c.empty:
            return InputView.EMPTY
        # Text that is none of ours: the paste never landed; someone else's words are
        # for the normal composer check, not for us to clear.
        return InputView.EMPTY
    return _line_view([line.rstrip() for line in lines], wanted, text.count("\n") + 1)


async def look(term: Any, profile: SubmitProfile) -> list[str]:
    """The lines ``input_view`` wants: the screen for a profile that knows its composer,
    the rows down to the cursor for a line-oriented program."""
    return list(await (term.screen() if profile.reads_screen else term.input_lines()))


def _line_view(shown: list[str], wanted: str, prompt_lines: int) -> InputView:
    """A program without a composer: its input is the cursor's row (the last one given:
    see ``look``) and what was typed or pasted ends there. A blank cursor row is an
    empty input, whatever the rows above it show (``cat`` after a line went out)."""
    if not shown or not wanted:
        return InputView.EMPTY
    last = normalise(shown[-1])
    if not last:
        return InputView.EMPTY
    # Wrapped lines make a prompt line take several screen rows; a few more than it has
    # lines is enough to see all of a short prompt, and more would only add noise.
    rows = prompt_lines * 2 + len(wanted) // 20 + 2
    bottom = normalise("".join(shown[-rows:]))
    if bottom.endswith(wanted):
        return InputView.WHOLE
    need = min(len(wanted), MIN_MATCH_CHARS)
    if len(last) >= need and last[-need:] in wanted:
        return InputView.PART
    return InputView.EMPTY


def shows_prompt(lines: Sequence[str], prompt: bytes, profile: SubmitProfile) -> bool:
    """Does the input still show (some of) the prompt? What a hold waits to see go."""
    return input_view(lines, prompt, profile) in (InputView.WHOLE, InputView.PART)


def bottom_shows_tail(lines: Sequence[str], prompt: str) -> bool:
    """The prompt's own last characters at the bottom of the screen.

    A long paste into an input that shows no placeholder (a prompt_toolkit line given
    100 kB) scrolls the input line itself out of view; what is left in view is the end
    of the text, right above the cursor. That is evidence the paste is in the input.
    """
    wanted = normalise(prompt)
    if len(wanted) < MIN_MATCH_CHARS:
        return False
    bottom = normalise("".join(trim(lines)[-4:]))
    n = min(len(bottom), len(wanted), 64)
    return n >= MIN_MATCH_CHARS and bottom[-n:] == wanted[-n:]
