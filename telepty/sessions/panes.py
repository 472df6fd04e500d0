"""Reaching the tmux server a session's pane lives on, one client per server.

A pane id like ``%3`` only means something on one tmux server, so every pane
session carries its socket; sessions on the same server share one ``TmuxServer``
(and so one persistent control-mode connection).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from telepty.clock import monotonic
from telepty.sessions.model import Session
from telepty.tmux import TmuxError, TmuxServer
from telepty.tmux.server import PaneInfo

log = logging.getLogger("telepty.panes")


# A tmux server restarted on the same socket numbers its panes from %0 again, so a pane
# id alone can come to name somebody else's terminal. The pid of the process the pane
# was started with is recorded at registration; a pane that answers with another pid
# is not the session's, and nothing is pasted into it.
PANE_PID_META = "tmux_pane_pid"


def same_pane(session: Session, pane_pid: int) -> bool:
    want = session.meta.get(PANE_PID_META)
    return not isinstance(want, int) or want == pane_pid


# How often a pane's output may move its session's idle clock (each %output would).
TOUCH_INTERVAL_S = 0.5


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

    async def pane_alive(self, session: Session, on_output: Callable[[str], None] | None = None) -> bool:
        """Does the session's pane still exist (and hold a live process), and is it still
        the pane the session registered (see ``PANE_PID_META``)? A live pane's output is
        watched from then on, and told to ``on_output`` (the registry's idle clock) at
        most every TOUCH_INTERVAL_S."""
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
        await self._watch(srv, info, session.id, on_output)
        return True

    async def _watch(self, srv: TmuxServer, info: PaneInfo, session_id: str,
                     on_output: Callable[[str], None] | None) -> None:
        """Keep the pane's output watched (the quiet guard's clock), and let its output
        count as the session's activity (``list``, ``session.idle``)."""
        try:
            activity = await srv.watch_output(info)
        except TmuxError as exc:
            log.debug("cannot watch pane %s: %s", info.pane_id, exc)
            return
        if activity is not None and activity.listener is None and on_output is not None:
            activity.listener = _Toucher(on_output, session_id)

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


class _Toucher:
    """Tells ``on_output`` about a session's output, at most every TOUCH_INTERVAL_S."""

    __slots__ = ("_last", "_on_output", "_session_id")

    def __init__(self, on_output: Callable[[str], None], session_id: str) -> None:
        self._on_output = on_output
        self._session_id = session_id
        self._last = float("-inf")

    def __call__(self) -> None:
        now = monotonic()
        if now - self._last >= TOUCH_INTERVAL_S:
            self._last = now
            self._on_output(self._session_id)
