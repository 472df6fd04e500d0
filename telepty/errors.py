"""Error codes shared by the API, the database, the bus and the CLI.

One vocabulary everywhere: a failure recorded as ``pane_dead`` in a delivery row is
reported as ``pane_dead`` by the HTTP API and printed as ``pane_dead`` by the CLI.
"""

from __future__ import annotations


class TeleptyError(Exception):
    """A failure with a stable code, a human detail and the HTTP status that fits it."""

    status: int = 400

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


class BadRequest(TeleptyError):
    status = 400


class NotFound(TeleptyError):
    status = 404


class Conflict(TeleptyError):
    status = 409


class TooLarge(TeleptyError):
    status = 413


class Unavailable(TeleptyError):
    status = 503
