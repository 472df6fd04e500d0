"""When each served pane last printed, as it happens: tmux control mode's ``%output``.

The quiet guard used to compare two captures ``quiet_ms`` apart, so every prompt paid
the whole window, even into a pane that had printed nothing for minutes. tmux already
tells a control-mode client about every byte a pane prints (``%output %ID …``), so one
read-only control client per tmux *session* holding a served pane keeps an
``OutputActivity`` per pane, and the guard becomes a lookup.

Facts this relies on (tmux(1) "CONTROL MODE", checked on 3.3a):

- a control client gets ``%output`` for every pane of every window linked to the
  session it is attached to (whichever window is current), and nothing for other
  sessions: hence one watcher per session;
- it is attached with ``-f ignore-size,read-only``: it never changes a window's size
  and cannot type; it sends no commands at all (its stdin stays open, since EOF would
  detach it);
- ``#{window_activity}`` (whole seconds) is when any pane of a window last printed:
  before a watcher has seen anything, ``window_activity + 1`` bounds a pane's last
  output from above, so an idle pane is known to be idle at once.

The command client in ``telepty.tmux.control`` stays ``no-output``: pane output must
never queue in front of the answers the delivery path waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from telepty.activity import OutputActivity
from telepty.clock import monotonic
from telepty.tmux.control import kill_process

log = logging.getLogger("telepty.tmux")

_STREAM_LIMIT = 64 * 1024 * 1024  # one %output line holds a whole read of pane output
_OUTPUT_PREFIXES = (b"%output ", b"%extended-output ")


class _SessionWatcher:
    """One read-only control client attached to one tmux session."""

    def __init__(self, argv: Sequence[str], on_output: Callable[[str, int], None]) -> None:
        self._argv = list(argv)
        self._on_output = on_output
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self.attached = asyncio.Event()

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, timeout_s: float) -> bool:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                limit=_STREAM_LIMIT,
                start_new_session=True,  # the terminal's Ctrl-C is for the daemon, not for it
            )
        except OSError as e:
            log.debug("cannot start a tmux output watcher: %s", e)
            return False
        self._task = asyncio.create_task(self._read(self._proc), name="telepty-tmux-output-watch")
        try:
            async with asyncio.timeout(timeout_s):
                await self.attached.wait()
        except TimeoutError:
            await self.close()
            return False
        return self.alive

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        on_output = self._on_output
        try:
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                if line.startswith(_OUTPUT_PREFIXES):
                    # "%output %3 data" / "%extended-output %3 age … : data": only who and
                    # how much matter; the text itself is read from the screen when needed.
                    end = line.find(b" ", line.find(b" ") + 1)
                    pane = line[line.find(b" ") + 1: end if end > 0 else len(line)].decode("ascii", "replace")
                    on_output(pane.strip(), max(1, len(line) - max(end, 0) - 1))
                elif line.startswith((b"%end ", b"%error ")) and not self.attached.is_set():
                    if line.startswith(b"%end "):
                        self.attached.set()
                    else:
                        break
                elif line.startswith(b"%exit"):
                    break
        except (ValueError, asyncio.LimitOverrunError, OSError) as e:
            log.debug("tmux output watcher stream broken: %s", e)
        finally:
            kill_process(proc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 2.0)

    async def close(self) -> None:
        proc, task = self._proc, self._task
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.close()
            kill_process(proc)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


class PaneOutputWatch:
    """Per tmux server: an ``OutputActivity`` for each pane we were asked to watch."""

    def __init__(self, tmux_bin: str, socket_args: Sequence[str], *, start_timeout_s: float = 5.0) -> None:
        self._tmux_bin = tmux_bin
        self._socket_args = list(socket_args)
        self._start_timeout_s = start_timeout_s
        self._watchers: dict[str, _SessionWatcher] = {}  # tmux session id ($N) → watcher
        self._starting: dict[str, asyncio.Task[bool]] = {}
        self._panes: dict[str, OutputActivity] = {}
        self._pane_session: dict[str, str] = {}
        self._closed = False

    def activity(self, pane_id: str) -> OutputActivity | None:
        """The pane's activity while a watcher covers it; None when it cannot be told."""
        act = self._panes.get(pane_id)
        if act is None:
            return None
        watcher = self._watchers.get(self._pane_session.get(pane_id, ""))
        return act if watcher is not None and watcher.alive else None

    async def watch(self, pane_id: str, session_id: str, window_activity: int) -> OutputActivity | None:
        """Make sure the pane's session has a watcher; returns the pane's activity.

        ``window_activity`` (tmux's whole seconds) seeds a pane seen for the first time,
        or whose watcher had died (output it printed meanwhile was not seen).
        """
        if self._closed or not session_id.startswith("$"):
            return None
        watcher = self._watchers.get(session_id)
        fresh = watcher is None or not watcher.alive
        if fresh:
            ok = await self._start(session_id)
            if not ok:
                return None
        act = self._panes.get(pane_id)
        if act is None or fresh or self._pane_session.get(pane_id) != session_id:
            act = OutputActivity(last_output_at=_seed(window_activity))
            self._panes[pane_id] = act
            self._pane_session[pane_id] = session_id
        return act

    def forget(self, pane_id: str) -> None:
        self._panes.pop(pane_id, None)
        self._pane_session.pop(pane_id, None)

    async def _start(self, session_id: str) -> bool:
        task = self._starting.get(session_id)
        if task is None:
            task = asyncio.create_task(self._start_one(session_id))
            self._starting[session_id] = task
            task.add_done_callback(lambda _t: self._starting.pop(session_id, None))
        return await asyncio.shield(task)

    async def _start_one(self, session_id: str) -> bool:
        old = self._watchers.pop(session_id, None)
        if old is not None:
            await old.close()
        argv = [self._tmux_bin, *self._socket_args, "-C", "attach-session",
                "-f", "ignore-size,read-only", "-t", session_id]
        watcher = _SessionWatcher(argv, self._on_output)
        if not await watcher.start(self._start_timeout_s):
            log.info("no output watcher for tmux session %s; the quiet guard watches the screen", session_id)
            return False
        self._watchers[session_id] = watcher
        log.debug("watching pane output of tmux session %s", session_id)
        return True

    def _on_output(self, pane_id: str, n: int) -> None:
        act = self._panes.get(pane_id)
        if act is not None:
            act.note_output(n)

    async def close(self) -> None:
        self._closed = True
        watchers = list(self._watchers.values())
        self._watchers.clear()
        for w in watchers:
            await w.close()


def _seed(window_activity: int) -> float:
    """A monotonic time no earlier than the pane's last output, from whole wall seconds."""
    now_wall, now = time.time(), monotonic()
    if window_activity <= 0:
        return now  # unknown: assume it just printed
    return min(now, now - (now_wall - (window_activity + 1)))
