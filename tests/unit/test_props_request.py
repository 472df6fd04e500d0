"""parse_inject over arbitrary JSON: it parses or raises a TeleptyError, never anything else."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from telepty.delivery.request import _CONTROL_RE, parse_inject
from telepty.errors import TeleptyError

json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ("prompt", "text", "content", "message", "from", "reply_to", "thread_id", "reply_expected",
          "no_enter", "force", "wait", "raw", "quiet_ms", "timeout")
# Bodies shaped like real ones, with values of every type: most land on a known field.
body_st = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_st | st.text(), max_size=8)


def _check(body: Any, max_bytes: int = 4096) -> None:
    try:
        req = parse_inject(body, max_prompt_bytes=max_bytes)
    except TeleptyError as exc:
        assert exc.status in (400, 413)
        return
    assert isinstance(body, dict)
    assert 0 < len(req.prompt) <= max_bytes
    if not req.raw:
        assert _CONTROL_RE.search(req.prompt.decode("utf-8")) is None
    assert req.quiet_ms is None or 0 <= req.quiet_ms <= 600_000
    assert 0 <= req.timeout <= 3600


@settings(max_examples=300, deadline=None)
@given(body=json_st)
def test_any_json_value_parses_or_is_a_telepty_error(body: Any) -> None:
    _check(body)


@settings(max_examples=400, deadline=None)
@given(body=body_st)
def test_inject_shaped_bodies_parse_or_are_telepty_errors(body: dict[str, Any]) -> None:
    _check(body)


@settings(max_examples=300, deadline=None)
@given(prompt=st.text(min_size=1), raw=st.booleans())
def test_control_characters_only_with_raw(prompt: str, raw: bool) -> None:
    try:
        req = parse_inject({"prompt": prompt, "raw": raw}, max_prompt_bytes=1 << 20)
    except TeleptyError:
        bad = _CONTROL_RE.search(prompt) is not None and not raw
        surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in prompt)
        blank = not prompt.strip()  # refused like an empty prompt
        assert bad or surrogate or blank
        return
    assert req.prompt == prompt.encode("utf-8")  # byte-exact, never rewritten
    assert raw or _CONTROL_RE.search(prompt) is None
