"""A session's state in the Node.js telepty's terms: ``/api/sessions/{id}/state``.

``GET`` answers what the Node.js CLI's ``status`` prints: ``auto`` (what the daemon
reads from the screen, i.e. ``explain``, in that CLI's state names) and ``self_report``
(what the session last said about itself). ``POST`` is its ``status-report``.

A self-report is a ``session_state_report`` bus event wherever it comes from: the
``POST`` route publishes one through the same ingest as ``POST /api/bus/publish``, and
an orchestrator may publish one itself. Either way it is checked before it is logged
(a known session, a phase), logged, and then applied to the session it names by one
listener, so there is one way a report reaches a session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from telepty.api.body import json_object, json_response, opt
from telepty.api.bus import BUS_INGEST
from telepty.api.keys import SERVICES
from telepty.api.node_dialect import STATE_REPORT_META, auto_state, semantic_of
from telepty.api.raw_keys import explain_session
from telepty.bus.envelope import SESSION_STATE_REPORT, first_given
from telepty.bus.hub import LoggedEvent
from telepty.clock import utc_now
from telepty.delivery.screen import read_screen
from telepty.errors import BadRequest, TeleptyError
from telepty.sessions.model import Session
from telepty.sessions.registry import SessionRegistry
from telepty.sessions.state_report import parse_state_report

log = logging.getLogger("telepty.api.session_state")

SCREEN_LINES = 40
REPORT_FIELDS = ("phase", "task_phase", "current_task", "task", "blocker", "needs_input", "thread_id",
                 "source", "seq")


def _report_fields(env: dict[str, Any]) -> dict[str, Any]:
    """The report's fields: flat, as the Node.js CLI sent them, or inside ``payload``.
    A flat ``seq`` is the log's; the report's own arrived as ``report_seq``."""
    payload = env.get("payload")
    fields = {k: payload[k] for k in REPORT_FIELDS if isinstance(payload, dict) and k in payload}
    fields.update({k: env[k] for k in REPORT_FIELDS if k != "seq" and env.get(k) is not None})
    if env.get("report_seq") is not None:
        fields["seq"] = env["report_seq"]
    return fields


def _previous_seq(session: Session) -> int | None:
    report = session.meta.get(STATE_REPORT_META)
    seq = report.get("seq") if isinstance(report, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


class StateReports:
    """Checks ``session_state_report`` events before they are logged, applies them after."""

    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry
        self._saving: set[asyncio.Task[None]] = set()

    def _session(self, env: dict[str, Any]) -> Session:
        name = first_given(env, "session_id", "target")
        if not isinstance(name, str) or not name:
            raise BadRequest("missing_field", "a session_state_report needs session_id "
                             "(the session it is about)")
        return self.registry.resolve(name)

    def check(self, env: dict[str, Any]) -> None:
        """Raise (nothing is logged) for a report on no known session, or a malformed one."""
        session = self._session(env)
        parse_state_report(_report_fields(env), previous_seq=_previous_seq(session), now=utc_now())

    def on_event(self, event: LoggedEvent) -> None:
        if event.kind != SESSION_STATE_REPORT:
            return
        try:
            session = self._session(event)
            ts = event.get("ts")
            report = parse_state_report(_report_fields(event), previous_seq=_previous_seq(session),
                                        now=ts if isinstance(ts, str) else utc_now())
        except TeleptyError as exc:  # the session went away since the check
            log.info("state report seq=%s not applied: %s", event.seq, exc.detail)
            return
        session.meta = {**session.meta, STATE_REPORT_META: report}
        task = asyncio.ensure_future(self.registry.update(session))
        self._saving.add(task)
        task.add_done_callback(self._saved)

    def _saved(self, task: asyncio.Task[None]) -> None:
        self._saving.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not store a state report", exc_info=task.exception())


async def _explained(svc: Any, session: Session) -> dict[str, Any]:
    """``explain``, except that a session without a pid (the Node.js wrapper registers
    none) has no process tree to find its agent in: "agent-exited" says nothing there,
    so the screen alone is read, as the delivery engine does for such a session."""
    out = await explain_session(svc, session, SCREEN_LINES)
    if out.get("verdict") == "agent-exited" and session.pid is None:
        out.update(read_screen(out.get("lines") or [], svc.profiles.profile_for(session.agent)).to_public())
    return out


async def get_state(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    session = svc.registry.resolve(request.match_info["id"])
    try:
        auto = auto_state(await _explained(svc, session))
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
    svc = request.app[SERVICES]
    body = await json_object(request)
    session = svc.registry.resolve(request.match_info["id"])
    source = opt(body, "source", str)  # the reporter; also the event's source
    event = {
        **{k: body[k] for k in REPORT_FIELDS if k in body and body[k] is not None},
        "kind": SESSION_STATE_REPORT,
        "source": source if source and source.strip() else "self_report",
        "target": session.id,
        "session_id": session.id,
    }
    receipt = await request.app[BUS_INGEST].accept(event, transport="http")
    current = svc.registry.get(session.id) or session
    return json_response({
        "success": True,
        "session_id": session.id,
        "semantic": semantic_of(current),
        "seq": receipt.seq,
        "message_id": receipt.message_id,
    })


def add_routes(app: web.Application) -> None:
    """After ``telepty.api.bus.install`` (the ingest must exist)."""
    svc = app[SERVICES]
    reports = StateReports(svc.registry)
    app[BUS_INGEST].checks[SESSION_STATE_REPORT] = reports.check
    svc.bus.add_listener(reports.on_event)
    app.router.add_get("/api/sessions/{id}/state", get_state)
    app.router.add_post("/api/sessions/{id}/state", post_state)
