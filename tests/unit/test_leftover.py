"""Does the screen still show an interrupted prompt in the input?"""

from __future__ import annotations

import pytest

from telepty.delivery.leftover import shows_leftover
from telepty.delivery.profiles import load_profiles

P = load_profiles(None)
PROMPT = b"summarise the failing tests in tests/unit"


@pytest.mark.parametrize(("screen", "shown"), [
    (["ready> summarise the failing tests in tests/unit", ""], True),   # all of it, cursor after
    (["user@box:~$ summarise the failing te", ""], True),                # partial, after a shell prompt
    (["ready> summarise the failing tests in", "tests/unit", ""], True),  # wrapped
    (["submitted 3 (40 bytes)", "ready> ", ""], False),                   # the input is empty
    (["ready> something else entirely"], False),                          # someone else's text
    ([], False),
    (["ready> tests"], False),                                            # too short to tell
])
def test_without_a_composer_the_last_line_decides(screen: list[str], shown: bool) -> None:
    assert shows_leftover(screen, PROMPT, P.profile_for("other")) is shown


def test_a_short_prompt_must_show_whole() -> None:
    assert shows_leftover(["$ ok go"], b"ok go", P.profile_for("other"))
    assert not shows_leftover(["$ go"], b"ok go", P.profile_for("other"))


def test_a_profile_that_knows_its_composer_asks_the_composer() -> None:
    claude = P.profile_for("claude")
    with_text = ["╭──────╮", "│ > summarise the failing │", "╰──────╯"]
    empty = ["╭──────╮", "│ >                       │", "╰──────╯"]
    assert shows_leftover(with_text, PROMPT, claude)
    assert not shows_leftover(empty, PROMPT, claude)
