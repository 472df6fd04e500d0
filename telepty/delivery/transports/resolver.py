"""TransportResolver: which transport reaches a session.

A session on another machine goes to the relay; a pane tmux knows, to the pane; a
spawned session, to its PTY; a wrapped one, to its wrapper while it is connected.
"""

from __future__ import annotations

from collections.abc import Callable

from telepty.delivery.model import (
    NO_TRANSPORT,
    SESSION_DISCONNECTED,
    SESSION_EXITED,
    STAGE_CHECK_READY,
    DeliveryError,
)
from telepty.delivery.profiles import SubmitProfiles, load_profiles
from telepty.delivery.transports.base import Transport
from telepty.delivery.transports.pty import PtyTransport
from telepty.delivery.transports.tmux import PasteBufferTransport
from telepty.delivery.transports.wrapper import WrapperTransport
from telepty.sessions.model import Session, SessionState, SessionType
from telepty.sessions.panes import TmuxPool
from telepty.sessions.terminals import Terminals

# The transport to another machine for a session that lives there; None: a local one.
RemoteTransport = Callable[[Session], Transport | None]


class TransportResolver:
    """Called with a session, returns its transport for one attempt, or raises
    ``DeliveryError`` (``session_disconnected``, ``session_exited``, ``no_transport``)
    when nothing reaches it right now."""

    def __init__(self, terminals: Terminals, tmux: TmuxPool, profiles: SubmitProfiles | None = None,
                 *, remote: RemoteTransport | None = None) -> None:
        self.terminals = terminals
        self.tmux = tmux
        # Transports read screens with the profile of the agent they find there.
        self.profiles = profiles if profiles is not None else load_profiles(None)
        self.remote = remote

    def __call__(self, session: Session) -> Transport:
        if self.remote is not None:
            elsewhere = self.remote(session)
            if elsewhere is not None:
                return elsewhere
        if session.state is SessionState.EXITED:
            raise DeliveryError(SESSION_EXITED, f"session {session.id!r} has exited",
                                stage=STAGE_CHECK_READY)
        if session.tmux_pane:
            return PasteBufferTransport(self.tmux.server(session.tmux_socket), session.tmux_pane,
                                        session, self.profiles)
        if session.type is SessionType.SPAWNED:
            pty = self.terminals.spawned.get(session.id)
            if pty is None:
                raise DeliveryError(SESSION_EXITED, f"session {session.id!r} has no PTY",
                                    stage=STAGE_CHECK_READY)
            return PtyTransport(pty, session, self.profiles)
        if session.type is SessionType.WRAPPED:
            link = self.terminals.links.get(session.id)
            if link is None:
                raise DeliveryError(SESSION_DISCONNECTED,
                                    f"the wrapper of {session.id!r} is not connected",
                                    stage=STAGE_CHECK_READY, retryable=True)
            return WrapperTransport(link, session, self.profiles)
        raise DeliveryError(NO_TRANSPORT, f"no way to reach session {session.id!r}",
                            stage=STAGE_CHECK_READY)
