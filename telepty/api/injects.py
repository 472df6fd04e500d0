"""``GET /api/injects``: the audit log of every injection (see :mod:`telepty.store.audit`).

Times are accepted the way people and scripts write them: an ISO-8601 instant
(``2025-01-31T12:00:00Z``), epoch seconds, or a duration meaning "that long ago"
(``90s``, ``15m``, ``2h``, ``7d``, ``1w``), so ``telepty injects --since 1h`` needs no
date arithmetic.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

from aiohttp import web

from telepty.api.body import json_response, query_int
from telepty.api.keys import AUDIT
from telepty.api.spec import Route, limit, listing, query, string
from telepty.clock import to_iso
from telepty.errors import BadRequest, ErrorCode
from telepty.store.audit import DEFAULT_LIMIT, MAX_LIMIT

# ASCII: \d would take any Unicode digit (float() reads them) and $ a trailing newline.
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*\Z", re.IGNORECASE | re.ASCII)
MAX_NAME = 200
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_duration(text: str, name: str) -> float:
    """``"15m"`` → 900.0 seconds; a bare number is seconds."""
    m = _DURATION_RE.match(text)
    if m is None:
        raise BadRequest(ErrorCode.INVALID_QUERY, f"{name} must be a duration like 90s, 15m, 2h, 7d or 1w, "
                         f"got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_instant(text: str, name: str, now: float | None = None) -> str:
    """An ISO-8601 instant, epoch seconds or a duration ago → the log's ISO format.

    An instant outside what a datetime holds (year 0 or 10000, 1e300 seconds, a duration
    reaching before year 1) is refused as invalid_query like any other bad time."""
    try:
        return _parse_instant(text, name, now)
    except (OverflowError, ValueError, OSError):
        raise BadRequest(ErrorCode.INVALID_QUERY, f"{name} is out of the range of representable times, "
                         f"got {text!r}") from None


def _parse_instant(text: str, name: str, now: float | None) -> str:
    value = text.strip()
    now = time.time() if now is None else now
    m = _DURATION_RE.match(value)
    if m is not None and m.group(2):
        return to_iso(now - parse_duration(value, name))
    try:
        epoch = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(epoch) and epoch >= 0:
            return to_iso(epoch)
        raise BadRequest(ErrorCode.INVALID_QUERY, f"{name} must be a finite, non-negative number of seconds, "
                         f"got {text!r}")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(ErrorCode.INVALID_QUERY, f"{name} must be an ISO-8601 time (2025-01-31T12:00:00Z), "
                         f"epoch seconds, or a duration ago (15m, 2h, 7d); got {text!r}") from None
    if dt.tzinfo is None:
        raise BadRequest(ErrorCode.INVALID_QUERY,
                         f"{name} needs a time zone (append Z for UTC), got {text!r}")
    return to_iso(dt.timestamp())


def _name(request: web.Request, key: str) -> str | None:
    """A sender or target as recorded (a ``from`` may be any name, not only a session id)."""
    value = request.query.get(key) or None
    if value is not None and (len(value) > MAX_NAME or not value.isprintable()):
        raise BadRequest(ErrorCode.INVALID_QUERY, f"{key} must be 1-{MAX_NAME} printable characters")
    return value


async def list_injects(request: web.Request) -> web.Response:
    q = request.query
    since = parse_instant(q["since"], "since") if q.get("since") else None
    until = parse_instant(q["until"], "until") if q.get("until") else None
    rows = await request.app[AUDIT].query(
        since=since, until=until, to=_name(request, "to"), sender=_name(request, "from"),
        limit=query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
    )
    return json_response(rows)


# What ?since= and ?until= take (parse_instant). The last branch says the handler judges
# the rest (fromisoformat and float() read more than these).
INSTANT = {"anyOf": [
    string(format="date-time", description="an ISO-8601 instant with a time zone"),
    string(pattern="^[0-9]+(\\.[0-9]+)?$", description="epoch seconds"),
    string(pattern="^[0-9]+(\\.[0-9]+)?[smhdw]$", description="a duration ago: 90s, 15m, 2h, 7d, 1w"),
    string(),
]}

ROUTES = (
    Route("GET", "/api/injects", list_injects, "listInjects",
          "The audit log of every accepted injection, newest first", "deliveries",
          params=(
              query("since", INSTANT, "ISO-8601 instant, epoch seconds, or a duration ago (15m, 2h, 7d)"),
              query("until", INSTANT, "same forms as since"),
              query("to", string(maxLength=MAX_NAME), "the target session"),
              query("from", string(maxLength=MAX_NAME), "the claimed or verified sender"),
              limit(DEFAULT_LIMIT, MAX_LIMIT),
          ),
          ok={200: listing("AuditRow")}, errors={400: "invalid_query"}),
)
