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
        """Does the session's pane still exist (and hold a live process)?"""
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
        return info is not None and not info.pane_dead

    async def close(self) -> None:
        for srv in self._servers.values():
            with contextlib.suppress(Exception):
                await srv.close()
        self._servers.clear()
