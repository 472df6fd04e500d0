"""A session's self-reported state: what the agent says it is doing.

The Node.js telepty let a session report its phase (``telepty status-report --phase
planning --task …``) over HTTP or as a ``session_state_report`` bus event, and showed
it in ``session info`` and ``status``. The report is the agent's word, kept beside what
the daemon reads from the screen (``explain``), never mixed into it: a report cannot
make a busy session look idle to the delivery engine.

Pure: parsing only. Applying a report to a session is ``telepty.bus.state_reports``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from telepty.errors import BadRequest, ErrorCode

MAX_TEXT: Final = 2000
MAX_SEQ: Final = 2**53  # what a JavaScript reporter can count to exactly
DEFAULT_SOURCE: Final = "self_report"
STATE_REPORT_META: Final = "state_report"  # where a session's last self-report is kept

__all__ = ["MAX_TEXT", "STATE_REPORT_META", "parse_state_report"]


def _text(raw: Mapping[str, Any], *names: str) -> str | None:
    """The first of ``names`` present, trimmed; empty counts as absent (as in Node).
    Every one given is checked, an alias too: a bad field is refused, never ignored."""
    found: str | None = None
    for name in names:
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BadRequest(ErrorCode.INVALID_FIELD, f"{name} must be a string")
        if len(value) > MAX_TEXT:
            raise BadRequest(ErrorCode.INVALID_FIELD, f"{name} may be at most {MAX_TEXT} characters")
        if found is None:
            found = value.strip() or None
    return found


def parse_state_report(raw: Mapping[str, Any], *, previous_seq: int | None, now: str) -> dict[str, Any]:
    """A report body (the Node.js CLI's, or a bus event's fields) → the stored report.

    ``phase`` is required (``task_phase`` is its old alias), ``current_task`` may be
    ``task``; ``seq`` defaults to one more than the session's last report.
    """
    phase = _text(raw, "phase", "task_phase")
    if phase is None:
        raise BadRequest(ErrorCode.MISSING_FIELD, "phase is required (what the session is doing: "
                         "planning, implementing, blocked, …)")
    seq = raw.get("seq")
    if seq is None or seq == "":
        seq = (previous_seq or 0) + 1
    elif isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise BadRequest(ErrorCode.INVALID_FIELD, "seq must be a non-negative integer")
    needs_input = raw.get("needs_input")
    if needs_input is not None and not isinstance(needs_input, bool):
        raise BadRequest(ErrorCode.INVALID_FIELD, "needs_input must be true or false")
    return {
        "phase": phase,
        "current_task": _text(raw, "current_task", "task"),
        "blocker": _text(raw, "blocker"),
        "needs_input": needs_input is True,
        "thread_id": _text(raw, "thread_id"),
        "source": _text(raw, "source") or DEFAULT_SOURCE,
        "seq": seq,
        "timestamp": now,
    }
