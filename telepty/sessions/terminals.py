"""Live terminal attachments of sessions: daemon-owned PTYs and wrapper links.

The registry knows *about* sessions; this knows how to reach their terminals. It
listens to the registry so that removing or replacing a session also lets go of the
process or the wrapper behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from telepty.clock import utc_now
from telepty.config import Config
from telepty.errors import BadRequest, Conflict, ErrorCode
from telepty.pty.env import child_env
from telepty.pty.scrollback import Scrollback
from telepty.pty.spawned import SpawnedPty
from telepty.sessions.agents import detect_agent
from telepty.sessions.identity import new_session_token, token_sha256
from telepty.sessions.model import Session, SessionState, SessionType
from telepty.sessions.naming import default_session_id
from telepty.sessions.registry import SessionRegistry
from telepty.sessions.wrapper_link import WrapperLink

if TYPE_CHECKING:
    from telepty.sessions.identity import SessionIdentities

log = logging.getLogger("telepty.terminals")

KILL_GRACE_S = 2.0


@dataclass
class SpawnSpec:
    argv: list[str]
    cwd: str
    session_id: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cols: int = 120
    rows: int = 40
    agent: str | None = None

    @classmethod
    def from_command(cls, command: str, args: list[str] | None, **kw: object) -> SpawnSpec:
        """``args`` given: ``command`` is the program. Otherwise split it like a shell
        would, but no shell ever runs it."""
        if args is not None:
            argv = [command, *args]
        else:
            try:
                argv = shlex.split(command)
            except ValueError as exc:
                raise BadRequest(ErrorCode.INVALID_FIELD, f"command cannot be split: {exc}") from None
        if not argv or not argv[0]:
            raise BadRequest(ErrorCode.MISSING_FIELD, "command is required")
        return cls(argv=argv, **kw)  # type: ignore[arg-type]


class Terminals:
    def __init__(self, registry: SessionRegistry, config: Config,
                 identities: SessionIdentities | None = None) -> None:
        self.registry = registry
        self.config = config
        self.spawned: dict[str, SpawnedPty] = {}
        self.links: dict[str, WrapperLink] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        # Issues each spawned child its TELEPTY_SESSION_TOKEN (None: children get none).
        self.identities = identities
        registry.on_removed.append(self._let_go)
        registry.on_replaced.append(self._let_go)
        registry.on_renamed.append(self._renamed)

    # -- spawned ------------------------------------------------------------------

    async def spawn(self, spec: SpawnSpec, base_env: Mapping[str, str] | None = None) -> Session:
        if not os.path.isdir(spec.cwd):
            raise BadRequest(ErrorCode.INVALID_CWD, f"cwd {spec.cwd!r} is not a directory")
        command = shlex.join(spec.argv)
        agent = spec.agent or detect_agent(spec.argv)
        session_id = spec.session_id or default_session_id(
            command, spec.cwd, agent, lambda i: (s := self.registry.get(i)) is not None and s.live
        )
        if (existing := self.registry.find_live(session_id)) is not None:
            raise Conflict(ErrorCode.SESSION_EXISTS, f"session {session_id!r} is live (id {existing.id})")
        # The caller's env may not choose the identity: ours is applied last.
        extra = {k: v for k, v in spec.env.items() if k != "TELEPTY_SESSION_TOKEN"}
        extra["TELEPTY_SESSION_ID"] = session_id
        token = new_session_token() if self.identities is not None else None
        if token is not None:
            extra["TELEPTY_SESSION_TOKEN"] = token
        env = child_env(base_env if base_env is not None else os.environ, extra)
        try:
            pty = await SpawnedPty.start(
                spec.argv, cwd=spec.cwd, env=env, cols=spec.cols, rows=spec.rows,
                scrollback_bytes=self.config.scrollback_bytes,
            )
        except (OSError, ValueError) as exc:
            raise BadRequest(ErrorCode.SPAWN_FAILED, f"cannot start {spec.argv[0]!r}: {exc}") from None
        now = utc_now()
        session = Session(
            id=session_id, type=SessionType.SPAWNED, command=command, cwd=spec.cwd,
            created_at=now, updated_at=now, last_activity_at=now, pid=pty.pid, agent=agent,
            alias=session_id, meta={"cols": spec.cols, "rows": spec.rows},
        )
        try:
            await self.registry.add(session)
        except Exception:
            await pty.terminate(0.2)
            pty.close()
            raise
        if self.identities is not None and token is not None:
            # Bound only once the id is surely ours (a racing spawn of the same id loses
            # at add() above); an agent CLI takes far longer to start than this takes.
            await self.identities.bind(session_id, token_sha256(token))
        self.spawned[session_id] = pty
        pty.on_output.append(lambda _data: self._touch_spawned(pty))
        task = asyncio.ensure_future(self._watch_exit(session_id, pty))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return session

    def _spawned_id(self, pty: SpawnedPty) -> str | None:
        """The id ``pty`` is known under now (a rename may have changed it)."""
        return next((sid for sid, p in self.spawned.items() if p is pty), None)

    def _touch_spawned(self, pty: SpawnedPty) -> None:
        session_id = self._spawned_id(pty)
        if session_id is not None:
            self.registry.touch(session_id)

    async def _watch_exit(self, session_id: str, pty: SpawnedPty) -> None:
        await pty.exited.wait()
        current = self._spawned_id(pty)
        if current is not None:
            await self.registry.set_state(
                current, SessionState.EXITED, exit_code=pty.exit_code, reason="process_exited"
            )

    # -- wrapped ------------------------------------------------------------------

    def attach_link(self, link: WrapperLink) -> None:
        old = self.links.get(link.session_id)
        if old is not None and old is not link:
            old.fail_pending()
        self.links[link.session_id] = link

    async def link_closed(self, link: WrapperLink) -> None:
        link.fail_pending()
        if self.links.get(link.session_id) is link:
            del self.links[link.session_id]
            session = self.registry.get(link.session_id)
            if session is not None and session.type is SessionType.WRAPPED:
                await self.registry.set_state(link.session_id, SessionState.DISCONNECTED)

    # -- common -------------------------------------------------------------------

    async def _renamed(self, old_id: str, new_id: str) -> None:
        """Keep the PTY / wrapper link reachable under the session's new id."""
        pty = self.spawned.pop(old_id, None)
        if pty is not None:
            self.spawned[new_id] = pty
        link = self.links.pop(old_id, None)
        if link is not None:
            link.session_id = new_id
            self.links[new_id] = link
            await link.renamed(new_id)

    def scrollback_of(self, session_id: str) -> Scrollback | None:
        """The output stream of a spawned or wrapped session (None when it has none)."""
        source = self.spawned.get(session_id) or self.links.get(session_id)
        return source.scrollback if source is not None else None

    async def _let_go(self, session: Session) -> None:
        pty = self.spawned.pop(session.id, None)
        if pty is not None:
            await pty.terminate(KILL_GRACE_S)
            pty.close()
            return
        link = self.links.pop(session.id, None)
        if link is not None:
            await link.detach("replaced" if session.meta.get("exit_reason") == "replaced" else "deleted")
            link.fail_pending()

    async def close(self) -> None:
        """Daemon shutdown: spawned children go with the daemon; wrappers reconnect later."""
        ptys = list(self.spawned.items())
        self.spawned.clear()
        await asyncio.gather(*(p.terminate(KILL_GRACE_S) for _, p in ptys), return_exceptions=True)
        for session_id, pty in ptys:
            pty.close()
            with contextlib.suppress(Exception):
                await self.registry.set_state(
                    session_id, SessionState.EXITED, exit_code=pty.exit_code, reason="daemon_stopped"
                )
        for task in list(self._watchers):
            task.cancel()
        for link in list(self.links.values()):
            with contextlib.suppress(Exception):
                await link.ws.close(code=1001, message=b"daemon stopping")
            link.fail_pending()
        self.links.clear()
