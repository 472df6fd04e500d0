"""The Node.js telepty's wire dialect: who speaks it, and our records in its words.

Why this exists: a fleet runs the Node.js CLI (0.1.x) and orchestrators written for its
daemon beside this daemon for a while. Most of what they read is simply added beside
our own fields (the camelCase session fields, ``screen``, ``session_id`` on spawn,
``id`` on threads) and costs every other caller nothing. Three answers cannot carry
both shapes, because the old and the new meaning of one name collide:

* multicast/broadcast ``results``: our list of per-target records, their
  ``{successful, failed}``;
* an empty ``prompt``: our ``400 missing_field``, their "press Enter";
* ``GET /api/meta``'s ``version``: the Node CLI restarts ("repairs") any local daemon
  whose version is not exactly its own, killing every process whose command line says
  ``telepty daemon`` — ours included.

Those follow the caller's dialect. The Node CLI is recognised by the ``User-Agent`` its
built-in ``fetch`` sends (``node``); any other old client opts in with
``X-Telepty-Compat: node``. Nothing about trust depends on the dialect: a Node client
passes the same auth middleware and input checks as everyone else.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from telepty.sessions.model import Session, SessionState, SessionType
from telepty.sessions.state_report import STATE_REPORT_META

__all__ = [
    "COMPAT_HEADER",
    "NODE_PROTOCOL_VERSION",
    "NODE_USER_AGENT",
    "health_of",
    "node_fanout_results",
    "node_fields",
    "semantic_of",
    "speaks_node",
]

# The Node.js telepty release whose wire protocol this layer speaks (its CLI compares
# its own version with the daemon's: see the module docstring).
NODE_PROTOCOL_VERSION: Final = "0.1.96"
NODE_USER_AGENT: Final = "node"  # what Node's built-in fetch (undici) sends
COMPAT_HEADER: Final = "X-Telepty-Compat"
NODE_CAPABILITIES: Final = ("sessions", "wrapped-sessions", "singleton-daemon", "handoff-inbox",
                            "deliberation-threads")

# healthStatus values the Node CLI knows, and ours for a wrapper that is away. The Node
# CLI's `clean` deletes every session whose healthStatus is STALE or DISCONNECTED; a
# wrapped session whose wrapper is away is RECONNECTING here, so it survives that, just
# as our own `telepty clean` never removes a disconnected session.
CONNECTED: Final = "CONNECTED"
STALE: Final = "STALE"
RECONNECTING: Final = "RECONNECTING"


def speaks_node(request: web.Request) -> bool:
    """Whether the caller reads the Node.js daemon's answers (see the module docstring)."""
    if request.headers.get(COMPAT_HEADER, "").strip().lower() == "node":
        return True
    return request.headers.get("User-Agent", "").strip() == NODE_USER_AGENT


def health_of(session: Session, linked: bool) -> tuple[str, str]:
    """``(healthStatus, healthReason)`` in the Node.js vocabulary.

    ``linked``: a wrapped session's wrapper is connected right now.
    """
    if session.state is SessionState.EXITED:
        reason = str(session.meta.get("exit_reason") or "exited").upper()
        return STALE, reason
    if session.type is SessionType.WRAPPED:
        if linked and session.state is SessionState.RUNNING:
            return CONNECTED, "OWNER_CONNECTED"
        return RECONNECTING, "OWNER_DISCONNECTED"
    if session.type is SessionType.PANE:
        return CONNECTED, "PANE_ALIVE"
    return CONNECTED, "PTY_RUNNING"


def semantic_of(session: Session) -> dict[str, Any] | None:
    """The session's last self-reported state (``telepty status-report``), as Node showed it."""
    report = session.meta.get(STATE_REPORT_META)
    if not isinstance(report, dict):
        return None
    return {k: report.get(k) for k in ("phase", "current_task", "blocker", "needs_input", "thread_id",
                                       "source", "seq")}


def _terminal(session: Session) -> str | None:
    if session.type is SessionType.SPAWNED:
        return "daemon-pty"
    if session.tmux_pane:
        return "tmux"
    return None


def node_fields(session: Session, *, linked: bool, idle_seconds: float | None) -> dict[str, Any]:
    """The fields the Node CLI reads from a session record, to go beside ours.

    ``list`` prints healthStatus, active_clients and createdAt; ``session info`` adds
    lastActivityAt, idleSeconds and the self-report; ``attach`` keeps a session only
    while ``active_clients`` says someone else is attached; ``clean`` acts on
    healthStatus.
    """
    status, reason = health_of(session, linked)
    report = session.meta.get(STATE_REPORT_META)
    return {
        "healthStatus": status,
        "healthReason": reason,
        "active_clients": session.clients,
        "createdAt": session.created_at,
        "lastActivityAt": session.last_activity_at,
        "idleSeconds": None if idle_seconds is None else int(idle_seconds),
        "ready": status == CONNECTED,
        "terminal": _terminal(session),
        "semantic": semantic_of(session),
        "lastStateReportAt": report.get("timestamp") if isinstance(report, dict) else None,
    }


def node_fanout_results(results: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Our per-target fan-out records as the Node CLI reads them: ids that were accepted,
    and ``{id, code, error}`` for those that failed."""
    successful: list[Any] = []
    failed: list[Any] = []
    for r in results:
        if r.get("status") in ("failed", "cancelled"):
            failed.append({"id": r.get("session_id") or r.get("target"), "code": r.get("reason"),
                           "error": r.get("detail")})
        else:
            successful.append(r.get("session_id") or r.get("target"))
    return {"successful": successful, "failed": failed}


# What ``explain`` reads from the screen, in the state names the Node.js CLI colours.
_AUTO_STATES: Final = {
    "idle": "idle",
    "composer-has-text": "idle",
    "busy": "running",
    "blocked": "waiting_input",
    "agent-exited": "exited",
}


def auto_state(explained: dict[str, Any] | None, *, why_not: str | None = None) -> dict[str, Any]:
    """``GET /api/sessions/{id}/state``'s ``auto`` block from an ``explain`` answer.

    ``why_not``: the reason the screen could not be read (then the state is unknown).
    """
    if explained is None:
        return {"state": "unknown", "confidence": 0.0, "detail": {"trigger": why_not or "no_screen"}}
    verdict = str(explained.get("verdict") or "unknown")
    state = _AUTO_STATES.get(verdict, "unknown")
    lines = [line for line in explained.get("lines") or [] if isinstance(line, str) and line.strip()]
    out: dict[str, Any] = {
        "state": state,
        "confidence": 0.9 if state != "unknown" else 0.0,
        "detail": {"trigger": verdict, "matched_line": explained.get("line"), "why": explained.get("why")},
        "last_output_preview": lines[-1] if lines else None,
    }
    idle_ms = (explained.get("output") or {}).get("idle_ms")
    if isinstance(idle_ms, int | float) and not isinstance(idle_ms, bool) and state == "idle":
        out["duration_ms"] = int(idle_ms)
        out["detail"]["silence_ms"] = int(idle_ms)
    return out
