"""Checking ``session_state_report`` events before they are logged, applying them after.

A self-report is a ``session_state_report`` bus event wherever it comes from: the
``POST /api/sessions/{id}/state`` route publishes one through the same ingest as
``POST /api/bus/publish``, and an orchestrator may publish one itself. Either way it is
checked before it is logged (a known session, a phase), logged, and then applied to the
session it names by one listener, so there is one way a report reaches a session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telepty.bus.envelope import SESSION_STATE_REPORT, first_given
from telepty.bus.hub import LoggedEvent
from telepty.clock import utc_now
from telepty.errors import BadRequest, ErrorCode, TeleptyError
from telepty.sessions.model import Session
from telepty.sessions.registry import SessionRegistry
from telepty.sessions.state_report import STATE_REPORT_META, parse_state_report

log = logging.getLogger("telepty.bus.state_reports")

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
            raise BadRequest(ErrorCode.MISSING_FIELD, "a session_state_report needs session_id "
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
