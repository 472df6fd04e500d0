import random

import pytest

from telepty.pty.bracketed import (
    BRACKET_END,
    BRACKET_START,
    BracketedPasteTracker,
    _strip_markers_linear,
    frame_paste,
    strip_paste_markers,
)

ON = b"\x1b[?2004h"
OFF = b"\x1b[?2004l"


def feed_all(*chunks: bytes) -> BracketedPasteTracker:
    t = BracketedPasteTracker()
    for c in chunks:
        t.feed(c)
    return t


def test_markers() -> None:
    assert BRACKET_START == b"\x1b[200~"
    assert BRACKET_END == b"\x1b[201~"


def test_off_by_default_and_plain_text_changes_nothing() -> None:
    assert not feed_all(b"hello world\r\n", b"", b"\x1b[1;31mred\x1b[0m").enabled


def test_plain_enable_and_disable() -> None:
    t = feed_all(b"prompt> " + ON + b"more")
    assert t.enabled
    t.feed(b"bye" + OFF)
    assert not t.enabled


def test_last_switch_in_a_chunk_wins() -> None:
    assert not feed_all(ON + b"x" + OFF).enabled
    assert feed_all(OFF + b"x" + ON + b"y").enabled


@pytest.mark.parametrize("seq,expected", [(ON, True), (OFF, False)])
def test_split_at_every_position(seq: bytes, expected: bool) -> None:
    start = BracketedPasteTracker(enabled=not expected)
    for i in range(1, len(seq)):
        t = BracketedPasteTracker(enabled=start.enabled)
        t.feed(b"abc" + seq[:i])
        t.feed(seq[i:] + b"def")
        assert t.enabled is expected, (i, seq[:i], seq[i:])


def test_fed_one_byte_at_a_time() -> None:
    stream = b"text\x1b[0m" + ON + b"\x1b[?25l" + OFF + b"\x1b[?1;2004h..."
    t = BracketedPasteTracker()
    states = []
    for b in stream:
        t.feed(bytes([b]))
        states.append(t.enabled)
    assert t.enabled
    assert True in states[: stream.index(OFF)]


def test_split_across_three_chunks() -> None:
    assert feed_all(b"\x1b", b"[?20", b"04h").enabled


@pytest.mark.parametrize(
    "seq,expected",
    [
        (b"\x1b[?1049;2004h", True),
        (b"\x1b[?2004;1049h", True),
        (b"\x1b[?1;2004;25h", True),
        (b"\x1b[?1049;2004l", False),
    ],
)
def test_combined_private_modes(seq: bytes, expected: bool) -> None:
    t = BracketedPasteTracker(enabled=not expected)
    t.feed(seq)
    assert t.enabled is expected


def test_combined_mode_split() -> None:
    assert feed_all(b"\x1b[?1049;", b"2004h").enabled


@pytest.mark.parametrize(
    "seq",
    [
        b"\x1b[?20040h",  # a different mode number
        b"\x1b[?12004h",
        b"\x1b[2004h",  # not a private mode
        b"\x1b[?1049h",
        b"\x1b[?2004",  # unfinished
        b"[?2004h",  # no ESC
    ],
)
def test_lookalikes_do_not_enable(seq: bytes) -> None:
    assert not feed_all(seq, b"x").enabled


def test_full_reset_disables() -> None:
    t = feed_all(ON)
    t.feed(b"\x1bc")
    assert not t.enabled
    t = feed_all(ON, b"\x1b", b"c")
    assert not t.enabled


def test_carry_does_not_swallow_following_text() -> None:
    # An ESC at the end of a chunk that turns out to be something else must not keep
    # the tracker from seeing a real switch later.
    assert feed_all(b"a\x1b", b"[31m", ON).enabled
    assert feed_all(b"\x1b[?20", b"x", ON).enabled


def test_frame_paste_wraps_only_when_enabled() -> None:
    assert frame_paste(b"hi\nthere", True) == BRACKET_START + b"hi\nthere" + BRACKET_END
    assert frame_paste(b"hi\nthere", False) == b"hi\nthere"


def test_frame_paste_strips_embedded_markers() -> None:
    evil = b"a" + BRACKET_END + b"rm -rf /\r" + BRACKET_START + b"b"
    assert frame_paste(evil, True) == BRACKET_START + b"arm -rf /\rb" + BRACKET_END
    assert frame_paste(evil, False) == b"arm -rf /\rb"


def test_strip_handles_markers_formed_by_removal() -> None:
    sneaky = b"x\x1b[20" + BRACKET_END + b"1~y"
    assert strip_paste_markers(sneaky) == b"xy"


def test_strip_deeply_nested_uses_linear_fallback() -> None:
    depth = 50
    nested = b"\x1b[20" * depth + BRACKET_START + b"0~" * depth
    assert strip_paste_markers(nested) == b""
    assert frame_paste(b"ok" + nested, True) == BRACKET_START + b"ok" + BRACKET_END


def test_strip_fuzz_never_leaves_a_marker() -> None:
    rng = random.Random(2004)
    alphabet = [b"\x1b", b"[", b"2", b"0", b"1", b"~", b"a", BRACKET_START, BRACKET_END]
    for _ in range(3000):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        out = strip_paste_markers(data)
        assert BRACKET_START not in out and BRACKET_END not in out, data
        assert _strip_markers_linear(data) == out, data


def test_strip_leaves_ordinary_bytes_alone() -> None:
    data = bytes(range(256)) * 8 + "héllo $(rm -rf ~) `x` \"q\" 'q'\t\n".encode()
    assert strip_paste_markers(data) == data
    assert strip_paste_markers(b"\x1b[200") == b"\x1b[200"
