"""After an interrupted paste: is that prompt's text still sitting in the input?

A daemon killed mid-paste fails that delivery ``interrupted`` and never pastes it
again, because it may already be on the agent's screen. It usually is: the text sits
in the input, unsubmitted. A next prompt pasted on top of it would be submitted as one
merged message, so the engine holds the next prompt to that session
(``composer_has_text``) while the screen still shows the leftover, and lets it go once
the input is clear again or a person has sent keys (``telepty keys ID Enter`` submits
the leftover, ``C-u`` clears it).

How "still shows" is decided depends on what the profile knows:

- a profile that knows its composer: the composer holds text;
- otherwise (a shell, a plain REPL): the last non-blank line ends with a piece of the
  interrupted prompt. That can also match a line the program merely echoed, which
  holds a prompt that could have gone; it never lets a merge through, which is the
  failure that costs a person their prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

from telepty.delivery.profiles import SubmitProfile
from telepty.delivery.screen import COMPOSER_HAS_TEXT, normalise, read_screen, trim

# A shorter tail of the last line could match any prompt by chance.
MIN_MATCH_CHARS = 8


def shows_leftover(lines: Sequence[str], prompt: bytes, profile: SubmitProfile) -> bool:
    """True while the screen suggests the interrupted ``prompt`` is still in the input."""
    if profile.reads_screen:
        return read_screen(lines, profile).verdict == COMPOSER_HAS_TEXT
    shown = trim(lines)
    if not shown:
        return False
    last = normalise(shown[-1])
    wanted = normalise(prompt.decode("utf-8", errors="replace"))
    if not last or not wanted:
        return False
    need = min(len(wanted), MIN_MATCH_CHARS)
    # The line may start with a shell prompt; its end is where the cursor sits after
    # the pasted text, so its last characters must be a piece of the prompt.
    return len(last) >= need and last[-need:] in wanted
