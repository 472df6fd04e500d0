"""Alias resolution over arbitrary registries: live beats exited; destructive ops take exact ids only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telepty.clock import to_iso
from telepty.errors import NotFound
from telepty.sessions.model import Session, SessionState, SessionType
from telepty.sessions.registry import SessionRegistry

NAMES = ["a", "b", "c", "a-2", "b-2"]  # few names, so ids and aliases collide often


class FakeRepo:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def upsert(self, s: Session) -> None:
        pass

    async def delete(self, session_id: str) -> None:
        self.deleted.append(session_id)


session_st = st.builds(
    lambda sid, alias, state, t: Session(
        id=sid, type=SessionType.PANE, command="x", cwd="/tmp", created_at=to_iso(1_800_000_000 + t),
        updated_at=to_iso(1_800_000_000 + t), state=state, alias=alias,
    ),
    st.sampled_from(NAMES), st.none() | st.sampled_from(NAMES), st.sampled_from(list(SessionState)),
    st.integers(0, 10_000),
)


def make_registry(sessions: list[Session]) -> tuple[SessionRegistry, FakeRepo]:
    repo = FakeRepo()
    reg = SessionRegistry(repo)  # type: ignore[arg-type]
    for s in sessions:
        reg._sessions[s.id] = s  # last one with an id wins, as in the registry
    return reg, repo


@settings(max_examples=300, deadline=None)
@given(sessions=st.lists(session_st, max_size=8), name=st.sampled_from([*NAMES, "zzz"]),
       live_only=st.booleans())
def test_resolve_prefers_live_sessions(sessions: list[Session], name: str, live_only: bool) -> None:
    reg, _ = make_registry(sessions)
    held = list(reg._sessions.values())
    live_carriers = [s for s in held if s.live and (s.id == name or s.alias == name)]
    try:
        got = reg.resolve(name, live_only=live_only)
    except NotFound:
        assert not live_carriers
        assert live_only or name not in reg._sessions
        return
    assert got in held
    if live_carriers:
        assert got.live  # never an exited/disconnected one while a live one answers to the name
        exact = reg._sessions.get(name)
        if exact is not None and exact.live:
            assert got is exact  # a live exact id beats any alias
        else:
            newest = max(s.created_at for s in live_carriers)
            assert got.alias == name and got.created_at == newest
    else:
        assert not live_only and got is reg._sessions[name]


@settings(max_examples=200, deadline=None)
@given(sessions=st.lists(session_st, min_size=1, max_size=8), name=st.sampled_from(NAMES))
def test_remove_and_rename_use_exact_ids_only(sessions: list[Session], name: str) -> None:
    reg, repo = make_registry(sessions)
    before: dict[str, Any] = dict(reg._sessions)

    async def go() -> None:
        if name in before:
            removed = await reg.remove(name)
            assert removed is before[name]
            assert set(reg._sessions) == set(before) - {name}
            assert repo.deleted == [name]
        else:
            with pytest.raises(NotFound):
                await reg.remove(name)  # even when a session carries it as an alias
            with pytest.raises(NotFound):
                await reg.rename(name, "fresh-id")
            assert reg._sessions == before and repo.deleted == []

    asyncio.run(go())
