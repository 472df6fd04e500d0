"""A session's state in the Node.js telepty's terms: ``/api/sessions/{id}/state``.

``GET`` answers what the Node.js CLI's ``status`` prints: ``auto`` (what the daemon
reads from the screen, i.e. ``explain``, in that CLI's state names) and ``self_report``
(what the session last said about itself). ``POST`` is its ``status-report``.

A self-report is a ``session_state_report`` bus event wherever it comes from: the
``POST`` route publishes one through the same ingest as ``POST /api/bus/publish``
(checked and applied by ``telepty.bus.state_reports``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from telepty.api.body import json_response
from telepty.api.keys import BUS_INGEST, CONFIG, DELIVERIES, PROFILES, REGISTRY
from telepty.api.models import StateReport, read
from telepty.api.node_dialect import auto_state, semantic_of
from telepty.api.raw_keys import explain_session
from telepty.api.spec import NSTR, Route, answer, boolean, enum, integer, nullable, obj, path_id, string
from telepty.bus.envelope import SESSION_STATE_REPORT
from telepty.bus.state_reports import REPORT_FIELDS
from telepty.delivery.screen import read_screen
from telepty.errors import TeleptyError
from telepty.sessions.model import Session, SessionState
from telepty.sessions.state_report import STATE_REPORT_META

SCREEN_LINES = 40


async def _explained(app: web.Application, session: Session) -> dict[str, Any]:
    """``explain``, except that a session without a pid (the Node.js wrapper registers
    none) has no process tree to find its agent in: "agent-exited" says nothing there,
    so the screen alone is read, as the delivery engine does for such a session."""
    out = await explain_session(app[DELIVERIES], app[CONFIG], session, SCREEN_LINES)
    if out.get("verdict") == "agent-exited" and session.pid is None:
        out.update(read_screen(out.get("lines") or [], app[PROFILES].profile_for(session.agent)).to_public())
    return out


async def get_state(request: web.Request) -> web.Response:
    session = request.app[REGISTRY].resolve(request.match_info["id"])
    try:
        auto = auto_state(await _explained(request.app, session))
    except TeleptyError as exc:
        auto = auto_state(None, why_not=exc.code)
    report = session.meta.get(STATE_REPORT_META)
    return json_response({
        "session_id": session.id,
        "state": str(session.state),
        "auto": auto,
        "self_report": semantic_of(session),
        "last_state_report_at": report.get("timestamp") if isinstance(report, dict) else None,
    })


async def post_state(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    body = (await read(request, StateReport)).model_dump(exclude_none=True)
    session = registry.resolve(request.match_info["id"])
    source = body.get("source")  # the reporter; also the event's source
    event = {
        **{k: body[k] for k in REPORT_FIELDS if k in body},
        "kind": SESSION_STATE_REPORT,
        "source": source if source and source.strip() else "self_report",
        "target": session.id,
        "session_id": session.id,
    }
    receipt = await request.app[BUS_INGEST].accept(event, transport="http")
    current = registry.get(session.id) or session
    return json_response({
        "success": True,
        "session_id": session.id,
        "semantic": semantic_of(current),
        "seq": receipt.seq,
        "message_id": receipt.message_id,
    })


SID = path_id()

ROUTES = (
    Route("GET", "/api/sessions/{id}/state", get_state, "getSessionState",
          "What the session is doing, in the Node.js CLI's terms (status)", "sessions", params=(SID,),
          ok={200: answer(obj({
              "session_id": string(), "state": enum(SessionState),
              "auto": obj({"state": string(), "confidence": {"type": "number"}, "detail": {"type": "object"}},
                          ("state", "confidence", "detail")),
              "self_report": nullable({"type": "object"}), "last_state_report_at": NSTR,
          }, ("session_id", "auto", "self_report")), "what the screen shows, and what it reported")},
          errors={404: "session_not_found"}),
    Route("POST", "/api/sessions/{id}/state", post_state, "reportSessionState",
          "The session says what it is doing (the Node.js CLI's status-report; published as a "
          "session_state_report event)", "sessions", params=(SID,), body=StateReport,
          ok={200: answer(obj({"success": boolean(const=True), "session_id": string(),
                               "semantic": nullable({"type": "object"}), "seq": integer(),
                               "message_id": string()}, ("success", "session_id", "seq")),
                          "logged and applied")},
          errors={400: "missing_field / invalid_field", 404: "session_not_found"}),
)
