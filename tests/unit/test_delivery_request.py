"""parse_inject: what every way in (HTTP, bus, relay, CLI) accepts and rejects."""

from __future__ import annotations

from typing import Any

import pytest

from telepty.delivery.request import DEFAULT_WAIT_TIMEOUT, parse_inject
from telepty.errors import BadRequest, TooLarge

MIB = 1024 * 1024


def parse(body: Any, limit: int = MIB):  # type: ignore[no-untyped-def]
    return parse_inject(body, max_prompt_bytes=limit)


def test_minimal_prompt_and_defaults() -> None:
    r = parse({"prompt": "hello"})
    assert r.prompt == b"hello"
    assert (r.sender, r.reply_to, r.thread_id) == (None, None, None)
    assert not (r.reply_expected or r.no_enter or r.force or r.wait or r.raw)
    assert r.quiet_ms is None and r.timeout == DEFAULT_WAIT_TIMEOUT
    assert r.warnings == ()


def test_all_optional_fields() -> None:
    r = parse({
        "prompt": "hi", "from": "a", "reply_to": "b", "thread_id": "t1", "reply_expected": True,
        "no_enter": True, "force": True, "wait": True, "raw": True, "quiet_ms": 0, "timeout": 2.5,
    })
    assert (r.sender, r.reply_to, r.thread_id) == ("a", "b", "t1")
    assert r.reply_expected and r.no_enter and r.force and r.wait and r.raw
    assert r.quiet_ms == 0 and r.timeout == 2.5


def test_reply_to_defaults_to_from() -> None:
    assert parse({"prompt": "x", "from": "claude-1"}).reply_to == "claude-1"


@pytest.mark.parametrize("legacy", ["text", "content", "message"])
def test_legacy_field_is_accepted_with_a_warning(legacy: str) -> None:
    r = parse({legacy: "hello"})
    assert r.prompt == b"hello"
    assert r.warnings == (f"deprecated_field: use prompt instead of {legacy}",)


def test_prompt_wins_over_a_legacy_field() -> None:
    r = parse({"prompt": "canonical", "text": "old"})
    assert r.prompt == b"canonical"
    assert not any(w.startswith("deprecated_field") for w in r.warnings)


@pytest.mark.parametrize("body", [{}, {"prompt": ""}, {"prompt": None}, {"text": ""}, {"from": "a"}])
def test_missing_prompt(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as e:
        parse(body)
    assert e.value.code == "missing_field" and e.value.status == 400


@pytest.mark.parametrize("body", [{"prompt": 5}, {"prompt": ["a"]}, {"text": {"a": 1}}, {"prompt": True}])
def test_prompt_of_the_wrong_type(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as e:
        parse(body)
    assert e.value.code == "invalid_field"


@pytest.mark.parametrize("body", [None, [], "prompt", 3])
def test_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(BadRequest) as e:
        parse(body)
    assert e.value.code == "invalid_body"


@pytest.mark.parametrize(
    ("text", "code_point", "index"),
    [
        ("a\x1b[31mred", "U+001B", 1),
        ("line\r\nnext", "U+000D", 4),
        ("ok\x00", "U+0000", 2),
        ("del\x7f", "U+007F", 3),
        ("nel\x85", "U+0085", 3),
        ("csi\x9b", "U+009B", 3),
        ("\x07bell", "U+0007", 0),
    ],
)
def test_control_characters_are_rejected(text: str, code_point: str, index: int) -> None:
    with pytest.raises(BadRequest) as e:
        parse({"prompt": text})
    assert e.value.code == "invalid_prompt"
    assert code_point in e.value.detail and f"index {index}" in e.value.detail


def test_tab_newline_and_non_ascii_are_fine() -> None:
    text = "a\tb\nc — 한국어 ✓ \u00a0 \U0001f600"
    assert parse({"prompt": text}).prompt == text.encode()


def test_raw_bypasses_the_control_check_byte_exact() -> None:
    text = "\x1b[A\r\n\x85"
    r = parse({"prompt": text, "raw": True})
    assert r.prompt == text.encode() and r.raw


def test_lone_surrogate_is_rejected() -> None:
    with pytest.raises(BadRequest) as e:
        parse({"prompt": "a\ud800b"})
    assert e.value.code == "invalid_prompt"


def test_size_limit_counts_utf8_bytes() -> None:
    assert len(parse({"prompt": "x" * MIB}).prompt) == MIB
    with pytest.raises(TooLarge) as e:
        parse({"prompt": "x" * (MIB + 1)})
    assert e.value.code == "too_large" and e.value.status == 413
    with pytest.raises(TooLarge):
        parse({"prompt": "é" * 6}, limit=11)  # 6 characters, 12 bytes


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from", 1), ("reply_to", ["a"]), ("thread_id", True),
        ("reply_expected", "yes"), ("no_enter", 1), ("force", "true"), ("wait", 0), ("raw", 1),
        ("quiet_ms", "200"), ("quiet_ms", 1.5), ("quiet_ms", -1), ("quiet_ms", 600_001), ("quiet_ms", True),
        ("timeout", "60"), ("timeout", -1), ("timeout", 3601), ("timeout", float("nan")), ("timeout", False),
    ],
)
def test_wrong_types_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(BadRequest) as e:
        parse({"prompt": "hi", field: value})
    assert e.value.code == "invalid_field"
    assert field in e.value.detail


def test_null_optional_fields_mean_absent() -> None:
    r = parse({"prompt": "hi", "from": None, "force": None, "quiet_ms": None, "timeout": None})
    assert r.sender is None and r.force is False and r.quiet_ms is None
