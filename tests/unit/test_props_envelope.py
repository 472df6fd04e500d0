"""Bus envelope validation over arbitrary JSON: a complete v2 envelope or a TeleptyError."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from telepty.bus.envelope import DAEMON_KINDS, ENVELOPE_FIELDS, KIND_RE, MESSAGE_ID_RE, normalize_envelope
from telepty.errors import TeleptyError

json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
KEYS = ("kind", "type", "message_id", "target", "version", "ts", "payload", "source", "source_host", "seq")
value_st = (json_st | st.sampled_from(["turn_request", "note", "bus.ack", "inject_written", "a" * 300,
                                       "2026-01-01T00:00:00Z", "not a time", "id-1", "has space"]))
event_st = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), value_st, max_size=8)


def _check(raw: Any) -> None:
    try:
        env = normalize_envelope(raw, machine_id="m1", default_source="test")
    except TeleptyError as exc:
        assert exc.status == 400 and exc.code
        return
    assert isinstance(raw, dict)
    assert list(env)[: len(ENVELOPE_FIELDS)] == list(ENVELOPE_FIELDS)
    assert env["type"] == env["kind"] and KIND_RE.match(env["kind"])
    assert env["kind"] not in DAEMON_KINDS and not env["kind"].startswith("bus.")
    assert MESSAGE_ID_RE.match(env["message_id"])
    assert isinstance(env["version"], int) and not isinstance(env["version"], bool) and env["version"] >= 1
    datetime.fromisoformat(env["ts"])
    assert "seq" not in env
    assert env.get("payload") is None or isinstance(env["payload"], dict)
    for key, value in raw.items():  # what the publisher gave is kept, never rewritten
        if key not in ("type", "seq") and value is not None:
            defaulted = value == "" and key in ("source", "source_host")
            assert env[key] is value or env[key] == value or defaulted


@settings(max_examples=300, deadline=None)
@given(raw=json_st)
def test_any_json_value_is_an_envelope_or_a_telepty_error(raw: Any) -> None:
    _check(raw)


@settings(max_examples=500, deadline=None)
@given(raw=event_st)
def test_event_shaped_objects_are_envelopes_or_telepty_errors(raw: dict[str, Any]) -> None:
    _check(raw)
