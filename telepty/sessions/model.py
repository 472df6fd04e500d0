"""The Session record: what the daemon knows about one agent terminal.

Persisted fields live here; runtime attachments (a PTY, a wrapper's socket) are
kept by the registry beside the record, so a record can always be stored and
restored without dragging live objects along.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from telepty.clock import from_iso
from telepty.errors import BadRequest, ErrorCode

# \Z, not $: "$" also matches before a trailing newline, which let "s1\n" pass as an id.
# [0-9], not \d: \d takes any Unicode digit, and tmux pane ids are ASCII.
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
PANE_ID_RE = re.compile(r"^%[0-9]+\Z")


class SessionType(StrEnum):
    SPAWNED = "spawned"
    WRAPPED = "wrapped"
    PANE = "pane"


class SessionState(StrEnum):
    RUNNING = "running"
    DISCONNECTED = "disconnected"
    EXITED = "exited"


def validate_session_id(value: object, field_name: str = "session_id") -> str:
    if not isinstance(value, str) or not SESSION_ID_RE.match(value):
        raise BadRequest(
            ErrorCode.INVALID_SESSION_ID,
            f"{field_name} must be 1-64 characters of A-Z a-z 0-9 . _ - (got {value!r})",
        )
    return value


@dataclass
class Session:
    id: str
    type: SessionType
    command: str
    cwd: str
    created_at: str
    updated_at: str
    state: SessionState = SessionState.RUNNING
    pid: int | None = None
    tmux_pane: str | None = None
    tmux_socket: str | None = None
    agent: str = "other"
    alias: str | None = None
    exit_code: int | None = None
    last_activity_at: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    clients: int = field(default=0, compare=False)

    @property
    def live(self) -> bool:
        return self.state is SessionState.RUNNING

    @property
    def project_id(self) -> str:
        return os.path.basename(self.cwd.rstrip("/")) if self.cwd else ""

    def idle_seconds(self, now_epoch: float) -> float | None:
        if not self.last_activity_at:
            return None
        return max(0.0, round(now_epoch - from_iso(self.last_activity_at), 3))

    def to_public(self, machine_id: str, now_epoch: float) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy was most of GET /api/sessions at 500
        # sessions. The result is serialised at once, so a shallow copy of meta will do.
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["meta"] = dict(self.meta)
        data["type"] = str(self.type)
        data["state"] = str(self.state)
        data["locator"] = {
            "machine_id": machine_id,
            "session_id": self.id,
            "project_id": self.project_id,
        }
        data["idle_seconds"] = self.idle_seconds(now_epoch)
        return data


_FIELD_NAMES = tuple(f.name for f in fields(Session))
