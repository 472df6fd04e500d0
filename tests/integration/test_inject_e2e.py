"""Inject end to end: real daemon app, real tmux panes and PTYs, a real agent-like program.

What is asserted is what the program submitted (its JSON-lines log) and the raw bytes
it read, never just what the daemon claims.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from telepty.config import Config
from tests.helpers import client_final, wait_until
from tests.integration.agents import agent_argv, agent_files, start_agent_pane

PROMPTS = {
    "ascii": "hello world",
    "utf8": "안녕하세요 — ünïcødé ✓ 🚀 中文",
    "tabs": "col1\tcol2\t\tcol3",
    "quotes": """it's "quoted" and `backticked` and 'single'""",
    "shell": "$(rm -rf /tmp/nope) ${HOME} $((1+1)) ; echo pwned | cat && false || true",
    "multiline": "line one\nline two\n\n  indented line four\nlast",
}


def _big(n: int) -> str:
    rng = random.Random(n)
    words = ["alpha", "béta", "γάμμα", "delta\t", "echo", "$(x)", "'q'", '"dq"', "🚀", "中文"]
    out: list[str] = []
    size = 0
    while size < n:
        w = rng.choice(words)
        sep = "\n" if rng.random() < 0.02 else " "
        out.append(w + sep)
        size += len((w + sep).encode())
    text = "".join(out)
    data = text.encode()[:n]
    return data.decode("utf-8", errors="ignore")


async def register_pane(client, ap, sid: str = "p1", agent: str = "other") -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": sid, "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent", "agent": agent,
    })
    assert resp.status == 201, await resp.text()


async def inject(client, target: str, **body):  # type: ignore[no-untyped-def]
    resp = await client.post(f"/api/sessions/{target}/inject", json=body)
    return resp.status, await resp.json()


async def delivery(client, did: str) -> dict:  # type: ignore[type-arg, no-untyped-def]
    return await (await client.get(f"/api/deliveries/{did}")).json()


async def ready(ap) -> None:  # type: ignore[no-untyped-def]
    await wait_until(lambda: "ready>" in ap.screen(), message="agent ready")


# -- exact bytes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROMPTS))
async def test_pane_receives_exact_prompt_as_one_submission(client, session, tmp_path, name) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path)
    await ready(ap)
    await register_pane(client, ap)
    prompt = PROMPTS[name]
    status, body = await inject(client, "p1", prompt=prompt, wait=True, timeout=15)
    assert status == 200, body
    assert body["status"] == "delivered" and body["attempts"] == 1
    await wait_until(lambda: ap.files.submissions() == [prompt], message="one exact submission")
    # tmux framed the paste (the app asked for it) and sent Enter as its own key
    raw = ap.files.raw_bytes()
    assert raw == b"\x1b[200~" + prompt.encode().replace(b"\n", b"\r") + b"\x1b[201~\r"


@pytest.mark.parametrize("size", [100 * 1024, 1024 * 1024])
async def test_pane_large_prompts_arrive_intact(client, session, tmp_path, size) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path)
    await ready(ap)
    await register_pane(client, ap)
    prompt = _big(size)
    status, body = await inject(client, "p1", prompt=prompt, wait=True, timeout=60)
    assert status == 200, body
    assert body["prompt_bytes"] == len(prompt.encode())
    await wait_until(lambda: ap.files.submissions() == [prompt], 30, message="big submission")


async def test_spawned_pty_receives_exact_prompt(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = agent_files(tmp_path)
    argv = agent_argv(files)
    resp = await client.post("/api/sessions/spawn", json={
        "session_id": "sp1", "command": argv[0], "args": argv[1:], "cwd": str(tmp_path)})
    assert resp.status == 201
    await wait_until(lambda: _screen_has(client, "sp1", "ready>"), message="spawned agent ready")
    for prompt in (PROMPTS["multiline"], PROMPTS["utf8"], _big(1024 * 1024)):
        status, body = await inject(client, "sp1", prompt=prompt, wait=True, timeout=60)
        assert status == 200, body
    await wait_until(lambda: len(files.submissions()) == 3, 30, message="three submissions")
    assert files.submissions() == [PROMPTS["multiline"], PROMPTS["utf8"], _big(1024 * 1024)]


async def _screen_has(client, sid: str, text: str) -> bool:  # type: ignore[no-untyped-def]
    resp = await client.get(f"/api/sessions/{sid}/screen")
    return resp.status == 200 and text in (await resp.json())["text"]


async def test_no_enter_pastes_without_submitting(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path)
    await ready(ap)
    await register_pane(client, ap)
    status, body = await inject(client, "p1", prompt="draft", no_enter=True, wait=True)
    assert status == 200 and body["no_enter"] is True
    await wait_until(lambda: ap.files.raw_bytes() == b"\x1b[200~draft\x1b[201~", message="paste only")
    assert ap.files.submissions() == []


# -- quiet guard, retries, failure ----------------------------------------------------------


async def test_busy_pane_gets_nothing_until_quiet(aiohttp_client, config: Config, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from telepty.daemon import create_app

    client = await aiohttp_client(create_app(config.with_(retry_schedule=(0.3,) * 30)))
    ap = start_agent_pane(session, tmp_path, busy=True)
    await wait_until(lambda: "working" in ap.screen(), message="agent busy")
    await register_pane(client, ap)
    status, body = await inject(client, "p1", prompt="when you are free")
    assert status == 202
    did = body["delivery_id"]

    async def retrying():  # type: ignore[no-untyped-def]
        d = await delivery(client, did)
        return d["status"] == "retrying" and d["attempts"] >= 2

    await wait_until(retrying, 10, message="retrying while busy")
    d = await delivery(client, did)
    assert d["reason"] == "busy" and d["next_attempt_at"]
    assert ap.files.raw_bytes() == b""  # nothing reached the busy agent
    ap.files.stop.touch()
    d = await client_final(client, did)
    assert d["status"] == "delivered"
    await wait_until(lambda: ap.files.submissions() == ["when you are free"], message="delivered once")


async def test_retry_exhausted(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path, busy=True)
    await wait_until(lambda: "working" in ap.screen(), message="agent busy")
    await register_pane(client, ap)
    _, body = await inject(client, "p1", prompt="never lands")
    d = await client_final(client, body["delivery_id"])
    assert (d["status"], d["reason"], d["attempts"]) == ("failed", "retry_exhausted", 3)
    assert ap.files.raw_bytes() == b""


async def test_force_skips_the_guard(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path, busy=True)
    await wait_until(lambda: "working" in ap.screen(), message="agent busy")
    await register_pane(client, ap)
    status, body = await inject(client, "p1", prompt="now", force=True, wait=True)
    assert status == 200 and body["attempts"] == 1
    ap.files.stop.touch()  # the busy agent reads its input once it stops working
    await wait_until(lambda: ap.files.submissions() == ["now"], message="forced paste landed")


async def test_pane_killed_mid_queue_fails_pane_dead(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path, busy=True)
    await wait_until(lambda: "working" in ap.screen(), message="agent busy")
    await register_pane(client, ap)
    ids = [(await inject(client, "p1", prompt=f"queued {i}"))[1]["delivery_id"] for i in range(3)]
    await wait_until(lambda: _status_is(client, ids[0], "retrying"), message="head retrying")
    ap.pane.kill()  # type: ignore[attr-defined]
    for did in ids:
        d = await client_final(client, did)
        assert (d["status"], d["reason"]) == ("failed", "pane_dead"), d


async def _status_is(client, did: str, status: str) -> bool:  # type: ignore[no-untyped-def]
    return (await delivery(client, did))["status"] == status


async def test_cancel_while_retrying_and_while_queued(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path, busy=True)
    await wait_until(lambda: "working" in ap.screen(), message="agent busy")
    await register_pane(client, ap)
    first = (await inject(client, "p1", prompt="cancel me"))[1]["delivery_id"]
    second = (await inject(client, "p1", prompt="me too"))[1]["delivery_id"]
    third = (await inject(client, "p1", prompt="keep me"))[1]["delivery_id"]
    await wait_until(lambda: _status_is(client, first, "retrying"), message="retrying")
    for did in (first, second):
        resp = await client.delete(f"/api/deliveries/{did}")
        assert resp.status == 200
        assert (await resp.json())["status"] == "cancelled"
    resp = await client.delete(f"/api/deliveries/{first}")
    assert resp.status == 409 and (await resp.json())["error"] == "not_cancellable"
    ap.files.stop.touch()
    assert (await client_final(client, third))["status"] == "delivered"
    await wait_until(lambda: ap.files.submissions() == ["keep me"], message="only the kept one")


async def test_fifo_under_concurrent_injects(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path)
    await ready(ap)
    await register_pane(client, ap)
    other = start_agent_pane(session, tmp_path, name="other")
    await ready(other)
    await register_pane(client, other, sid="p2")
    prompts = [f"message {i:02d}\nbody {i}" for i in range(12)]
    results = await asyncio.gather(
        *(inject(client, "p1", prompt=p) for p in prompts),
        *(inject(client, "p2", prompt=f"other {i}") for i in range(4)),
    )
    prompt_of = {body["delivery_id"]: p for p, (_, body) in zip(prompts, results, strict=False)}
    finals = [await client_final(client, did, 30) for did in prompt_of]
    assert all(d["status"] == "delivered" for d in finals)
    expected = [prompt_of[d["delivery_id"]] for d in sorted(finals, key=lambda d: d["seq"])]
    await wait_until(lambda: len(ap.files.submissions()) == 12, 20, message="12 submissions")
    assert ap.files.submissions() == expected  # accepted order, none interleaved
    await wait_until(lambda: len(other.files.submissions()) == 4, 20, message="other session")


# -- bad input ---------------------------------------------------------------------------


async def _count(client) -> int:  # type: ignore[no-untyped-def]
    return len(await (await client.get("/api/deliveries", params={"limit": 1000})).json())


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "missing_field"),
        ({"prompt": ""}, 400, "missing_field"),
        ({"prompt": 5}, 400, "invalid_field"),
        ({"prompt": "x", "force": "yes"}, 400, "invalid_field"),
        ({"prompt": "x", "quiet_ms": -1}, 400, "invalid_field"),
        ({"prompt": "esc \x1b[31m red"}, 400, "invalid_prompt"),
        ({"prompt": "bell \x07"}, 400, "invalid_prompt"),
        ({"prompt": "cr \r"}, 400, "invalid_prompt"),
        ({"prompt": "a" * (1024 * 1024 + 1)}, 413, "too_large"),
    ],
)
async def test_bad_inject_bodies_change_nothing(client, body, status, code) -> None:  # type: ignore[no-untyped-def]
    await client.post("/api/sessions/register", json={"session_id": "t1", "command": "claude",
                                                       "pid": os.getpid()})
    resp = await client.post("/api/sessions/t1/inject", json=body)
    assert resp.status == status
    assert (await resp.json())["error"] == code
    assert await _count(client) == 0


async def test_malformed_json_inject(client) -> None:  # type: ignore[no-untyped-def]
    await client.post("/api/sessions/register", json={"session_id": "t1", "command": "claude",
                                                       "pid": os.getpid()})
    resp = await client.post("/api/sessions/t1/inject", data=b'{"prompt": "x"',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_json"
    assert await _count(client) == 0


async def test_unknown_session_404_no_record(client) -> None:  # type: ignore[no-untyped-def]
    status, body = await inject(client, "ghost", prompt="hello")
    assert status == 404 and body["error"] == "session_not_found"
    assert await _count(client) == 0


async def test_legacy_field_is_accepted_with_warning(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path)
    await ready(ap)
    await register_pane(client, ap)
    status, body = await inject(client, "p1", text="old style")
    assert status == 202
    assert any("deprecated_field" in w for w in body["warnings"])
    assert (await client_final(client, body["delivery_id"]))["status"] == "delivered"
    await wait_until(lambda: ap.files.submissions() == ["old style"], message="legacy delivered")


async def test_alias_target_and_idempotency(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ap = start_agent_pane(session, tmp_path)
    await ready(ap)
    await register_pane(client, ap, sid="claude")
    # a second registration under the same name with replace → alias "claude" follows it
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": "claude", "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent", "replace": True})
    assert (await resp.json())["id"] == "claude-2"
    headers = {"Idempotency-Key": "abc-123"}
    r1 = await client.post("/api/sessions/claude/inject", json={"prompt": "once"}, headers=headers)
    r2 = await client.post("/api/sessions/claude/inject", json={"prompt": "once"}, headers=headers)
    b1, b2 = await r1.json(), await r2.json()
    assert b1["delivery_id"] == b2["delivery_id"] and b1["session_id"] == "claude-2"
    await client_final(client, b1["delivery_id"])
    await wait_until(lambda: ap.files.submissions() == ["once"], message="delivered once")
    assert await _count(client) == 1


async def test_tmux_missing_is_503_for_pane_targets(aiohttp_client, config: Config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from telepty.daemon import create_app

    client = await aiohttp_client(create_app(config.with_(tmux_bin="/nonexistent/tmux")))
    await client.post("/api/sessions/register", json={"type": "pane", "session_id": "p9",
                                                       "tmux_pane": "%1", "command": "claude"})
    status, body = await inject(client, "p9", prompt="hello")
    assert status == 503 and body["error"] == "tmux_unavailable"
    assert await _count(client) == 0


# -- everyday programs, not just the stand-in agent -------------------------------------


async def _pane_running(session, shell: str):  # type: ignore[no-untyped-def]
    pane = session.new_window(window_name="prog", window_shell=shell).active_pane
    sock = session.server.cmd("display-message", "-p", "#{socket_path}").stdout[0]
    return pane, sock


async def test_bash_readline_runs_the_injected_line_verbatim(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pane, sock = await _pane_running(session, "env PS1='$ ' bash --norc --noprofile -i")
    await wait_until(lambda: "$" in "\n".join(pane.capture_pane()), message="bash prompt")
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": "sh", "tmux_pane": pane.pane_id, "tmux_socket": sock,
        "command": "bash"})
    assert resp.status == 201
    out = tmp_path / "bash-out.txt"
    text = "it's \"quoted\"\ttab — ünïcode $HOME"
    # the shell expands $(…)/$HOME only where the prompt asks it to: here, inside single quotes, never
    prompt = f"printf '%s' '{text.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}' > {out}"
    status, body = await inject(client, "sh", prompt=prompt, wait=True)
    assert status == 200, body
    await wait_until(lambda: out.exists() and out.read_text() == text, message="bash wrote the text")


async def test_python_input_loop_receives_each_prompt(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shlex
    import sys

    out = tmp_path / "py-out.txt"
    script = ("import sys\n"
              "while True:\n"
              "    line = input('py> ')\n"
              f"    open({str(out)!r}, 'a', encoding='utf-8').write(line + '\\n')\n")
    pane, sock = await _pane_running(session, shlex.join([sys.executable, "-c", script]))
    await wait_until(lambda: "py>" in "\n".join(pane.capture_pane()), message="python prompt")
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": "py", "tmux_pane": pane.pane_id, "tmux_socket": sock,
        "command": "python3"})
    assert resp.status == 201
    prompts = ["first line", "한국어 and emoji 🚀", "$(not run) `nor this`", "tab\there"]
    for p in prompts:
        status, body = await inject(client, "py", prompt=p, wait=True)
        assert status == 200, body
    await wait_until(lambda: out.exists() and out.read_text().splitlines() == prompts,
                     message="python read every prompt")
