"""One tmux server, and every tmux command telepty runs against it.

``TmuxServer.run`` is the single choke point: nothing else in telepty starts tmux.
Commands never pass through a shell (argument vectors only), prompt bytes reach tmux
only through ``load-buffer`` (from a private file over the control client, or a forked
client's stdin; never argv), and the event loop never waits on a blocking call.
Commands whose arguments are all fixed tokens (pane ids, generated buffer names, key
names, our own formats, our buffer files' paths) go over a persistent control-mode
client when one is available, and fork a tmux client otherwise.

tmux behaviour this module is written around (tmux 3.3a, checked by the tests):

- ``paste-buffer`` aimed at a dead pane (``remain-on-exit``) crashes the whole tmux
  server ("server exited unexpectedly"), taking every other agent with it. The paste
  is therefore wrapped in ``if-shell -F '#{pane_dead}'`` so the check and the paste are
  one step inside the server, with no window for the pane to die in between;
- ``display-message -t %N`` does not fail for a missing pane: it silently reports on
  some other pane, so answers are checked against the pane id that was asked for;
- ``send-keys`` to a dead pane "succeeds";
- a pane in copy/view mode lets a paste through to the program but takes the submit
  key itself, so the mode is left before pasting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from telepty.activity import OutputActivity
from telepty.tmux.buffer_files import BufferFiles
from telepty.tmux.control import (
    ControlClient,
    ControlCommandError,
    ControlUnavailable,
    kill_process,
)
from telepty.tmux.env import parse_tmux_env
from telepty.tmux.errors import (
    PANE_DEAD,
    TMUX_CMD_FAILED,
    TMUX_UNAVAILABLE,
    TmuxError,
    classify,
)
from telepty.tmux.output_watch import PaneOutputWatch

log = logging.getLogger("telepty.tmux")

PANE_ID_RE = re.compile(r"^%\d+$")
# Conservative: named keys (Enter, Escape, BSpace, F5, Up), modified keys (C-c, M-Enter,
# C-S-Left) and single letters/digits. Anything else is sent by forking, where argv
# needs no quoting at all.
KEY_NAME_RE = re.compile(r"^(?:[CMS]-){0,3}[A-Za-z0-9]{1,16}$")
BUFFER_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

DEFAULT_TIMEOUT_S = 5.0
_SEP = "\x1f"  # unit separator: cannot be typed into a session name by accident
_DEAD_MARK = "telepty-pane-is-dead"

_PANE_FIELDS = (
    "pane_id",
    "session_name",
    "window_index",
    "pane_index",
    "pane_pid",
    "pane_current_command",
    "pane_in_mode",
    "pane_dead",
    "pane_width",
    "pane_height",
    "pane_tty",
    "session_id",
    "window_activity",
    "pane_current_path",  # last: a path may contain anything, even the separator
)
PANE_FORMAT = _SEP.join(f"#{{{f}}}" for f in _PANE_FIELDS)


@dataclass(frozen=True, slots=True)
class PaneInfo:
    """One pane as tmux reports it (field names are tmux's format names)."""

    pane_id: str
    session_name: str
    window_index: int
    pane_index: int
    pane_pid: int
    pane_current_command: str
    pane_in_mode: bool
    pane_dead: bool
    pane_width: int
    pane_height: int
    pane_tty: str
    session_id: str  # "$N"; one of the sessions the pane's window is linked into
    window_activity: int  # wall-clock seconds of the window's last output (any pane)
    pane_current_path: str


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def parse_pane_line(line: str) -> PaneInfo | None:
    parts = line.split(_SEP, len(_PANE_FIELDS) - 1)
    if len(parts) != len(_PANE_FIELDS) or not PANE_ID_RE.match(parts[0]):
        return None
    return PaneInfo(
        pane_id=parts[0],
        session_name=parts[1],
        window_index=_int(parts[2]),
        pane_index=_int(parts[3]),
        pane_pid=_int(parts[4]),
        pane_current_command=parts[5],
        pane_in_mode=parts[6] not in ("", "0"),
        pane_dead=parts[7] not in ("", "0"),
        pane_width=_int(parts[8]),
        pane_height=_int(parts[9]),
        pane_tty=parts[10],
        session_id=parts[11],
        window_activity=_int(parts[12]),
        pane_current_path=parts[13],
    )


def _escape_trailing_semicolon(arg: str) -> str:
    """Keep a trailing ``;`` literal in a forked command's argv.

    tmux reads an argument ending in ``;`` as "end of this command" and drops the ``;``
    (so ``send-keys -l 'ok;'`` would type ``ok``); ``\\;`` at the end stands for ``;``.
    """
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


def _check_pane_id(pane_id: str) -> None:
    # Registered panes are always ids (%N). Names like "sess:1.0" are ambiguous, drift
    # as windows move, and make tmux fall back to some other pane instead of failing.
    if not PANE_ID_RE.match(pane_id):
        raise ValueError(f"not a tmux pane id (expected %N): {pane_id!r}")


def _check_buffer_name(name: str) -> None:
    if not BUFFER_NAME_RE.match(name):
        raise ValueError(f"unsafe tmux buffer name: {name!r}")


class TmuxServer:
    """Address one tmux server (``-L name``, ``-S path`` or the default) and drive it."""

    def __init__(
        self,
        socket_name: str | None = None,
        socket_path: str | None = None,
        tmux_bin: str = "tmux",
        *,
        use_control: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if socket_name and socket_path:
            raise ValueError("give socket_name or socket_path, not both")
        self.socket_name = socket_name or None
        self.socket_path = socket_path or None
        self.tmux_bin = tmux_bin
        self.timeout_s = timeout_s
        if self.socket_name:
            self.socket_args: tuple[str, ...] = ("-L", self.socket_name)
        elif self.socket_path:
            self.socket_args = ("-S", self.socket_path)
        else:
            self.socket_args = ()
        self.control: ControlClient | None = (
            ControlClient(tmux_bin, self.socket_args, start_timeout_s=timeout_s)
            if use_control
            else None
        )
        # How commands actually went; `telepty explain` and the tests read it.
        self.transport_counts: Counter[str] = Counter()
        self._buffer_files = BufferFiles()
        # When served panes last printed; only with control mode (it is a control client).
        self.output_watch: PaneOutputWatch | None = (
            PaneOutputWatch(tmux_bin, self.socket_args, start_timeout_s=timeout_s) if use_control else None
        )

    @classmethod
    def from_tmux_env(cls, value: str | None = None, **kwargs: object) -> TmuxServer:
        """The server a ``$TMUX`` value points at (``socket_path,server_pid,session``)."""
        path = parse_tmux_env(os.environ.get("TMUX", "") if value is None else value)
        if not path:
            raise ValueError("TMUX is empty: not inside tmux")
        return cls(socket_path=path, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        where = " ".join(self.socket_args) or "default"
        return f"TmuxServer({where})"

    async def __aenter__(self) -> TmuxServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self.control is not None:
            await self.control.close()
        if self.output_watch is not None:
            await self.output_watch.close()
        self._buffer_files.close()

    def available(self) -> bool:
        """Is the tmux binary there at all? (A path lookup, cheap enough for the loop.)"""
        return shutil.which(self.tmux_bin) is not None

    # -- the choke point -------------------------------------------------------------

    async def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        stage: str = "tmux",
        timeout_s: float | None = None,
        retry_safe: bool = False,
        control: bool = True,
    ) -> str:
        """Run one tmux command and return its stdout (one trailing newline removed).

        ``retry_safe`` marks commands that may run twice without harm (captures,
        queries): only those are repeated by forking when the control client dies
        after the command was sent. ``control=False`` forces a fork.
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if control and stdin is None and self.control is not None:
            try:
                out = await self.control.command(args, timeout_s=timeout)
            except ControlCommandError as e:
                self.transport_counts["control"] += 1
                raise classify(stage, str(e), 1) from None
            except ControlUnavailable as e:
                if e.sent and not retry_safe:
                    raise await self._ambiguous_failure(stage, args[0], str(e)) from None
                log.debug("tmux %s: control client unavailable (%s); forking", args[0], e)
            else:
                self.transport_counts["control"] += 1
                return out
        return await self._fork(args, stdin, stage, timeout)

    async def _fork(
        self, args: Sequence[str], stdin: bytes | None, stage: str, timeout_s: float
    ) -> str:
        argv = [self.tmux_bin, *self.socket_args, *(_escape_trailing_semicolon(a) for a in args)]
        self.transport_counts["fork"] += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:  # FileNotFoundError, PermissionError, ENOEXEC, …
            raise TmuxError(
                TMUX_UNAVAILABLE, f"cannot run {self.tmux_bin!r}: {e.strerror or e}", stage=stage
            ) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout_s)
        except BaseException as e:
            kill_process(proc)
            with contextlib.suppress(Exception):
                await proc.wait()
            if isinstance(e, TimeoutError):
                raise TmuxError(
                    TMUX_CMD_FAILED, f"tmux {args[0]} timed out after {timeout_s}s", stage=stage
                ) from None
            raise
        if proc.returncode != 0:
            raise classify(stage, err.decode("utf-8", "replace"), proc.returncode)
        text = out.decode("utf-8", "replace")
        return text[:-1] if text.endswith("\n") else text

    async def _ambiguous_failure(self, stage: str, command: str, reason: str) -> TmuxError:
        """Explain a command that was sent but whose outcome is unknown.

        It is not repeated (a second paste or Enter would deliver twice). If the server
        itself is gone, that is the real answer and is reported as such.
        """
        try:
            await self._fork(("list-sessions", "-F", "#{session_id}"), None, stage, self.timeout_s)
        except TmuxError as e:
            if e.code == PANE_DEAD or e.code == TMUX_UNAVAILABLE:
                return e
        return TmuxError(
            TMUX_CMD_FAILED,
            f"tmux {command}: control connection lost after sending ({reason}); "
            "not repeated, outcome unknown",
            stage=stage,
        )

    # -- queries ---------------------------------------------------------------------

    async def list_panes(self) -> list[PaneInfo]:
        """Every pane in every session; [] when no server is running."""
        try:
            out = await self.run("list-panes", "-a", "-F", PANE_FORMAT, stage="list_panes",
                                 retry_safe=True)
        except TmuxError as e:
            if e.server_gone:
                return []
            raise
        panes = []
        for line in out.split("\n"):
            if not line:
                continue
            info = parse_pane_line(line)
            if info is None:
                log.debug("unparseable list-panes line: %r", line)
                continue
            panes.append(info)
        return panes

    async def pane_info(self, pane_id: str) -> PaneInfo | None:
        """The pane's current state, or None when it (or its whole server) is gone."""
        try:
            return await self._pane_info(pane_id, "pane_info")
        except TmuxError as e:
            if e.code == PANE_DEAD:
                return None
            raise

    async def _pane_info(self, pane_id: str, stage: str) -> PaneInfo:
        _check_pane_id(pane_id)
        out = await self.run(
            "display-message", "-p", "-t", pane_id, PANE_FORMAT, stage=stage, retry_safe=True
        )
        info = parse_pane_line(out.split("\n", 1)[0]) if out else None
        if info is None or info.pane_id != pane_id:
            # display-message quietly answers for another pane when ours is gone.
            raise TmuxError(PANE_DEAD, f"can't find pane: {pane_id}", stage=stage)
        return info

    async def watch_output(self, info: PaneInfo) -> OutputActivity | None:
        """The pane's output activity, watching it from now on; None when tmux cannot
        tell us (no control mode): the caller then judges quietness from the screen."""
        if self.output_watch is None or info.pane_dead:
            return None
        return await self.output_watch.watch(info.pane_id, info.session_id, info.window_activity)

    async def capture_tail(self, pane_id: str, lines: int = 8, *, stage: str = "capture") -> str:
        """The last ``lines`` non-blank lines of the visible screen, wrapped lines joined.

        Trailing whitespace and trailing blank rows are dropped so that two captures of
        an unchanged screen compare equal whatever the cursor is doing.
        """
        _check_pane_id(pane_id)
        out = await self.run("capture-pane", "-p", "-J", "-t", pane_id, stage=stage,
                             retry_safe=True)
        rows = [row.rstrip() for row in out.split("\n")]
        while rows and not rows[-1]:
            rows.pop()
        if lines > 0:
            rows = rows[-lines:]
        return "\n".join(rows)

    async def capture_to_cursor(self, pane_id: str, *, stage: str = "capture") -> list[str]:
        """The visible rows from the top down to the cursor's, right-stripped.

        For a line-oriented program (a shell, ``cat``, a REPL) the cursor's row is its
        input line: a blank one there means an empty input, whatever the rows above show.
        """
        _check_pane_id(pane_id)
        where = await self.run("display-message", "-p", "-t", pane_id, "#{cursor_y}", stage=stage,
                               retry_safe=True)
        out = await self.run("capture-pane", "-p", "-t", pane_id, stage=stage, retry_safe=True)
        rows = [row.rstrip() for row in out.split("\n")]
        return rows[: _int(where.strip()) + 1]

    # -- buffers and keys --------------------------------------------------------------

    async def load_buffer(self, name: str, data: bytes, *, stage: str = "load_buffer") -> None:
        """Put ``data`` into the named buffer, never through argv.

        With a control client: from a private file over it (no fork; see
        ``telepty.tmux.buffer_files``). Without one, or if that fails for any reason
        short of the server being gone: through a forked client's stdin. Loading a
        buffer twice is harmless, so the fallback cannot duplicate anything.
        """
        _check_buffer_name(name)
        if self.control is not None:
            try:
                with self._buffer_files.holding(bytes(data)) as path:
                    await self.run("load-buffer", "-b", name, path, stage=stage, retry_safe=True)
                return
            except OSError as e:
                log.debug("load-buffer from a file: %s; using stdin", e)
            except TmuxError as e:
                if e.code != TMUX_CMD_FAILED:
                    raise
                log.debug("load-buffer from a file failed (%s); using stdin", e.detail)
        await self.run("load-buffer", "-b", name, "-", stdin=bytes(data), stage=stage)

    async def paste_buffer(self, name: str, pane_id: str, *, stage: str = "paste_buffer") -> None:
        """Paste and delete the buffer; tmux adds bracketed-paste markers if the app asked.

        Refuses (pane_dead) if the pane is dead, in the same server-side step as the
        paste: pasting into a dead pane crashes tmux 3.3a.
        """
        _check_buffer_name(name)
        _check_pane_id(pane_id)
        paste = f"paste-buffer -p -d -b {name} -t {pane_id}"
        out = await self.run(
            "if-shell", "-F", "-t", pane_id, "#{pane_dead}",
            f"display-message -p {_DEAD_MARK}", paste,
            stage=stage,
        )
        if _DEAD_MARK in out:
            raise TmuxError(PANE_DEAD, f"pane {pane_id} is dead (remain-on-exit)", stage=stage)

    async def delete_buffer(self, name: str) -> None:
        """Best effort: a leftover buffer is harmless, a failure here must not mask another."""
        try:
            await self.run("delete-buffer", "-b", name, stage="delete_buffer", retry_safe=True)
        except (TmuxError, ValueError) as e:
            log.debug("delete-buffer %s: %s", name, e)

    async def paste_bytes(self, pane_id: str, data: bytes) -> None:
        """Paste ``data`` into the pane, through a buffer of its own (never argv), and
        nothing else: no submit key. The buffer is gone afterwards, whatever happened."""
        name = f"telepty-{secrets.token_hex(8)}"
        try:
            await self.load_buffer(name, data)
            await self.paste_buffer(name, pane_id)
        except BaseException:
            await self.delete_buffer(name)
            raise

    async def send_keys(
        self, pane_id: str, *keys: str, literal: bool = False, stage: str = "send_keys"
    ) -> None:
        """Send tmux key names (``Enter``, ``Escape``, ``C-c``, ``Down``) or, with
        ``literal``, the characters themselves, unbracketed: for permission menus a
        paste would cancel."""
        _check_pane_id(pane_id)
        if not keys:
            return
        use_control = not literal and all(KEY_NAME_RE.match(k) for k in keys)
        flags = ("-l",) if literal else ()
        await self.run(
            "send-keys", "-t", pane_id, *flags, "--", *keys, stage=stage, control=use_control
        )

    async def exit_mode(self, pane_id: str, *, stage: str = "exit_mode") -> None:
        """Leave copy/view (or any other) mode; a pane that is in no mode is fine."""
        _check_pane_id(pane_id)
        try:
            await self.run("copy-mode", "-q", "-t", pane_id, stage=stage, retry_safe=True)
            return
        except TmuxError as e:
            if e.code != TMUX_CMD_FAILED:
                raise
            log.debug("copy-mode -q failed (%s); trying send-keys -X cancel", e.detail)
        try:
            await self.run("send-keys", "-X", "-t", pane_id, "cancel", stage=stage,
                           retry_safe=True)
        except TmuxError as e:
            if e.code != TMUX_CMD_FAILED:
                raise
            log.debug("send-keys -X cancel: %s", e.detail)  # "not in a mode"
