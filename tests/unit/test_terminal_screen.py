"""The terminal model of wrapped and spawned sessions renders what tmux renders.

Every expected screen here is what tmux 3.3a showed for the same bytes (the recorded
agent streams carry tmux's capture with them; the small cases were rendered by tmux
when they were written: tests/integration/test_terminal_screen_tmux.py renders them
again). The model is fed in small chunks, as a PTY's reads split a stream anywhere:
inside an escape sequence, inside a UTF-8 character.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telepty.delivery.terminal_screen import TerminalScreen

STREAMS = Path(__file__).resolve().parents[1] / "realagents" / "streams"
AGENTS = ("claude", "codex", "gemini")

# (name, bytes, cols, rows, the screen tmux shows, tmux's cursor row)
CASES = [
    ("wide character at the last column wraps", b"abcdefghi\xe6\x97\xa5xyz", 10, 4,
     ["abcdefghi", "日xyz"], 1),
    ("variation selector and joiner stay with their character",
     "\u26a0\ufe0f warning then text\r\nnext line \U0001F468\u200d\U0001F469 fam ok".encode(), 40, 4,
     ["⚠️ warning then text", "next line 👨\u200d👩 fam ok"], 1),
    ("the main screen is back after the alternate one",
     b"main one\r\nmain two\x1b[?1049h\x1b[Halt stuff\x1b[?1049lback", 30, 5,
     ["main one", "main twoback"], 1),
    ("?47 switches screens without the cursor", b"main one\r\nmain two\x1b[?47h\x1b[Halt stuff\x1b[?47lback",
     30, 5, ["main one back", "main two"], 0),
    ("cursor moves outside the scroll region stop at the screen's edge",
     b"\x1b[2J\x1b[1;1Htop\x1b[5;8r\x1b[2;1H\x1b[5Ax\x1b[10;1H\x1b[2Bbottom\x1b[9;1H\x1b[5Bz", 20, 12,
     ["xop", "", "", "", "", "", "", "", "", "", "", "zottom"], 11),
    ("scroll up and down", b"l1\r\nl2\r\nl3\r\nl4\r\nl5\x1b[2S\x1b[1;1Hq\x1b[1T", 10, 6,
     ["", "q3", "l4", "l5"], 0),
    ("CSI s and CSI u save and restore the cursor", b"abc\x1b[sdef\r\nghi\x1b[uXY", 20, 4,
     ["abcXYf", "ghi"], 0),
    ("keyboard protocol and soft reset sequences print nothing",
     b"before\x1b[>1u mid\x1b[<u after\x1b[=1;1u x\x1b[!p end\x1b[?u.", 60, 3,
     ["before mid after x end."], 0),
    ("DCS and APC strings print nothing", b"before\x1bP+q544e\x1b\\after\x1b_apc stuff\x1b\\done", 40, 3,
     ["beforeafterdone"], 0),
    ("a margin reset homes the cursor", b"\x1b[5;5Hxx\x1b[rHOME", 20, 6, ["HOME", "", "", "", "    xx"], 0),
    ("deleting a line over blank lines leaves blanks",
     b"\x1b[2J\x1b[1;1HA\x1b[3;1HC\x1b[4;1HD\x1b[1;1H\x1b[M", 10, 6, ["", "C", "D"], 0),
    ("history printed into a scroll region above an input line",
     b"\x1b[2J\x1b[10;1H> input\x1b[1;8r\x1b[8;1H\r\nhist1\r\nhist2\r\nhist3\x1b[r\x1b[10;9H", 20, 10,
     ["", "", "", "", "", "hist1", "hist2", "hist3", "", "> input"], 9),
    ("origin mode", b"\x1b[3;6r\x1b[?6h\x1b[1;1Horigin\x1b[?6l\x1b[1;1Htop", 20, 8, ["top", "", "origin"], 0),
    ("combining marks stay as they came", "e\u0301 cafe\u0301 n\u0303".encode(), 20, 2,
     ["e\u0301 cafe\u0301 n\u0303"], 0),
    ("OSC titles and hyperlinks print nothing",
     b"\x1b]0;title\x07text\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ end", 30, 2, ["textlink end"], 0),
    ("NEL returns the carriage", b"abc\x1bEdef", 10, 3, ["abc", "def"], 1),
    ("a second DECRC goes back to the same place", b"ab\x1b7cd\x1b8X\x1b8Y", 10, 2, ["abYd"], 0),
    ("half of a wide character overwritten", "日本語\x1b[3GX".encode(), 10, 2, ["日X 語"], 0),
]


def feed(term: TerminalScreen, data: bytes, chunk: int) -> None:
    for i in range(0, len(data), chunk):
        term.feed(data[i:i + chunk])


@pytest.mark.parametrize("chunk", [1, 3, 4096])
@pytest.mark.parametrize(("name", "data", "cols", "rows", "screen", "cursor_row"), CASES,
                         ids=[c[0] for c in CASES])
def test_renders_as_tmux(name: str, data: bytes, cols: int, rows: int, screen: list[str],
                         cursor_row: int, chunk: int) -> None:
    term = TerminalScreen(cols, rows)
    feed(term, data, chunk)
    assert (term.lines(), term.cursor_row) == (screen, cursor_row)


def checkpoints(agent: str) -> list[dict[str, object]]:
    return json.loads((STREAMS / f"{agent}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("chunk", [7, 1000, 64 * 1024])
@pytest.mark.parametrize("agent", AGENTS)
def test_real_agent_streams_render_as_tmux_showed_them(agent: str, chunk: int) -> None:
    data = (STREAMS / f"{agent}.bin").read_bytes()
    term = TerminalScreen(120, 40)  # the size tests/realagents gives every agent
    fed = 0
    for cp in checkpoints(agent):
        offset = int(cp["offset"])  # type: ignore[call-overload]
        feed(term, data[fed:offset], chunk)
        fed = offset
        shown = [line.rstrip() for line in cp["screen"]]  # type: ignore[attr-defined]
        while shown and not shown[-1]:
            shown.pop()
        assert term.lines() == shown, cp["name"]
        assert term.cursor_row == cp["cursor_y"], cp["name"]
        # The input line as tmux's capture_to_cursor would give it.
        assert term.lines_to_cursor() == [line.rstrip() for line in cp["screen"]][: term.cursor_row + 1]  # type: ignore[index]


def test_lines_to_cursor_keeps_blank_rows_down_to_the_cursor() -> None:
    term = TerminalScreen(20, 6)
    term.feed(b"$ cat\r\nhello\r\nhello\r\n\r\n")
    assert term.lines() == ["$ cat", "hello", "hello"]
    assert term.lines_to_cursor() == ["$ cat", "hello", "hello", "", ""]


def test_application_cursor_mode_is_tracked() -> None:
    term = TerminalScreen(20, 4)
    assert not term.app_cursor
    term.feed(b"\x1b[?1h")
    assert term.app_cursor
    term.feed(b"\x1b[?1l")
    assert not term.app_cursor


def test_the_screen_size_is_the_terminals() -> None:
    term = TerminalScreen(20, 4)
    term.feed(b"\x1b[?3h" + b"x" * 30)  # DECCOLM would make it 132 columns wide
    assert term.lines() == ["x" * 20, "x" * 10]
