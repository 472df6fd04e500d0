"""Reaching the tmux server a session's pane lives on, one client per server.

A pane id like ``%3`` only means something on one tmux server, so every pane
session carries its socket; sessions on the same server share one ``TmuxServer``
(and so one persistent control-mode connection).
"""

from __future__ import annotations

import contextlib
import logging

from telepty.sessions.model import Session
from telepty.tmux import TmuxError, TmuxServer

log = logging.getLogger("telepty.panes")


# A tmux server restarted on the same socket numbers its panes from %0 again, so a pane
# id alone can come to name somebody else's terminal. The pid of the process the pane
# was started with is recorded at registration; a pane that answers with another pid
# is not the session's, and nothing is pasted into it.
PANE_PID_META = "tmux_pane_pid"


def same_pane(session: Session, pane_pid: int) -> bool:
    want = session.meta.get(PANE_PID_META)
    return not isinstance(want, int) or want == pane_pid


class TmuxPool:
    def __init__(self, tmux_bin: str = "tmux") -> None:
        self.tmux_bin = tmux_bin
        self._servers: dict[str | None, TmuxServer] = {}

    def server(self, socket_path: str | None) -> TmuxServer:
        key = socket_path or None
        srv = self._servers.get(key)
        if srv is None:
            srv = TmuxServer(socket_path=key, tmux_bin=self.tmux_bin)
            self._servers[key] = srv
        return srv

    def for_session(self, session: Session) -> TmuxServer | None:
        if not session.tmux_pane:
            return None
        return self.server(session.tmux_socket)

    async def pane_alive(self, session: Session) -> bool:
        """Does the session's pane still exist (and hold a live process), and is it still
        the pane the session registered (see ``PANE_PID_META``)?"""
        srv = self.for_session(session)
        if srv is None:
            return False
        try:
            info = await srv.pane_info(session.tmux_pane or "")
        except TmuxError as exc:
            # Only tmux saying the pane (or its server) is gone proves death; tmux we
            # cannot run, or a failed command, says nothing about the pane, and
            # marking it exited would be for good.
            log.debug("pane probe inconclusive session=%s code=%s", session.id, exc.code)
            return True
        if info is None or info.pane_dead:
            return False
        if not same_pane(session, info.pane_pid):
            log.info("pane %s of session %s now runs pid %s, not the registered %s: not ours",
                     session.tmux_pane, session.id, info.pane_pid, session.meta.get(PANE_PID_META))
            return False
        return True

    async def pane_pid(self, socket_path: str | None, pane_id: str) -> int | None:
        """The pid of the process a pane was started with, or None when it cannot be told."""
        try:
            info = await self.server(socket_path).pane_info(pane_id)
        except (TmuxError, ValueError):
            return None
        return info.pane_pid if info is not None and not info.pane_dead else None

    async def close(self) -> None:
        for srv in self._servers.values():
            with contextlib.suppress(Exception):
                await srv.close()
        self._servers.clear()
