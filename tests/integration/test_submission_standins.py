"""Delivered means submitted: real programs that lose prompts the way agent CLIs do.

Each stand-in (tests/programs/standin_*.py) runs in a real tmux pane and logs what it
really submitted. Hundreds of prompts go through the real daemon back to back; every
one must end either ``delivered`` *and* in the stand-in's log exactly once, or
``failed`` with the reason that explains it and absent from the log. Zero false
"delivered".

Each stand-in takes ``N`` (200) prompts, spread over ``PANES`` instances that run in
parallel (the daemon serving several agents at once), each instance's share queued back
to back. Timings are shortened (a paste-burst window of 80 ms instead of Codex's ~120 ms, a
render settle of 100 ms instead of Claude's 300+ ms) and the profiles' settle delays
scaled with them through ``$TELEPTY_HOME/profiles.toml``, the file a user would edit.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from telepty.config import Config
from tests.helpers import client_final, wait_until
from tests.integration.standins import (
    StandInPane,
    inject,
    launch_from_shell,
    register,
    start_shell,
    start_standin,
    write_profiles,
)

N = int(os.environ.get("TELEPTY_STANDIN_N", "200"))
PANES = 4

PROFILES = """
[codex]
settle_ms = 120      # > the stand-in's 80 ms paste-burst window
confirm_ms = 400
[claude]
settle_ms = 150      # > the stand-in's 100 ms render settle
confirm_ms = 400
"""


def prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["fix", "the", "failing", "test", "in", "src/app.py", "réponse", "naïve", "日本語", "🚀",
             "$(echo hi)", "'quoted'", '"double"', "tab\there", "50%", "a/b", "@file", "/cmd"]
    out = []
    for i in range(n):
        k = rng.choice([3, 6, 12, 30])
        body = " ".join(rng.choice(words) for _ in range(k))
        if rng.random() < 0.25:
            body += "\n" + "\n".join(" ".join(rng.choice(words) for _ in range(5))
                                     for _ in range(rng.randint(1, 5)))
        out.append(f"#{i:03d} {body}")
    return out


async def app_client(aiohttp_client: Any, config: Config, profiles: str = PROFILES) -> Any:
    from telepty.daemon import create_app

    write_profiles(config.home, profiles)
    # audit_content: records keep the screen text their evidence read (the dialog test reads it).
    cfg = config.with_(settle_ms=None, quiet_ms=30, retry_schedule=(0.05,) * 40, retry_jitter=0.0,
                       audit_content=True)
    return await aiohttp_client(create_app(cfg))


async def run_batch(client: Any, sid: str, texts: list[str]) -> list[dict[str, Any]]:
    """Queue every prompt at once (back to back, strictly FIFO), wait for all to be final."""
    accepted = []
    for text in texts:
        status, body = await inject(client, sid, prompt=text)
        assert status == 202, body
        accepted.append(body["delivery_id"])
    return [await client_final(client, did, timeout=60) for did in accepted]


def check_no_false_delivered(sp: StandInPane, texts: list[str], records: list[dict[str, Any]],
                             allowed_failures: set[str]) -> Counter[str]:
    """Delivered ⇒ submitted exactly once; failed ⇒ an allowed reason and never submitted."""
    submitted = Counter(s.rstrip("\n") for s in sp.submissions())
    outcome: Counter[str] = Counter()
    for text, rec in zip(texts, records, strict=True):
        if rec["status"] == "delivered":
            assert rec["confirmed"] in ("screen", "echo"), rec
            assert submitted[text] == 1, (text, rec, submitted[text])
            outcome["delivered"] += 1
        else:
            assert rec["status"] == "failed" and rec["reason"] in allowed_failures, rec
            assert submitted[text] == 0, (text, rec)
            outcome[rec["reason"]] += 1
    assert sum(submitted.values()) == outcome["delivered"], "something submitted twice or unasked"
    return outcome


def rates(records: list[dict[str, Any]]) -> str:
    ok = [r for r in records if r["status"] == "delivered"]
    return f"{len(ok)}/{len(records)} delivered, {sum(1 for r in ok if r['evidence'].get('rescued'))} rescued"


async def run_standins(
    session: Any, tmp_path: Any, client: Any, program: str, *, agent: str, args: list[str], seed: int,
    on_ready: Callable[[StandInPane, str], None] | None = None,
) -> tuple[list[StandInPane], list[dict[str, Any]]]:
    """``N`` prompts over ``PANES`` instances of one stand-in, the instances in parallel
    (as a daemon serves several agents at once), each one's prompts back to back."""
    panes = [start_standin(session, tmp_path, program, name=f"{agent}{i}", agent=agent, args=args)
             for i in range(PANES)]
    for i, sp in enumerate(panes):
        await sp.ready()
        await register(client, sp, f"{agent}{i}")
        if on_ready is not None:
            on_ready(sp, f"{agent}{i}")
    texts = prompts(N, seed)
    shares = [texts[i::PANES] for i in range(PANES)]
    results = await asyncio.gather(*(run_batch(client, f"{agent}{i}", share)
                                     for i, share in enumerate(shares)))
    records: list[dict[str, Any]] = []
    for sp, share, recs in zip(panes, shares, results, strict=True):
        check_no_false_delivered(sp, share, recs, {"not_submitted"})
        records += recs
    return panes, records


def events(panes: list[StandInPane], name: str) -> int:
    return sum(len(sp.events(name)) for sp in panes)


# -- stand-in 1: keys within N ms of a paste are part of the paste (Codex) ----------------


@pytest.mark.timeout(300)
async def test_paste_burst_standin_200(aiohttp_client, config: Config, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = await app_client(aiohttp_client, config)
    panes, records = await run_standins(session, tmp_path, client, "standin_paste_burst.py",
                                        agent="codex", args=["--burst-ms", "80"], seed=1)
    print(f"\npaste-burst: {rates(records)}; enter_as_newline {events(panes, 'enter_as_newline')}")
    assert sum(r["status"] == "delivered" for r in records) >= 0.97 * N


async def test_paste_burst_without_the_settle_delay(aiohttp_client, config: Config, session,
                                                    tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Settle 0: every Enter lands inside the burst window and becomes a newline. Without a
    rescue that is ``not_submitted`` (and the next prompt waits on the leftover text);
    with the profile's rescue Enter, each prompt is submitted after all."""
    sp = start_standin(session, tmp_path, "standin_paste_burst.py", agent="codex",
                       args=["--burst-ms", "80"])
    await sp.ready()
    client = await app_client(aiohttp_client, config, "[codex]\nsettle_ms = 0\nconfirm_ms = 300\n"
                              "rescue = []\n")
    await register(client, sp, "burst")
    first, second = await run_batch(client, "burst", ["first prompt", "second prompt"])
    assert (first["status"], first["reason"]) == ("failed", "not_submitted"), first
    assert first["evidence"]["judgement"]["held"] == "text"
    assert (second["status"], second["reason"]) == ("failed", "retry_exhausted"), second
    assert "composer_has_text" in second["detail"]
    assert sp.submissions() == []
    assert len(sp.events("enter_as_newline")) == 1  # the second one never got pasted


async def test_paste_burst_rescued_by_a_second_enter(aiohttp_client, config: Config, session,
                                                     tmp_path) -> None:  # type: ignore[no-untyped-def]
    sp = start_standin(session, tmp_path, "standin_paste_burst.py", agent="codex",
                       args=["--burst-ms", "80"])
    await sp.ready()
    client = await app_client(aiohttp_client, config, "[codex]\nsettle_ms = 0\nconfirm_ms = 300\n")
    await register(client, sp, "burst")
    texts = [f"rescued {i}" for i in range(5)]
    records = await run_batch(client, "burst", texts)
    for r in records:
        assert r["status"] == "delivered" and r["evidence"]["rescued"] == [["Enter"]], r
    # The early Enter became a newline; the rescue Enter submitted text plus that newline.
    assert sp.submissions() == [t + "\n" for t in texts]


# -- stand-in 2: an Enter before the render settles is swallowed (Claude) -------------------


@pytest.mark.timeout(300)
async def test_render_settle_standin_200(aiohttp_client, config: Config, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = await app_client(aiohttp_client, config)
    panes, records = await run_standins(
        session, tmp_path, client, "standin_render_settle.py", agent="claude",
        args=["--settle-ms", "100", "--placeholder-lines", "3"], seed=2,
    )
    placeholders = sum(1 for r in records if r["evidence"].get("paste_seen") == "placeholder")
    print(f"\nrender-settle: {rates(records)}; placeholder pastes {placeholders}; "
          f"enter_swallowed {events(panes, 'enter_swallowed')}")
    assert sum(r["status"] == "delivered" for r in records) >= 0.97 * N
    assert placeholders > 0  # long pastes were recognised by their [Pasted text …] stand-in


async def test_render_settle_swallowed_enter_is_rescued_or_reported(aiohttp_client, config: Config,
                                                                   session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sp = start_standin(session, tmp_path, "standin_render_settle.py", agent="claude",
                       args=["--settle-ms", "150"])
    await sp.ready()
    client = await app_client(aiohttp_client, config,
                              "[claude]\nsettle_ms = 0\nconfirm_ms = 300\nrescue = []\n")
    await register(client, sp, "settle")
    [lost] = await run_batch(client, "settle", ["lost in the render"])
    assert (lost["status"], lost["reason"]) == ("failed", "not_submitted")
    assert len(sp.events("enter_swallowed")) == 1 and sp.submissions() == []


# -- stand-in 3: a permission dialog only keys may answer ----------------------------------


@pytest.mark.timeout(300)
async def test_dialog_standin_200(aiohttp_client, config: Config, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = await app_client(aiohttp_client, config)
    answers: dict[str, list[str]] = {}
    blocked: list[dict[str, Any]] = []
    stop = asyncio.Event()

    async def orchestrator(sp: StandInPane, sid: str) -> None:
        """Answer each dialog with keys once a prompt is seen waiting on it."""
        mine = answers.setdefault(sid, [])
        while not stop.is_set():
            items = await (await client.get("/api/deliveries", params={
                "session": sid, "status": "retrying"})).json()
            waiting = [d for d in items if d["reason"] == "blocked_dialog"]
            if waiting and len(sp.events("dialog_shown")) > len(mine):
                blocked.append(waiting[0])
                choice = "yes" if len(mine) % 2 == 0 else "no"
                seq = ["Enter"] if choice == "yes" else ["Down", "Enter"]
                resp = await client.post(f"/api/sessions/{sid}/keys", json={"keys": seq, "wait": True})
                body = await resp.json()
                assert resp.status == 200 and body["status"] == "delivered", body
                assert body["kind"] == "keys" and body["keys"] == seq
                mine.append(choice)
            await asyncio.sleep(0.02)

    started: list[asyncio.Task[None]] = []
    try:
        panes, records = await run_standins(
            session, tmp_path, client, "standin_dialog.py", agent="claude",
            args=["--dialog-every", "10"], seed=3,
            on_ready=lambda sp, sid: started.append(asyncio.create_task(orchestrator(sp, sid))),
        )
    finally:
        stop.set()
        await asyncio.gather(*started)
    total = sum(len(a) for a in answers.values())
    print(f"\ndialog: {rates(records)}; dialogs {events(panes, 'dialog_shown')}, answered by keys "
          f"{total}, prompts seen waiting on a dialog {len(blocked)}")
    assert sum(r["status"] == "delivered" for r in records) >= 0.97 * N
    for i, sp in enumerate(panes):
        assert sp.events("dialog_corrupted") == []  # no paste ever landed in a dialog
        assert sp.events("dialog_stray_key") == []
        assert [e["choice"] for e in sp.events("dialog_answer")] == answers[f"claude{i}"]
    assert total >= N // 10 - PANES
    for b in blocked:
        assert b["evidence"]["pattern"] in (r"Do you want to proceed\?", r"^\s*[│┃|]?\s*❯\s*1\.\s*Yes\b")
        assert "Do you want to proceed?" in "\n".join(b["evidence"]["screen"]["lines"])


# -- stand-in 4: the agent exits to a shell ---------------------------------------------------


async def exit_cycles(client: Any, shell: StandInPane, sid: str, n: int) -> tuple[int, int]:
    """Start the agent from the shell, deliver to it, let it exit, try again: 5 cycles of
    ``n / 5`` prompts, the last fifth of each sent after the agent exited."""
    exit_file = shell.tmp / f"{sid}-exit-now"
    cycles = 5
    per = -(-n // cycles)
    dead = max(1, per // 5)
    live = per - dead
    delivered_texts: list[str] = []
    for cycle in range(cycles):
        exit_file.unlink(missing_ok=True)
        launch_from_shell(shell, "standin_exit.py", ["--exit-file", str(exit_file)])
        await shell.ready()
        texts = [f"{sid} cycle {cycle} prompt {i}" for i in range(live)]
        records = await run_batch(client, sid, texts)
        assert all(r["status"] == "delivered" for r in records), records
        delivered_texts += texts
        exit_file.touch()
        await wait_until(lambda: shell.screen().rstrip().endswith("$"), 10, message="back at the shell")
        canaries = [shell.tmp / f"pwned-{sid}-{cycle}-{i}" for i in range(dead)]
        records = await run_batch(client, sid, [f"touch {c}" for c in canaries])
        for r in records:
            assert (r["status"], r["reason"]) == ("failed", "agent_exited"), r
            assert r["attempts"] == 1 and r["evidence"]["agent"]["agent_detected"] is None
        assert not any(c.exists() for c in canaries)  # the shell never ran a prompt
        assert "pwned" not in shell.screen()
    assert shell.submissions() == delivered_texts
    return len(delivered_texts), cycles * dead


@pytest.mark.timeout(300)
async def test_exit_to_shell_standin_200(aiohttp_client, config: Config, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = await app_client(aiohttp_client, config)
    shells = [start_shell(session, tmp_path, name=f"shell{i}") for i in range(PANES)]
    for i, shell in enumerate(shells):
        await wait_until(lambda sh=shell: sh.screen().rstrip().endswith("$"), 10, message="shell prompt")
        await register(client, shell, f"exiting{i}", agent="codex")
    results = await asyncio.gather(*(exit_cycles(client, sh, f"exiting{i}", N // PANES)
                                     for i, sh in enumerate(shells)))
    print(f"\nexit-to-shell: {sum(r[0] for r in results)} delivered while running, "
          f"{sum(r[1] for r in results)} refused with agent_exited after it exited")
