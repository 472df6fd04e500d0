"""What a restart reads off the screen about a prompt it was handing over."""

from __future__ import annotations

import pytest

from telepty.delivery.profiles import load_profiles
from telepty.delivery.recovery import InputView, bottom_shows_tail, input_view, shows_prompt

P = load_profiles(None)
PROMPT = b"summarise the failing tests in tests/unit"
W, PART, E, U = InputView.WHOLE, InputView.PART, InputView.EMPTY, InputView.UNKNOWN


# Screens as ``look`` gives them for a line-oriented program: down to the cursor's row.
@pytest.mark.parametrize(("screen", "view"), [
    (["ready> summarise the failing tests in tests/unit"], W),      # all of it, cursor after
    (["$ summarise the failing tests in tests/unit"], W),           # a shell's line
    (["user@box:~$ summarise the failing te"], PART),               # partial, after a shell prompt
    (["ready> summarise the failing tests in", "tests/unit"], W),   # wrapped
    (["submitted 3 (40 bytes)", "ready> "], E),                     # the input is empty
    (["ready> summarise the failing tests in tests/unit", "submitted 1", "ready>"], E),  # went out
    (["summarise the failing tests in tests/unit", ""], E),         # cat: the line went, cursor below
    (["ready> something else entirely"], E),                        # someone else's text
    ([], E),
    (["ready> tests"], E),                                          # too short to tell
])
def test_without_a_composer_the_cursor_row_decides(screen: list[str], view: InputView) -> None:
    assert input_view(screen, PROMPT, P.profile_for("other")) is view
    assert shows_prompt(screen, PROMPT, P.profile_for("other")) is (view in (W, PART))


def test_a_short_prompt_must_show_whole() -> None:
    assert input_view(["$ ok go"], b"ok go", P.profile_for("other")) is W
    assert input_view(["$ go"], b"ok go", P.profile_for("other")) is E


def test_a_multi_line_prompt_at_the_bottom_is_whole() -> None:
    prompt = b"first line\nsecond line\nthird"
    assert input_view(["> first line", "  second line", "  third"], prompt, P.profile_for("other")) is W
    assert input_view(["> first line", "  second li"], prompt, P.profile_for("other")) is PART


def test_a_profile_that_knows_its_composer_asks_the_composer() -> None:
    claude = P.profile_for("claude")

    def box(text: str) -> list[str]:
        return ["╭────────────────────────────────────────────────╮", f"│ > {text:<44} │",
                "╰────────────────────────────────────────────────╯"]

    assert input_view(box("summarise the failing tests in tests/unit"), PROMPT, claude) is W
    assert input_view(box("summarise the failing"), PROMPT, claude) is PART
    assert input_view(box(""), PROMPT, claude) is E
    assert input_view(box("[Pasted text #1 +40 lines]"), PROMPT, claude) is W
    assert input_view(box("somebody's own words here"), PROMPT, claude) is E
    assert input_view(["nothing that looks like an input box"], PROMPT, claude) is U


def test_the_tail_of_a_long_paste_at_the_bottom_is_evidence() -> None:
    prompt = "".join(f"line {i} of a long paste\n" for i in range(2000)) + "the very end"
    screen = ["line 1998 of a long paste", "line 1999 of a long paste", "the very end", ""]
    assert bottom_shows_tail(screen, prompt)
    assert not bottom_shows_tail(["line 1998 of a long paste", "> "], prompt)
    assert not bottom_shows_tail(["end"], "end")  # too short to mean anything
