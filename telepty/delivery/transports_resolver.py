"""Which transport reaches a session: the pane when tmux knows it, else its PTY."""

from __future__ import annotations

from telepty.delivery.model import (
    NO_TRANSPORT,
    SESSION_DISCONNECTED,
    SESSION_EXITED,
    STAGE_CHECK_READY,
    DeliveryError,
)
from telepty.delivery.profiles import SubmitProfiles, load_profiles
from telepty.delivery.transport import Transport
from telepty.delivery.transports_pty import PtyTransport
from telepty.delivery.transports_tmux import PasteBufferTransport
from telepty.delivery.transports_wrapper import WrapperTransport
from telepty.sessions.model import Session, SessionState, SessionType
from telepty.sessions.panes import TmuxPool
from telepty.sessions.terminals import Terminals


class TransportResolver:
    def __init__(self, terminals: Terminals, tmux: TmuxPool,
                 profiles: SubmitProfiles | None = None) -> None:
        self.terminals = terminals
        self.tmux = tmux
        # Transports read screens with the profile of the agent they find there.
        self.profiles = profiles if profiles is not None else load_profiles(None)

    def __call__(self, session: Session) -> Transport:
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
