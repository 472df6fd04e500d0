"""The session registry: ids, aliases, liveness, and persistence of session metadata.

Lookups (``resolve``) accept an id or an alias; destructive operations
(``remove``, ``rename``) take exact ids only, because alias resolution once
killed a sibling session in the Node.js telepty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from telepty.clock import from_iso, to_iso, utc_now
from telepty.errors import BadRequest, Conflict, ErrorCode, NotFound
from telepty.sessions.liveness import pid_alive
from telepty.sessions.model import Session, SessionState, SessionType, validate_session_id
from telepty.sessions.naming import default_session_id
from telepty.sessions.panes import PANE_PID_META
from telepty.store.sessions import SessionRepo

log = logging.getLogger("telepty.sessions")

Emit = Callable[..., Awaitable[int]]
# Is the session's pane alive? Its output, while watched, goes to the second argument
# (the registry's ``touch``: a pane's output is its session's activity).
PaneProbe = Callable[[Session, Callable[[str], None]], Awaitable[bool]]
# The pid of the process a pane (socket, pane id) runs now, or None when it cannot be told.
PaneOwner = Callable[[str | None, str], Awaitable[int | None]]
ReplacedHook = Callable[[Session], Awaitable[None]]
RenamedHook = Callable[[str, str], Awaitable[None]]  # (old id, new id)


@dataclass
class RegisterSpec:
    type: SessionType
    command: str = ""
    cwd: str = ""
    session_id: str | None = None
    pid: int | None = None
    tmux_pane: str | None = None
    tmux_socket: str | None = None
    agent: str = "other"
    meta: dict[str, Any] = field(default_factory=dict)


_EXIT_REASON_ON_RESTORE = {
    SessionType.SPAWNED: "daemon_stopped",
    SessionType.PANE: "pane_dead",
    SessionType.WRAPPED: "process_gone",
}


async def _no_emit(*_args: Any, **_kw: Any) -> int:
    return 0


class SessionRegistry:
    def __init__(
        self,
        repo: SessionRepo,
        *,
        emit: Emit = _no_emit,
        pane_probe: PaneProbe | None = None,
        pane_owner: PaneOwner | None = None,
    ) -> None:
        self.repo = repo
        self.emit = emit
        self.pane_probe = pane_probe
        self.pane_owner = pane_owner
        self._sessions: dict[str, Session] = {}
        self._lock = asyncio.Lock()
        # Called when a live session is displaced by ``replace``, so its owner
        # (a wrapper's socket, a spawned PTY) can be told and let go.
        self.on_replaced: list[ReplacedHook] = []
        self.on_removed: list[ReplacedHook] = []
        # Told the id of every session that becomes exited (synchronous, must not raise).
        self.on_exited: list[Callable[[str], None]] = []
        # Told after a rename, so whatever keys state by session id (terminals, tokens)
        # moves along with it.
        self.on_renamed: list[RenamedHook] = []

    # -- start-up ----------------------------------------------------------------

    async def load(self) -> list[Session]:
        """Restore persisted sessions, re-deciding each one's state.

        Nothing is dropped silently: a wrapped session waits ``disconnected`` for its
        wrapper; a spawned session's PTY died with the old daemon; dead pids and
        vanished panes become ``exited``.
        """
        restored = await self.repo.all()
        now = utc_now()
        changed: list[Session] = []
        for s in restored:
            before = s.state
            if s.state is not SessionState.EXITED:
                s.state = await self._restored_state(s)
            if s.state is not before:
                s.updated_at = now
                if s.state is SessionState.EXITED:
                    s.meta = dict(s.meta, exit_reason=_EXIT_REASON_ON_RESTORE[s.type])
                changed.append(s)
            self._sessions[s.id] = s
        await self.repo.upsert_many(changed)
        return restored

    async def _restored_state(self, s: Session) -> SessionState:
        if s.type is SessionType.SPAWNED:
            return SessionState.EXITED
        if s.type is SessionType.PANE:
            if self.pane_probe is not None:
                return SessionState.RUNNING if await self.pane_probe(s, self.touch) else SessionState.EXITED
            return SessionState.RUNNING if pid_alive(s.pid) else SessionState.EXITED
        if s.pid is not None and not pid_alive(s.pid):
            return SessionState.EXITED
        return SessionState.DISCONNECTED

    # -- lookup ------------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        """Exact id only."""
        return self._sessions.get(session_id)

    def require(self, session_id: str) -> Session:
        s = self._sessions.get(session_id)
        if s is None:
            raise NotFound(ErrorCode.SESSION_NOT_FOUND, f"no session with id {session_id!r}")
        return s

    def resolve(self, name: str, *, live_only: bool = False) -> Session:
        """Id or alias → session.

        An exact id that is live wins; otherwise the newest live session carrying
        the alias; otherwise (unless ``live_only``) the exact id even if exited.
        """
        exact = self._sessions.get(name)
        if exact is not None and exact.live:
            return exact
        aliased = [s for s in self._sessions.values() if s.alias == name and s.live]
        if aliased:
            return max(aliased, key=lambda s: s.created_at)
        if exact is not None and not live_only:
            return exact
        raise NotFound(ErrorCode.SESSION_NOT_FOUND, f"no session with id or alias {name!r}")

    def find_live(self, name: str) -> Session | None:
        try:
            return self.resolve(name, live_only=True)
        except NotFound:
            return None

    def list(
        self,
        *,
        type: str | None = None,
        agent: str | None = None,
        project: str | None = None,
        state: str | None = None,
        include_exited: bool = True,
    ) -> list[Session]:
        out = []
        for s in self._sessions.values():
            if type and str(s.type) != type:
                continue
            if agent and s.agent != agent:
                continue
            if project and s.project_id != project:
                continue
            if state and str(s.state) != state:
                continue
            if not include_exited and s.state is SessionState.EXITED:
                continue
            out.append(s)
        return sorted(out, key=lambda s: (s.created_at, s.id))

    # -- changes -----------------------------------------------------------------

    async def register(self, spec: RegisterSpec, *, replace: bool = False) -> Session:
        """Create or take over a session id.

        A live session that already answers to the requested name is a conflict,
        unless it is the same owner coming back (same pid and type) or ``replace``
        is set; a replaced session is marked exited, its owner is told, and the new
        one gets the next free id under the same alias.

        A pane session records which process its pane runs now (``PANE_PID_META``), so a
        pane id reused by a restarted tmux server is never taken for the session's pane.
        """
        if spec.tmux_pane and self.pane_owner is not None:
            pid = await self.pane_owner(spec.tmux_socket, spec.tmux_pane)
            if pid is not None:
                spec = dataclasses.replace(spec, meta={**spec.meta, PANE_PID_META: pid})
        async with self._lock:
            now = utc_now()
            requested = spec.session_id or default_session_id(
                spec.command, spec.cwd, spec.agent, lambda i: i in self._sessions
            )
            holder = self.find_live(requested)
            replaced: Session | None = None
            new_id = requested
            if holder is not None and not self._same_owner(holder, spec):
                if not replace:
                    raise Conflict(
                        ErrorCode.SESSION_EXISTS,
                        f"session {requested!r} is live (id {holder.id}, pid {holder.pid}); "
                        "pass replace to take it over",
                    )
                replaced = holder
                if holder.id == requested:
                    new_id = self._next_free(requested)
            elif holder is not None:
                new_id = holder.id

            previous = self._sessions.get(new_id)
            # A session coming back (reconnect, restart) keeps the name it answers to:
            # ``w1-2`` registered as a replacement for ``w1`` still answers to ``w1``.
            alias = requested
            if previous is not None and replaced is None and previous.type == spec.type and previous.alias:
                alias = previous.alias
            session = Session(
                id=new_id,
                type=spec.type,
                command=spec.command,
                cwd=spec.cwd,
                pid=spec.pid,
                tmux_pane=spec.tmux_pane,
                tmux_socket=spec.tmux_socket,
                agent=spec.agent,
                alias=alias,
                state=SessionState.RUNNING,
                created_at=previous.created_at if previous and previous.live else now,
                updated_at=now,
                last_activity_at=now,
                meta=spec.meta,
            )
            if previous is not None and previous.type == spec.type and not replaced:
                session.created_at = previous.created_at
            to_save = [session]
            if replaced is not None:
                replaced.state = SessionState.EXITED
                replaced.updated_at = now
                replaced.meta = dict(replaced.meta, exit_reason="replaced", replaced_by=new_id)
                to_save.append(replaced)
            self._sessions[new_id] = session
            await self.repo.upsert_many(to_save)

        if replaced is not None:
            log.info("session replaced old=%s new=%s alias=%s", replaced.id, new_id, requested)
            await self.emit(
                "session.replaced", old_id=replaced.id, new_id=new_id, alias=session.alias
            )
            self._told_exited(replaced.id)
            for hook in self.on_replaced:
                await hook(replaced)
        await self.emit(
            "session_register",
            target=session.id,
            session_id=session.id,
            session_type=str(session.type),
            command=session.command,
            cwd=session.cwd,
            agent=session.agent,
        )
        return session

    def _same_owner(self, holder: Session, spec: RegisterSpec) -> bool:
        return (
            holder.type == spec.type
            and holder.pid is not None
            and holder.pid == spec.pid
            and (spec.session_id is None or holder.id == spec.session_id)
        )

    def _next_free(self, base: str) -> str:
        n = 2
        while True:
            suffix = f"-{n}"
            candidate = base[: 64 - len(suffix)] + suffix
            if candidate not in self._sessions or not self._sessions[candidate].live:
                return candidate
            n += 1

    async def add(self, session: Session) -> Session:
        """Insert a session built elsewhere (spawned sessions); exact id must be free."""
        async with self._lock:
            existing = self._sessions.get(session.id)
            if existing is not None and existing.live:
                raise Conflict(ErrorCode.SESSION_EXISTS, f"session {session.id!r} is live")
            self._sessions[session.id] = session
            await self.repo.upsert(session)
        await self.emit(
            "session_register", target=session.id, session_id=session.id,
            session_type=str(session.type), command=session.command, cwd=session.cwd,
            agent=session.agent,
        )
        return session

    async def set_state(
        self, session_id: str, state: SessionState, *, exit_code: int | None = None,
        reason: str | None = None,
    ) -> Session | None:
        s = self._sessions.get(session_id)
        if s is None or (s.state is state and exit_code is None):
            return s
        if s.state is SessionState.EXITED and state is not SessionState.EXITED:
            return s  # an exited session only comes back through register()
        s.state = state
        s.updated_at = utc_now()
        if exit_code is not None:
            s.exit_code = exit_code
        if reason:
            s.meta = dict(s.meta, exit_reason=reason)
        await self.repo.upsert(s)
        log.info("session state id=%s state=%s exit_code=%s", s.id, state, exit_code)
        if state is SessionState.EXITED:
            self._told_exited(s.id)
        return s

    def _told_exited(self, session_id: str) -> None:
        for hook in self.on_exited:
            try:
                hook(session_id)
            except Exception:
                log.exception("on_exited hook failed for session %s", session_id)

    def touch(self, session_id: str, epoch: float | None = None) -> None:
        """Note output activity in memory; it is persisted with the next state change."""
        s = self._sessions.get(session_id)
        if s is not None:
            s.last_activity_at = to_iso(epoch if epoch is not None else time.time())

    async def update(self, session: Session) -> None:
        session.updated_at = utc_now()
        await self.repo.upsert(session)

    async def remove(self, session_id: str) -> Session:
        """Forget a session by exact id."""
        async with self._lock:
            s = self.require(session_id)
            del self._sessions[session_id]
            await self.repo.delete(session_id)
        self._told_exited(session_id)  # gone for good, as far as anything waiting is concerned
        for hook in self.on_removed:
            await hook(s)
        return s

    async def rename(self, old_id: str, new_id: str) -> Session:
        """Give the session with the exact id ``old_id`` the id (and alias) ``new_id``.

        Exact ids only, like every destructive operation. ``new_id`` must be unused,
        neither a session's id nor a live session's alias: taking over a name that
        already routes somewhere would silently redirect someone else's prompts. The
        record is changed in place so every holder of it sees the new id.
        """
        async with self._lock:
            s = self.check_rename(old_id, new_id)
            s.id = new_id
            s.alias = new_id
            s.updated_at = utc_now()
            s.meta = dict(s.meta, renamed_from=old_id)
            self._sessions[new_id] = s
            del self._sessions[old_id]
            # New row first: a crash in between leaves a duplicate, never a lost session.
            await self.repo.upsert(s)
            await self.repo.delete(old_id)
        log.info("session renamed old=%s new=%s", old_id, new_id)
        for hook in self.on_renamed:
            await hook(old_id, new_id)
        # Subscribers learn the new id the way they learn any id: a registration (with
        # where it came from), rather than a new event kind they would not know.
        await self.emit(
            "session_register", target=s.id, session_id=s.id, session_type=str(s.type),
            command=s.command, cwd=s.cwd, agent=s.agent, renamed_from=old_id,
        )
        return s

    def check_rename(self, old_id: str, new_id: str) -> Session:
        """The session ``rename`` would change, or the error it would raise."""
        validate_session_id(new_id, "new_id")
        s = self.require(old_id)
        if new_id == old_id:
            raise BadRequest(ErrorCode.INVALID_FIELD, f"session {old_id!r} already has that id")
        if new_id in self._sessions:
            raise Conflict(ErrorCode.SESSION_EXISTS, f"a session with id {new_id!r} exists "
                           f"({self._sessions[new_id].state}); remove it first (telepty clean)")
        holder = next((x for x in self._sessions.values() if x.alias == new_id and x.live), None)
        if holder is not None:
            raise Conflict(ErrorCode.SESSION_EXISTS, f"{new_id!r} is the alias of live session {holder.id!r}")
        return s

    def cleanable(
        self, *, older_than_s: float | None = None, now_epoch: float | None = None
    ) -> list[Session]:
        """Exited sessions (idle longer than ``older_than_s``, when given), oldest first.

        Only exited ones: removing a running or disconnected session would cut an
        agent off from its prompts (and kill a spawned one).
        """
        now = time.time() if now_epoch is None else now_epoch
        out: list[Session] = []
        for s in self._sessions.values():
            if s.state is not SessionState.EXITED:
                continue
            if older_than_s is not None:
                last = s.last_activity_at or s.updated_at or s.created_at
                try:
                    age = now - from_iso(last)
                except ValueError:
                    age = float("inf")
                if age < older_than_s:
                    continue
            out.append(s)
        return sorted(out, key=lambda s: (s.last_activity_at or s.updated_at, s.id))

    async def check_liveness(self) -> list[Session]:
        """Mark sessions whose process or pane is gone as exited; returns those."""
        gone: list[Session] = []
        for s in list(self._sessions.values()):
            if s.state is SessionState.EXITED or s.type is SessionType.SPAWNED:
                continue
            if s.type is SessionType.PANE and self.pane_probe is not None:
                alive, reason = await self.pane_probe(s, self.touch), "pane_dead"
            else:
                alive, reason = s.pid is None or pid_alive(s.pid), "process_gone"
            if not alive:
                await self.set_state(s.id, SessionState.EXITED, reason=reason)
                gone.append(s)
        return gone

    async def persist_activity(self) -> None:
        await self.repo.upsert_many(list(self._sessions.values()))
