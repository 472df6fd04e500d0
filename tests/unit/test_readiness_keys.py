"""Readiness decisions, raw key names, and keys deliveries in the engine's queue."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from telepty.config import Config
from telepty.delivery.engine import DeliveryEngine
from telepty.delivery.keys import describe, key_bytes, parse_keys, sequence_bytes
from telepty.delivery.model import Delivery, DeliveryError, DeliveryKind, DeliveryStatus, Origin
from telepty.delivery.profiles import SubmitProfile, load_profiles
from telepty.delivery.readiness import (
    AgentCheck,
    check_agent,
    check_screen_quiet,
    check_screen_ready,
    explain,
    require_agent,
)
from telepty.delivery.request import KeyPress, parse_inject
from telepty.delivery.screen import read_screen
from telepty.delivery.transports.base import DeliveryOutcome, StageCallback, TransportBase
from telepty.errors import BadRequest
from telepty.sessions.model import Session, SessionType
from telepty.sessions.registry import RegisterSpec, SessionRegistry
from telepty.store.db import Database
from telepty.store.deliveries import DeliveryRepo
from telepty.store.sessions import SessionRepo

P = load_profiles(None)
CLAUDE = P.profile_for("claude")

DIALOG = ["> delete it", "╭────╮", "│ Do you want to proceed? │", "│ ❯ 1. Yes │", "│   2. No │", "╰────╯"]
IDLE = ["╭────╮", "│ >                  │", "╰────╯"]
BUSY = ["✻ Thinking… (esc to interrupt)", "╭────╮", "│ >  │", "╰────╯"]
TYPED = ["╭────╮", "│ > half a thought   │", "╰────╯"]


# -- readiness ----------------------------------------------------------------------------


def test_agent_exited_only_for_known_kinds() -> None:
    require_agent(AgentCheck("other", None, 42), "pane %1")  # nothing to look for
    require_agent(AgentCheck("claude", "claude", 42), "pane %1")
    with pytest.raises(DeliveryError) as e:
        require_agent(AgentCheck("claude", None, 42), "pane %1")
    assert (e.value.reason, e.value.retryable) == ("agent_exited", False)
    assert e.value.evidence["agent"] == {"agent": "claude", "agent_detected": None, "pid": 42}


async def test_check_agent_walks_the_real_process_tree() -> None:
    mine = await check_agent("claude", os.getpid())
    assert mine.detected is None and mine.known  # pytest is no agent
    gone = await check_agent("codex", 2**22 + 12345)
    assert gone.detected is None
    assert AgentCheck("other", "codex", 1).profile_kind == "codex"  # detected picks the profile
    assert AgentCheck("claude", "codex", 1).profile_kind == "claude"


def test_dialog_blocks_prompts_but_not_keys() -> None:
    r = read_screen(DIALOG, CLAUDE)
    with pytest.raises(DeliveryError) as e:
        check_screen_ready(r, CLAUDE, for_keys=False)
    assert (e.value.reason, e.value.retryable) == ("blocked_dialog", True)
    assert e.value.evidence["pattern"] == r"Do you want to proceed\?"
    assert "Do you want to proceed?" in e.value.evidence["screen"]["line"]
    check_screen_ready(r, CLAUDE, for_keys=True)


def test_unknown_screen_waits_only_for_profiles_that_read_screens() -> None:
    r = read_screen(["$ ls", "README.md", "$"], CLAUDE)
    with pytest.raises(DeliveryError) as e:
        check_screen_ready(r, CLAUDE, for_keys=False)
    assert (e.value.reason, e.value.retryable) == ("screen_unknown", True)
    default = P.profile_for("default")
    check_screen_ready(read_screen(["$ ls"], default), default, for_keys=False)


def test_busy_pattern_and_composer_text_are_part_of_the_guard() -> None:
    with pytest.raises(DeliveryError) as e:
        check_screen_quiet(read_screen(BUSY, CLAUDE), for_keys=False)
    assert (e.value.reason, e.value.retryable) == ("busy", True)
    assert e.value.evidence["pattern"] == r"(?i)\besc to interrupt\b"
    with pytest.raises(DeliveryError) as e:
        check_screen_quiet(read_screen(TYPED, CLAUDE), for_keys=False)
    assert e.value.reason == "composer_has_text" and "half a thought" in e.value.detail
    check_screen_quiet(read_screen(TYPED, CLAUDE), for_keys=True)  # keys may clear it
    check_screen_quiet(read_screen(IDLE, CLAUDE), for_keys=False)


def test_explain_reports_profile_verdict_and_pattern() -> None:
    s = Session(id="c1", type=SessionType.PANE, command="claude", cwd="/", created_at="x", updated_at="x",
                agent="claude")
    out = explain(session=s, transport="paste_buffer", profiles=P, agent=AgentCheck("claude", "claude", 7),
                  lines=DIALOG, tail=3)
    assert out["verdict"] == "blocked" and out["pattern"] == r"Do you want to proceed\?"
    assert out["profile"]["name"] == "claude" and out["agent_present"] is True
    assert out["lines"] == DIALOG[-3:]
    gone = explain(session=s, transport="paste_buffer", profiles=P, agent=AgentCheck("claude", None, 7),
                   lines=IDLE)
    assert gone["verdict"] == "agent-exited" and gone["agent_present"] is False
    # A terminal with no pid to look under (a wrapper that did not say) proves nothing.
    unknown = explain(session=s, transport="wrapper", profiles=P, agent=AgentCheck("claude", None, None),
                      lines=IDLE)
    assert unknown["verdict"] == "idle" and unknown["agent_present"] is None


# -- key names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("Enter", b"\r"), ("Escape", b"\x1b"), ("Down", b"\x1b[B"), ("Up", b"\x1b[A"),
        ("BSpace", b"\x7f"), ("Tab", b"\t"), ("S-Tab", b"\x1b[Z"), ("C-c", b"\x03"),
        ("C-u", b"\x15"), ("M-x", b"\x1bx"), ("C-Left", b"\x1b[1;5D"), ("F5", b"\x1b[15~"),
        ("y", b"y"), ("1", b"1"), ("é", "é".encode()), ("PageDown", b"\x1b[6~"),
    ],
)
def test_key_bytes(name: str, data: bytes) -> None:
    assert key_bytes(name) == data


def test_app_cursor_mode_arrows() -> None:
    assert key_bytes("Down", app_cursor=True) == b"\x1bOB"


def test_parse_keys_accepts_names_and_text() -> None:
    keys = parse_keys(["Down", "Enter", {"text": "yes"}])
    assert sequence_bytes(keys) == [b"\x1b[B", b"\r", b"yes"]
    assert describe(keys) == "Down Enter text:'yes'"


@pytest.mark.parametrize("bad", [None, [], "Enter", ["Entr"], ["C-"], [5], [{"text": ""}],
                                 [{"txt": "a"}], ["Enter"] * 65])
def test_parse_keys_rejects(bad: object) -> None:
    with pytest.raises(BadRequest) as e:
        parse_keys(bad)
    assert e.value.code == "invalid_keys"


def test_profiles_refuse_unknown_key_names(tmp_path: Path) -> None:
    from telepty.config import ConfigError

    f = tmp_path / "profiles.toml"
    f.write_text('[claude]\nrescue = [["Enterr"]]\n')
    with pytest.raises(ConfigError, match="unknown key name"):
        load_profiles(f)
    f.write_text('[claude]\nrescue = [["Enter"], ["Escape", "Enter"], ["Enter"]]\n')
    with pytest.raises(ConfigError, match="at most 2"):
        load_profiles(f)


# -- keys deliveries in the engine -------------------------------------------------------------


class Screen:
    """One fake terminal: prompts are blocked while ``dialog``; keys answer it."""

    def __init__(self) -> None:
        self.dialog = True
        self.log: list[tuple[str, Any]] = []
        self.ready_calls: list[bool] = []


class ScreenTransport(TransportBase):
    name = "fake"

    def __init__(self, screen: Screen) -> None:
        self.s = screen

    async def check_ready(self, *, for_keys: bool = False) -> None:
        self.s.ready_calls.append(for_keys)
        if self.s.dialog and not for_keys:
            raise DeliveryError("blocked_dialog", "a dialog is up", stage="check_ready", retryable=True,
                                evidence={"pattern": "Do you want to proceed"})

    async def is_quiet(self, quiet_ms: int) -> bool:
        return True

    async def deliver(self, d: Delivery, *, profile: SubmitProfile,
                      on_stage: StageCallback) -> DeliveryOutcome:
        await on_stage("paste")
        self.s.log.append(("prompt", d.prompt.decode()))
        return DeliveryOutcome("screen", {})

    async def send_keys(self, keys: Sequence[Any], *, on_stage: StageCallback) -> DeliveryOutcome:
        await on_stage("keys")
        self.s.log.append(("keys", list(keys)))
        if "Enter" in keys:
            self.s.dialog = False
        return DeliveryOutcome("unverified", {"keys": describe(keys)})


@pytest.fixture
async def engine_and_screen(tmp_path: Path, config: Config) -> AsyncIterator[tuple[DeliveryEngine, Screen,
                                                                                   list[tuple[str, Any]]]]:
    db = Database(tmp_path / "t.db")
    await db.open()
    registry = SessionRegistry(SessionRepo(db))
    await registry.register(RegisterSpec(type=SessionType.PANE, session_id="s1", tmux_pane="%1",
                                         agent="claude", command="claude"))
    screen = Screen()
    events: list[tuple[str, Any]] = []

    async def emit(kind: str, **fields: Any) -> int:
        events.append((kind, fields))
        return len(events)

    engine = DeliveryEngine(DeliveryRepo(db), registry, lambda s: ScreenTransport(screen), emit,
                            load_profiles(None, settle_ms_override=0),
                            config.with_(retry_schedule=(30.0, 30.0)), rng=random.Random(0))
    await engine.start()
    yield engine, screen, events
    await engine.stop()
    await db.close()


async def test_keys_go_ahead_of_a_prompt_blocked_by_a_dialog(engine_and_screen) -> None:  # type: ignore[no-untyped-def]
    engine, screen, events = engine_and_screen
    req = parse_inject({"prompt": "after the dialog"}, max_prompt_bytes=1024)
    first = await engine.submit(req, target="s1", origin=Origin.API)
    second = await engine.submit(parse_inject({"prompt": "second"}, max_prompt_bytes=1024),
                                 target="s1", origin=Origin.API)

    async def blocked() -> bool:
        d = await engine.get(first.id)
        return d.status is DeliveryStatus.RETRYING and d.reason == "blocked_dialog"

    from tests.helpers import wait_until

    await wait_until(blocked, message="prompt waiting on the dialog")
    # Its next try is 30 s away; the keys must not wait behind it, and it must not wait 30 s.
    k = await engine.submit(KeyPress(("Down", "Enter")), target="s1", origin=Origin.CLI, idempotency_key="k1")
    assert k.kind is DeliveryKind.KEYS and k.keys == ["Down", "Enter"]
    done = await asyncio.wait_for(engine.wait(second.id, 5), 6)
    assert done.status is DeliveryStatus.DELIVERED
    assert screen.log == [("keys", ["Down", "Enter"]), ("prompt", "after the dialog"), ("prompt", "second")]
    keys_rec = await engine.get(k.id)
    assert keys_rec.status is DeliveryStatus.DELIVERED and keys_rec.stage == "keys"
    assert keys_rec.to_public()["keys"] == ["Down", "Enter"] and keys_rec.to_public()["kind"] == "keys"
    again = await engine.submit(KeyPress(("Down", "Enter")), target="s1", origin=Origin.CLI,
                                idempotency_key="k1")
    assert again.id == k.id  # idempotent: nothing sent twice
    assert [e for e in screen.log if e[0] == "keys"] == [("keys", ["Down", "Enter"])]
    sent = [f for kind, f in events if kind == "keys_sent"]
    assert sent == [{"target": "s1", "session_id": "s1", "delivery_id": k.id, "keys": ["Down", "Enter"],
                     "source_type": "cli"}]
    assert True in screen.ready_calls  # keys were checked for readiness as keys


async def test_keys_wait_their_turn_behind_a_prompt_that_is_not_blocked(engine_and_screen) -> None:  # type: ignore[no-untyped-def]
    engine, screen, _ = engine_and_screen
    screen.dialog = False
    p = await engine.submit(parse_inject({"prompt": "first"}, max_prompt_bytes=1024), target="s1",
                            origin=Origin.API)
    k = await engine.submit(KeyPress(("Escape",)), target="s1", origin=Origin.API)
    await engine.wait(k.id, 5)
    assert (await engine.get(p.id)).status is DeliveryStatus.DELIVERED
    assert screen.log == [("prompt", "first"), ("keys", ["Escape"])]
