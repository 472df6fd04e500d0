"""The wrap socket's messages: what each end writes is what the other reads, and a frame
whose known fields have the wrong type is refused whole."""

from __future__ import annotations

import orjson
import pytest

from telepty.pty.wrap_protocol import (
    DAEMON_MESSAGES,
    PROTOCOL,
    WRAPPER_MESSAGES,
    Detach,
    Exit,
    Heartbeat,
    Hello,
    LegacyPaste,
    Paste,
    Refused,
    Renamed,
    Result,
    Welcome,
    WireError,
    Write,
    decode,
    encode,
)

WRAPPER_SIDE = [
    Hello(command="claude", cwd="/p", pid=7, session_id="w1", agent="claude", tmux_pane="%3",
          tmux_socket="/tmp/a,b/sock", replace=True, cols=120, rows=40, session_token_sha256="ab" * 32,
          meta={"k": "v"}, protocol=PROTOCOL),
    Hello(),
    Heartbeat(bytes_out=10, bytes_mirrored=9, bytes_in=2, idle_ms=1500, bracketed_paste=True),
    Heartbeat(),
    Result(id=4, ok=True, bracketed=False),
    Result(id=5, ok=False, error="write_failed", detail="the PTY is closed"),
    Exit(code=3),
    Exit(),
]
DAEMON_SIDE = [
    Welcome(session_id="w1", session={"id": "w1", "state": "running"}),
    Refused(error="session_exists", detail="session 'w1' is live (id w1, pid 9)"),
    Paste(id=1, data="héllo\n\x1b[201~".encode()),
    Write(id=2, data=b"\x00\r\xff"),
    Detach(reason="replaced"),
    Renamed(session_id="w2"),
]


@pytest.mark.parametrize("msg", WRAPPER_SIDE, ids=repr)
def test_what_the_wrapper_writes_the_daemon_reads(msg: object) -> None:
    assert decode(encode(msg), WRAPPER_MESSAGES) == msg  # type: ignore[arg-type]


@pytest.mark.parametrize("msg", DAEMON_SIDE, ids=repr)
def test_what_the_daemon_writes_the_wrapper_reads(msg: object) -> None:
    assert decode(encode(msg), DAEMON_MESSAGES) == msg  # type: ignore[arg-type]


def test_the_wire_shape() -> None:
    assert orjson.loads(encode(Paste(id=3, data=b"hi"))) == {"type": "paste", "id": 3, "data": "aGk="}
    assert orjson.loads(encode(Refused(error="invalid_hello", detail="x"))) == {
        "type": "error", "error": "invalid_hello", "detail": "x"}
    # A protocol-1 wrapper submits a paste unless told not to; a current one never does.
    assert orjson.loads(encode(LegacyPaste(id=3, data=b"hi")))["no_enter"] is True
    assert decode(encode(LegacyPaste(id=3, data=b"hi")), DAEMON_MESSAGES) == Paste(id=3, data=b"hi")


def test_unknown_fields_are_ignored() -> None:
    frame = '{"type": "heartbeat", "idle_ms": 5, "from_the_future": [1]}'
    assert decode(frame, WRAPPER_MESSAGES) == Heartbeat(idle_ms=5)


@pytest.mark.parametrize(("frame", "field", "request_id", "unknown"), [
    ("not json", None, None, False),
    ("[1]", None, None, False),
    ('{"type": "reboot", "id": 6}', None, 6, True),
    ('{"id": 6}', None, 6, True),
    ('{"type": "paste", "id": 1, "data": "not base64!"}', "data", 1, False),
    ('{"type": "paste", "id": 2, "data": 5}', "data", 2, False),
    ('{"type": "paste", "data": "aGk="}', "id", None, False),
    ('{"type": "write", "id": true, "data": "aGk="}', "id", None, False),
    ('{"type": "renamed", "session_id": 3}', "session_id", None, False),
])
def test_a_frame_that_is_not_a_message_is_refused(frame: str, field: str | None, request_id: int | None,
                                                   unknown: bool) -> None:
    with pytest.raises(WireError) as err:
        decode(frame, DAEMON_MESSAGES)
    assert (err.value.field, err.value.request_id, err.value.unknown) == (field, request_id, unknown)


@pytest.mark.parametrize("frame", [
    '{"type": "hello", "pid": "x"}',
    '{"type": "hello", "replace": 1}',
    '{"type": "heartbeat", "bytes_out": true}',
    '{"type": "heartbeat", "idle_ms": "soon"}',
    '{"type": "exit", "code": 1.5}',
    '{"type": "result", "id": 1}',
])
def test_wrong_types_from_a_wrapper_are_refused(frame: str) -> None:
    with pytest.raises(WireError):
        decode(frame, WRAPPER_MESSAGES)
