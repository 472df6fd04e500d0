"""Who is sending: per-session tokens, and where a session's reply should go.

Every wrapped and spawned session gets its own secret in its environment
(``TELEPTY_SESSION_TOKEN``). A ``telepty`` command run inside that session presents it
(``x-telepty-session-token``), and the daemon records the delivery with
``verified_sender`` = that session, so a ``from`` that names some other session can be
told apart from the truth (SPEC §6). The daemon token says "may drive the agents";
a session token says "is this particular agent".

What is kept, and why:

- only the sha256 of a token, in memory and in the database: a stolen database or a
  debug dump of the daemon's state must not let anyone inject *as* a session;
- tokens are compared in constant time against every stored hash, so neither the
  answer's timing nor an early exit tells an attacker which session is close;
- a token follows its session through a rename (the child's environment cannot be
  changed after it started, so the token, not ``TELEPTY_SESSION_ID``, is the identity);
- for ``telepty reply``: the last delivered prompt that named a ``reply_to``, per
  session. "The last prompt that had someone to answer", not "the last prompt": a
  person pasting a note through ``telepty inject`` (no sender) must not make the agent
  unable to answer the agent that asked it something.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Iterable

from telepty.clock import utc_now
from telepty.delivery.model import Delivery, DeliveryKind, DeliveryStatus
from telepty.session_token import (  # noqa: F401 - re-exported: the daemon's users import them here
    SESSION_ID_ENV,
    SESSION_TOKEN_ENV,
    SESSION_TOKEN_HEADER,
    TOKEN_PREFIX,
    is_token_hash,
    new_session_token,
    token_sha256,
)
from telepty.sessions.registry import SessionRegistry
from telepty.store.identity import LastReceived, LastReceivedRepo, SessionTokenRepo

log = logging.getLogger("telepty.identity")


class SessionIdentities:
    """Token hashes by session id, and each session's last reply_to."""

    def __init__(self, tokens: SessionTokenRepo, inbox: LastReceivedRepo) -> None:
        self.tokens = tokens
        self.inbox = inbox
        self._hashes: dict[str, str] = {}
        self._last: dict[str, LastReceived] = {}
        self._writes: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        self._hashes = await self.tokens.all()

    # -- tokens ---------------------------------------------------------------------

    async def issue(self, session_id: str) -> str:
        """A fresh token for ``session_id`` (for the child's environment); only its hash is kept."""
        token = new_session_token()
        await self.bind(session_id, token_sha256(token))
        return token

    async def bind(self, session_id: str, token_hash: str) -> None:
        """Remember ``token_hash`` as ``session_id``'s (a wrapper hashes its own token).

        A different hash means a different child behind the id (a new spawn, a new
        wrapper reusing an exited session's id): it has received nothing yet, so the
        previous occupant's reply_to is dropped rather than inherited. The same hash
        again is the same wrapper reconnecting, and keeps it.
        """
        if not is_token_hash(token_hash):
            raise ValueError("a session token hash is 64 lower-case hex digits")
        if self._hashes.get(session_id) == token_hash:
            return
        self._hashes[session_id] = token_hash
        self._last.pop(session_id, None)
        await self.tokens.put(session_id, token_hash)
        await self.inbox.delete([session_id])

    async def unbind(self, session_id: str) -> None:
        """``session_id`` has no token any more (a wrapper that sent none registered it)."""
        if self._hashes.pop(session_id, None) is not None:
            await self.tokens.delete([session_id])

    def has_token(self, session_id: str) -> bool:
        return session_id in self._hashes

    def verify(self, token: str | None) -> str | None:
        """The session ``token`` belongs to, or None. Constant time in the token's value."""
        if not token:
            return None
        presented = token_sha256(token).encode("ascii")
        found: str | None = None
        for session_id, stored in self._hashes.items():
            # No early exit: every stored hash is compared, match or not.
            if hmac.compare_digest(presented, stored.encode("ascii")):
                found = session_id
        return found

    async def forget(self, session_ids: Iterable[str]) -> None:
        ids = list(session_ids)
        for sid in ids:
            self._hashes.pop(sid, None)
            self._last.pop(sid, None)
        await self.tokens.delete(ids)
        await self.inbox.delete(ids)

    async def rename(self, old: str, new: str) -> None:
        await self.tokens.rename(old, new)
        self._hashes.pop(new, None)
        self._last.pop(new, None)
        if old in self._hashes:
            self._hashes[new] = self._hashes.pop(old)
        if old in self._last:
            row = self._last.pop(old)
            self._last[new] = LastReceived(new, row.delivery_id, row.reply_to, row.sender,
                                           row.thread_id, row.received_at)

    # -- where a reply goes ---------------------------------------------------------

    def note_final(self, d: Delivery) -> None:
        """The engine's ``on_final`` hook: synchronous, so it only schedules the write.

        The in-memory row is set before the hook returns, so a ``reply`` issued the
        moment a delivery is reported delivered already sees it.
        """
        if d.status is not DeliveryStatus.DELIVERED or d.kind is not DeliveryKind.PROMPT or not d.reply_to:
            return
        row = LastReceived(d.session_id, d.id, d.reply_to, d.sender, d.thread_id, d.finished_at or utc_now())
        self._last[d.session_id] = row
        try:
            task = asyncio.get_running_loop().create_task(self._persist(row))
        except RuntimeError:  # no loop: nothing to persist with (unit tests of the engine)
            return
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _persist(self, row: LastReceived) -> None:
        try:
            await self.inbox.put(row)
        except Exception:
            log.exception("could not persist the last reply_to of session %s", row.session_id)

    async def last_received(self, session_id: str) -> LastReceived | None:
        row = self._last.get(session_id)
        if row is None:
            row = await self.inbox.get(session_id)
            if row is not None:
                self._last[session_id] = row
        return row

    async def flush(self) -> None:
        """Wait for scheduled writes (daemon shutdown, before the database closes)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)


def claims_other_sender(registry: SessionRegistry, sender: str | None, verified: str | None) -> bool:
    """Does a verified caller's ``from`` name someone other than itself?

    The same rule the delivery record's ``spoofed`` flag follows: a ``from`` that
    resolves to the verified session (its id or an alias of it) is the truth; anything
    else, including a name no live session answers to, is a claim the token contradicts.
    Without a verified sender there is nothing to contradict.
    """
    if verified is None or sender is None or sender == verified:
        return False
    claimed = registry.find_live(sender)
    return claimed is None or claimed.id != verified
