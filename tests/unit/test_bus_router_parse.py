"""turn_request validation: target forms, prompt_sha1, options, the reply footer."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from telepty.bus.envelope import normalize_envelope
from telepty.bus.router import TurnRequest, parse_turn_request
from telepty.delivery.reply_guide import reply_footer
from telepty.errors import BadRequest, TooLarge


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def turn(max_prompt_bytes: int = 1024, **fields: Any) -> TurnRequest:
    raw = {"kind": "turn_request", "target": "s1", "payload": {"prompt": "hi"}, **fields}
    env = normalize_envelope(raw, machine_id="m1", default_source="bus:http")
    return parse_turn_request(env, max_prompt_bytes=max_prompt_bytes)


@pytest.mark.parametrize(("target", "session", "host"), [
    ("s1", "s1", None),
    ("claude.main-2", "claude.main-2", None),
    ("s1@laptop", "s1", "laptop"),
    ("s1@100.100.100.5", "s1", "100.100.100.5"),
    ("s1@[fd7a:115c:a1e0::1]", "s1", "[fd7a:115c:a1e0::1]"),
])
def test_target_forms(target: str, session: str, host: str | None) -> None:
    t = turn(target=target)
    assert (t.target, t.session, t.host) == (target, session, host)


@pytest.mark.parametrize("target", ["s1@", "@host", "bad id", "s1@ho st", "x" * 65, "a@b@c d"])
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(BadRequest) as exc:
        turn(target=target)
    assert exc.value.code == "invalid_target"


@pytest.mark.parametrize(("fields", "code"), [
    ({"target": None}, "missing_field"),
    ({"payload": None}, "missing_field"),
    ({"payload": {}}, "missing_field"),
    ({"payload": {"prompt": ""}}, "missing_field"),
    ({"payload": {"prompt": 5}}, "missing_field"),
    ({"payload": {"prompt": "hi", "prompt_sha1": "abc"}}, "invalid_field"),
    ({"payload": {"prompt": "hi", "prompt_sha1": 1}}, "invalid_field"),
    ({"payload": {"prompt": "hi", "prompt_sha1": sha1("hi!")}}, "prompt_sha1_mismatch"),
    ({"payload": {"prompt": "a\rb"}}, "invalid_prompt"),
    ({"payload": {"prompt": "hi", "force": "yes"}}, "invalid_field"),
    ({"reply_expected": 1}, "invalid_field"),
    ({"from": 3}, "invalid_field"),
])
def test_bad_turn_requests_are_refused(fields: dict[str, Any], code: str) -> None:
    with pytest.raises(BadRequest) as exc:
        turn(**fields)
    assert exc.value.code == code


def test_sha1_is_of_the_utf8_prompt_and_case_insensitive() -> None:
    prompt = "라운드 2: 비판에 답하세요 ✓"
    t = turn(payload={"prompt": prompt, "prompt_sha1": sha1(prompt).upper()})
    assert t.request.prompt == prompt.encode()


def test_a_prompt_over_the_limit_is_too_large() -> None:
    with pytest.raises(TooLarge):
        turn(max_prompt_bytes=10, payload={"prompt": "x" * 11})


def test_options_top_level_wins_over_payload_and_from_defaults_to_source() -> None:
    t = turn(source="deliberation:d1", session_id="d1", thread_id="thr",
             payload={"prompt": "hi", "thread_id": "ignored", "no_enter": True, "force": True,
                      "quiet_ms": 0, "reply_to": "d1"})
    r = t.request
    assert (r.sender, r.reply_to, r.thread_id, r.no_enter, r.force, r.quiet_ms) == (
        "deliberation:d1", "d1", "thr", True, True, 0)
    assert t.deliberation_session_id == "d1"
    assert r.prompt == b"hi"  # no footer: no reply expected


def test_footer_is_added_when_a_reply_is_expected() -> None:
    t = turn(reply_to="d1", reply_expected=True, payload={"prompt": "Your turn."})
    assert t.request.prompt == ("Your turn." + reply_footer("d1")).encode()


def test_footer_is_suppressed_by_a_termination_signal() -> None:
    t = turn(reply_to="d1", reply_expected=True, payload={"prompt": "Summary posted. 회신 불필요"})
    assert t.request.prompt == "Summary posted. 회신 불필요".encode()
