"""Envelope validation: what a publisher may send, what the daemon fills, what it refuses."""

from __future__ import annotations

import re
from typing import Any

import pytest

from telepty.bus.envelope import DAEMON_KINDS, ENVELOPE_VERSION, make_event, normalize_envelope
from telepty.errors import BadRequest

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def norm(raw: object, transport: str = "http") -> dict[str, Any]:
    return normalize_envelope(raw, machine_id="m1", default_source=f"bus:{transport}")


def test_fills_what_the_publisher_left_out() -> None:
    env = norm({"kind": "build.done", "payload": {"ok": True}, "extra": [1, 2]})
    assert env["version"] == ENVELOPE_VERSION == 2
    assert re.match(r"^build\.done-[0-9a-f-]{36}$", env["message_id"])
    assert env["kind"] == env["type"] == "build.done"
    assert env["source"] == "bus:http" and env["source_host"] == "m1" and env["target"] is None
    assert ISO_Z.match(env["ts"])
    assert env["payload"] == {"ok": True} and env["extra"] == [1, 2]
    assert list(env)[:8] == ["version", "message_id", "kind", "type", "source", "source_host", "target", "ts"]


def test_keeps_what_the_publisher_gave() -> None:
    raw = {"kind": "x", "message_id": "m-1", "version": 1, "source": "ci:3", "source_host": "box",
           "target": "s1@box", "ts": "2026-03-15T09:30:00+09:00"}
    env = norm(raw, "ws")
    assert {k: env[k] for k in raw} == raw


def test_legacy_type_becomes_kind_and_is_mirrored() -> None:
    env = norm({"type": "turn_request_legacy"})
    assert env["kind"] == env["type"] == "turn_request_legacy"
    assert norm({"kind": "a", "type": "a"})["kind"] == "a"


def test_seq_from_a_publisher_is_dropped() -> None:
    assert "seq" not in norm({"kind": "a", "seq": 99})


BAD: list[tuple[object, str]] = [
    ([1, 2], "invalid_event"),
    ("text", "invalid_event"),
    (None, "invalid_event"),
    ({}, "missing_field"),
    ({"payload": {}}, "missing_field"),
    ({"kind": 5}, "invalid_field"),
    ({"type": ["a"]}, "invalid_field"),
    ({"kind": ""}, "invalid_kind"),
    ({"kind": "has space"}, "invalid_kind"),
    ({"kind": "x" * 65}, "invalid_kind"),
    ({"kind": "-leading"}, "invalid_kind"),
    ({"kind": "a", "type": "b"}, "conflicting_kind"),
    ({"kind": "bus.ack"}, "reserved_kind"),
    ({"kind": "inject_written"}, "reserved_kind"),
    ({"type": "message_routed"}, "reserved_kind"),
    ({"kind": "a", "target": 3}, "invalid_field"),
    ({"kind": "a", "target": ""}, "invalid_field"),
    ({"kind": "a", "target": "t" * 257}, "invalid_field"),
    ({"kind": "a", "payload": [1]}, "invalid_field"),
    ({"kind": "a", "payload": "s"}, "invalid_field"),
    ({"kind": "a", "message_id": "has space"}, "invalid_field"),
    ({"kind": "a", "message_id": "ü"}, "invalid_field"),
    ({"kind": "a", "message_id": 7}, "invalid_field"),
    ({"kind": "a", "version": "2"}, "invalid_field"),
    ({"kind": "a", "version": True}, "invalid_field"),
    ({"kind": "a", "version": 0}, "invalid_field"),
    ({"kind": "a", "ts": "yesterday"}, "invalid_field"),
    ({"kind": "a", "source": {}}, "invalid_field"),
    ({"kind": "a", "source_host": 1}, "invalid_field"),
]


@pytest.mark.parametrize(("raw", "code"), BAD, ids=[f"{i}-{c}" for i, (_, c) in enumerate(BAD)])
def test_bad_input_is_refused_with_a_code(raw: object, code: str) -> None:
    with pytest.raises(BadRequest) as exc:
        norm(raw)
    assert exc.value.code == code
    assert exc.value.detail  # a human sentence, not just a code


def test_every_daemon_kind_is_reserved() -> None:
    for kind in DAEMON_KINDS:
        with pytest.raises(BadRequest, match="reserved_kind"):
            norm({"kind": kind})


def test_make_event_refuses_body_fields_that_would_overwrite_the_envelope() -> None:
    with pytest.raises(ValueError, match="message_id"):
        make_event("delivery.failed", source_host="m1", message_id="turn-1")
    env = make_event("x", source_host="m1", target="s1", extra=1)
    assert env["kind"] == env["type"] == "x" and env["source"] == "daemon" and env["extra"] == 1
