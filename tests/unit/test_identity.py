"""Session tokens, their hashes, verification, and the per-session reply_to — against real SQLite."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from telepty.delivery.model import Delivery, DeliveryKind, DeliveryStatus, Origin
from telepty.sessions.identity import (
    TOKEN_PREFIX,
    SessionIdentities,
    claims_other_sender,
    is_token_hash,
    new_session_token,
    token_sha256,
)
from telepty.sessions.model import SessionType
from telepty.sessions.registry import RegisterSpec, SessionRegistry
from telepty.store.db import Database
from telepty.store.identity import LastReceivedRepo, SessionTokenRepo
from telepty.store.sessions import SessionRepo


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(tmp_path / "t.db")
    await d.open()
    yield d
    await d.close()


@pytest.fixture
async def ids(db: Database) -> SessionIdentities:
    i = SessionIdentities(SessionTokenRepo(db), LastReceivedRepo(db))
    await i.load()
    return i


def rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def delivered(session: str, reply_to: str | None, **kw: object) -> Delivery:
    d = Delivery(session_id=session, target=session, prompt=b"q", origin=Origin.API, reply_to=reply_to,
                 **kw)  # type: ignore[arg-type]
    d.status = DeliveryStatus.DELIVERED
    d.finished_at = d.created_at
    return d


def test_tokens_are_prefixed_random_and_hashed_with_sha256() -> None:
    a, b = new_session_token(), new_session_token()
    assert a != b and a.startswith(TOKEN_PREFIX) and len(a) > 40
    assert token_sha256(a) == hashlib.sha256(a.encode()).hexdigest()
    assert is_token_hash(token_sha256(a))
    assert not is_token_hash(a) and not is_token_hash("A" * 64) and not is_token_hash(None)


async def test_only_the_hash_is_stored_and_verify_finds_the_session(ids: SessionIdentities,
                                                                     tmp_path: Path) -> None:
    token = await ids.issue("w1")
    other = await ids.issue("w2")
    assert ids.verify(token) == "w1"
    assert ids.verify(other) == "w2"
    assert ids.verify("tpst_wrong") is None
    assert ids.verify("") is None and ids.verify(None) is None
    stored = rows(tmp_path / "t.db", "SELECT session_id, token_sha256 FROM session_tokens ORDER BY 1")
    assert stored == [("w1", token_sha256(token)), ("w2", token_sha256(other))]
    raw = (tmp_path / "t.db").read_bytes() + (tmp_path / "t.db-wal").read_bytes()
    assert token.encode() not in raw and other.encode() not in raw


async def test_hashes_survive_a_restart(db: Database) -> None:
    first = SessionIdentities(SessionTokenRepo(db), LastReceivedRepo(db))
    token = await first.issue("sp1")
    again = SessionIdentities(SessionTokenRepo(db), LastReceivedRepo(db))
    await again.load()
    assert again.verify(token) == "sp1"


async def test_bind_rejects_what_is_not_a_hash(ids: SessionIdentities) -> None:
    with pytest.raises(ValueError):
        await ids.bind("w1", "not-a-hash")
    assert not ids.has_token("w1")


async def test_rename_moves_the_token_and_the_reply_to(ids: SessionIdentities) -> None:
    token = await ids.issue("old")
    ids.note_final(delivered("old", "asker", thread_id="t1"))
    await ids.flush()
    await ids.rename("old", "new")
    assert ids.verify(token) == "new"
    got = await ids.last_received("new")
    assert got is not None and got.reply_to == "asker" and got.thread_id == "t1"
    assert await ids.last_received("old") is None


async def test_forget_and_unbind(ids: SessionIdentities, tmp_path: Path) -> None:
    t1 = await ids.issue("a")
    t2 = await ids.issue("b")
    await ids.forget(["a"])
    await ids.unbind("b")
    assert ids.verify(t1) is None and ids.verify(t2) is None
    assert rows(tmp_path / "t.db", "SELECT count(*) FROM session_tokens") == [(0,)]


async def test_last_received_keeps_only_delivered_prompts_with_a_reply_to(db: Database,
                                                                         ids: SessionIdentities) -> None:
    ids.note_final(delivered("s", "first"))
    ids.note_final(delivered("s", None))  # a person's note: nobody to answer, does not count
    failed = delivered("s", "failed-one")
    failed.status = DeliveryStatus.FAILED
    ids.note_final(failed)
    keys = delivered("s", "keys-one", kind=DeliveryKind.KEYS)
    ids.note_final(keys)
    await ids.flush()
    got = await ids.last_received("s")
    assert got is not None and got.reply_to == "first"
    # ... and it is on disk: a fresh instance (a restarted daemon) finds it.
    fresh = SessionIdentities(SessionTokenRepo(db), LastReceivedRepo(db))
    again = await fresh.last_received("s")
    assert again is not None and again.reply_to == "first"


async def test_a_new_token_for_an_id_drops_the_previous_reply_to(ids: SessionIdentities) -> None:
    h1 = token_sha256(new_session_token())
    await ids.bind("w", h1)
    ids.note_final(delivered("w", "asker"))
    await ids.flush()
    await ids.bind("w", h1)  # the same wrapper reconnecting keeps it
    assert await ids.last_received("w") is not None
    await ids.bind("w", token_sha256(new_session_token()))  # a different child took the id
    assert await ids.last_received("w") is None


async def test_claims_other_sender(db: Database) -> None:
    reg = SessionRegistry(SessionRepo(db))
    await reg.register(RegisterSpec(type=SessionType.WRAPPED, session_id="me", pid=None))
    await reg.register(RegisterSpec(type=SessionType.WRAPPED, session_id="you", pid=None))
    assert not claims_other_sender(reg, None, "me")
    assert not claims_other_sender(reg, "anyone", None)  # nothing verified: nothing to contradict
    assert not claims_other_sender(reg, "me", "me")
    assert claims_other_sender(reg, "you", "me")
    assert claims_other_sender(reg, "nobody-by-that-name", "me")
