"""Termination signals and the reply footer (SPEC §5)."""

from __future__ import annotations

import pytest

from telepty.delivery.reply_guide import reply_footer, termination_signal, with_reply_footer

CLOSING = [
    "Thanks, no further reply needed.",
    "No Further Reply Is Needed",
    "OK — thread closed.",
    "Closed on codex side.",
    "closed on the claude side, thanks",
    "ack received",
    "Acknowledgement received.",
    "ACK-only: got it",
    "ack only",
    "확인했습니다. 회신 불필요",
    "회신불필요",
    "이 스레드 종료합니다",
    "스레드종료",
    "line one\nno further\nreply needed",
]

OPEN = [
    "Please review the diff and reply.",
    "What do you think about the thread pool closed loop?",  # not "thread closed"
    "Send an ack when you have received it.",  # "ack" without "received" right after
    "The door is closed. Which side are you on?",
    "Feedback received, here is round 3.",  # "ack received" inside a word
    "Give me feedback only on the API.",
    "The thread closedown is tomorrow.",
    "회신 부탁드립니다",
    "",
]


@pytest.mark.parametrize("text", CLOSING)
def test_closing_messages_are_recognised(text: str) -> None:
    assert termination_signal(text) is not None


@pytest.mark.parametrize("text", OPEN)
def test_ordinary_messages_are_not(text: str) -> None:
    assert termination_signal(text) is None


def test_footer_is_short_and_exact() -> None:
    assert reply_footer("delib-42") == (
        '\n\n[telepty] reply expected: run  telepty inject delib-42 "<your reply>"'
    )
    assert reply_footer("orch@laptop").endswith('telepty inject orch@laptop "<your reply>"')


def test_a_reply_target_the_shell_would_mangle_is_quoted() -> None:
    assert reply_footer("a b;rm").endswith("""telepty inject 'a b;rm' "<your reply>\"""")


def test_footer_only_when_a_reply_is_expected_possible_and_not_closed() -> None:
    p = "Your turn: respond to round 2."
    assert with_reply_footer(p, reply_to="d1", reply_expected=True) == p + reply_footer("d1")
    assert with_reply_footer(p, reply_to="d1", reply_expected=False) == p
    assert with_reply_footer(p, reply_to=None, reply_expected=True) == p
    closing = "Final summary posted. No further reply needed."
    assert with_reply_footer(closing, reply_to="d1", reply_expected=True) == closing
    korean = "정리 완료. 스레드 종료"
    assert with_reply_footer(korean, reply_to="d1", reply_expected=True) == korean
