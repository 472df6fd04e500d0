"""The real Claude Code, Codex CLI and Gemini CLI judge the shipped profiles, offline.

Each test runs one agent (the pinned npm versions in scripts/agent-versions.txt) in its
own tmux server with a private HOME, talking to the mock model API, behind a real
daemon with the shipped profiles and their real settle delays — wrapped by
``telepty wrap`` (the daemon reaches it through the wrapper) or as a registered tmux
pane (through the pane). The mock's log of the user messages it received is the only
evidence that a prompt was submitted.

One test per agent and mode walks through every behaviour once, in this order:

1. the screen reads ``idle``;
2. back-to-back prompts (multi-line with tabs, quotes, ``$(…)`` and unicode; 20 kB;
   200 kB; a short one) → each delivered, each received as its own exact message,
   in order;
3. the agent busy thinking → ``explain`` says ``busy``; the next prompt waits and
   lands alone, after the answer ended;
4. a permission dialog → ``explain`` says ``blocked``, the next prompt waits
   (``blocked_dialog``) with nothing typed into the dialog, and goes through after
   ``telepty keys … Escape``;
5. the profile's ``clear_keys`` empty a half-typed input and a long paste's placeholder,
   and nothing reaches the model;
6. the agent quits → the next prompt fails ``agent_exited`` and the shell left behind
   never sees it.

The retry schedule is a long run of short delays: a prompt that finds the agent busy is
retried on the timer only (see the report of issue 14; the engine change is issue 15).
With ``TELEPTY_SAVE_SCREENS=DIR`` the screens the daemon judged are written to DIR (the
fixtures in tests/realagents/screens come from there).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from telepty.sessions.agent_version import running_version
from tests.helpers import DaemonProcess, wait_until_sync
from tests.realagents.harness import (
    AGENTS,
    MODES,
    PANE,
    WRAP,
    AgentRun,
    agent_version,
    as_received,
    missing_agents,
    start_agent,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REAL_SETTINGS = {
    "TELEPTY_SETTLE_MS": "",  # the profiles' own settle delays
    "TELEPTY_QUIET_MS": "300",
    "TELEPTY_RETRY_SCHEDULE": ",".join(["0.5"] * 150),
    "TELEPTY_LOG_LEVEL": "INFO",
}
MULTILINE = ('Review this, please:\n\tdef f(x):\n\t\treturn "$(rm -rf ~)" + \'quoted\' + `ls`\n'
             "ünïcødé ✓ — 日本語 — ok?")


def big(label: str, size: int) -> str:
    line = f"{label} line {{i:05d}}:\tthe quick brown fox jumps over the lazy dog {{i}}"
    out, i = [], 0
    while sum(len(x) + 1 for x in out) < size:
        out.append(line.format(i=i))
        i += 1
    return "\n".join(out)


PROMPTS = [MULTILINE, big("twenty-kB", 20_000), big("two-hundred-kB", 200_000), "The last one, alone."]


@pytest.fixture(scope="module", autouse=True)
def _agents_installed() -> None:
    missing = missing_agents()
    assert not missing, f"agent CLIs not installed: {missing}; run ./scripts/setup.sh test"


class Scenario:
    """One agent, one daemon, and the questions the test asks them."""

    def __init__(self, daemon: DaemonProcess, run: AgentRun, save: Path | None) -> None:
        self.d = daemon
        self.run = run
        self.sid = run.session_id
        self.save_dir = save

    # -- asking the daemon ----------------------------------------------------------

    def explain(self) -> dict[str, Any]:
        status, body = self.d.request("GET", f"/api/sessions/{self.sid}/explain?lines=60")
        return body if status == 200 else {"verdict": f"http {status}", "body": body}

    def wait_verdict(self, verdict: str, timeout: float = 30, save_as: str | None = None) -> dict[str, Any]:
        got = wait_until_sync(lambda: (e := self.explain()).get("verdict") == verdict and e, timeout,
                              interval=0.1, message=f"explain {verdict!r}; last: {self.brief()}")
        if save_as:
            self.save(save_as, got)
        return got  # type: ignore[no-any-return]

    def brief(self) -> str:
        e = self.explain()
        lines = "\n".join(e.get("lines") or [])
        return f"{e.get('verdict')} ({e.get('why')})\n{lines}"

    def inject(self, prompt: str, **extra: Any) -> str:
        status, body = self.d.request("POST", f"/api/sessions/{self.sid}/inject",
                                      {"prompt": prompt, **extra}, timeout=30)
        assert status in (200, 202), body
        return str(body["delivery_id"])

    def deliver(self, prompt: str, timeout: float = 60) -> dict[str, Any]:
        """Inject and wait for the record to be final; it must say delivered."""
        record = self.final(self.inject(prompt), timeout)
        assert record["status"] == "delivered", (record["reason"], record["detail"], self.brief())
        return record

    def keys(self, *keys: Any) -> dict[str, Any]:
        status, body = self.d.request("POST", f"/api/sessions/{self.sid}/keys",
                                      {"keys": list(keys), "wait": True, "timeout": 20}, timeout=30)
        assert status == 200 and body["status"] == "delivered", body
        return body  # type: ignore[no-any-return]

    def final(self, delivery_id: str, timeout: float = 60) -> dict[str, Any]:
        try:
            return self.d.final(delivery_id, timeout)
        except AssertionError:
            r = self.d.delivery(delivery_id)
            raise AssertionError(f"{delivery_id} not final after {timeout}s: {r['status']} "
                                 f"{r['reason']} {r['detail']} stage={r['stage']}\n"
                                 f"screen: {self.brief()}") from None

    def received(self) -> list[str]:
        return self.run.mock.received()

    def wait_received(self, count: int, timeout: float = 15) -> list[str]:
        """The mock's messages once there are ``count``: the agent sends its request a
        moment after the screen shows the prompt left the input box."""
        try:
            wait_until_sync(lambda: len(self.received()) >= count, timeout, interval=0.05)
        except AssertionError:
            got = [_short(m) for m in self.received()]
            raise AssertionError(f"{count} messages expected at the mock, got {got}\n"
                                 f"screen: {self.brief()}") from None
        return self.received()

    def save(self, name: str, explained: dict[str, Any]) -> None:
        if self.save_dir is None:
            return
        self.save_dir.mkdir(parents=True, exist_ok=True)
        path = self.save_dir / f"{self.run.agent}-{self.run.mode}-{name}.txt"
        path.write_text("\n".join(explained.get("lines") or []) + "\n", encoding="utf-8")


@pytest.fixture
def scenario(request: pytest.FixtureRequest, daemon_factory: Callable[..., DaemonProcess],
             tmp_path: Path, home: Path) -> Iterator[Scenario]:
    agent, mode = request.param
    d = daemon_factory(**REAL_SETTINGS).start()
    run = start_agent(agent, mode, tmp_path / "agent", telepty_home=home,
                      telepty_env={"TELEPTY_PORT": "1", "TELEPTY_LOG_LEVEL": "WARNING"})
    try:
        run.wait_ready()
        if mode == PANE:
            cli = d.cli("register-pane", run.pane, "--socket", str(run.tmux.socket), "--id",
                        run.session_id)
            assert cli.returncode == 0, cli.stderr
        else:
            wait_until_sync(lambda: d.request("GET", f"/api/sessions/{run.session_id}")[0] == 200,
                            30, message="the wrapper to register")
        save = os.environ.get("TELEPTY_SAVE_SCREENS")
        yield Scenario(d, run, Path(save) if save else None)
    finally:
        run.stop()


# Codex draws with a diff renderer: a cell is written once and never again while it does
# not change (the "›" of its input line). The wrapper transport keeps one screen model
# per stream for its life (delivery.transports.stream.stream_view); a model rebuilt from a recent
# tail would lose the "›" once enough transcript followed it, and take the transcript's
# last "› …" for the input line. codex-wrap is the case that shows it.
CASES = [pytest.param((a, m), id=f"{a}-{m}") for a in AGENTS for m in MODES]


@pytest.mark.parametrize("scenario", CASES, indirect=True)
def test_real_agent(scenario: Scenario) -> None:
    s = scenario
    agent = s.run.agent
    session = s.d.request("GET", f"/api/sessions/{s.sid}")[1]
    assert session["agent"] == agent, session

    # 1. idle, as the profile reads it
    idle = s.wait_verdict("idle", 60, save_as="idle")
    assert idle["agent_detected"] == agent and idle["transport"] == (
        "wrapper" if s.run.mode == WRAP else "paste_buffer"), idle
    # The version doctor reads from the install is the pinned one, which the profile was
    # checked on: no warning.
    assert running_version(idle["pid"], agent) == agent_version(agent) == idle["profile"]["verified_version"]

    # 2. back to back: each its own exact message, in order
    ids = [s.inject(p) for p in PROMPTS]
    records = [s.final(i, 240) for i in ids]
    assert [r["status"] for r in records] == ["delivered"] * len(PROMPTS), [
        (r["status"], r["reason"], r["detail"]) for r in records]
    assert all(r["confirmed"] == "screen" for r in records), [r["confirmed"] for r in records]
    expected = [as_received(agent, p) for p in PROMPTS]
    got = s.wait_received(len(expected))
    assert got == expected, _diff(expected, got)

    # 3. busy thinking: the next prompt waits, then lands alone after the answer
    s.deliver("Think hard about this one. [mock:slow=5]")
    s.wait_verdict("busy", 10, save_as="busy")
    after = s.inject("Asked while it was thinking.")
    seen_busy = wait_until_sync(lambda: s.d.delivery(after)["reason"] == "busy", 10, interval=0.05,
                                message="the waiting prompt to be held as busy")
    assert seen_busy
    waited = s.final(after, 60)
    assert waited["status"] == "delivered", {
        k: waited.get(k) for k in ("status", "reason", "detail", "attempts", "evidence")}
    turns = s.wait_received(len(PROMPTS) + 2)
    assert turns[len(PROMPTS):] == [
        "Think hard about this one. [mock:slow=5]", "Asked while it was thinking."], turns
    answered = s.run.mock.answered_at(len(turns) - 1)
    landed = s.run.mock.received_times()[-1][1]
    assert answered is not None and landed > answered, (answered, landed)

    if agent == "claude":
        # 3b. Claude takes a prompt typed while it works into its queue, and its input
        # then reads "❯ Press up to edit queued messages": the prompt was taken (not
        # "other text" in the input), and reaches the model as its own message once the
        # answer is done. ``force`` sends it while busy on purpose; without it the same
        # happens when the answer's last output is a quiet window old before Claude
        # ends its turn.
        s.deliver("Think again. [mock:slow=4]")
        s.wait_verdict("busy", 10)
        queued = s.final(s.inject("Queued while it was thinking.", force=True), 60)
        assert (queued["status"], queued["confirmed"]) == ("delivered", "screen"), {
            k: queued.get(k) for k in ("status", "reason", "detail", "evidence")}
        assert s.wait_received(len(PROMPTS) + 4, 30)[len(PROMPTS) + 2:] == [
            "Think again. [mock:slow=4]", "Queued while it was thinking."]
        s.wait_verdict("idle", 30)

    # 4. a permission dialog holds the next prompt; Escape answers it
    base = len(s.received())
    marker = s.run.project / "mock-tool-ran"
    s.deliver("Please run the tool. [mock:tool]")
    s.wait_verdict("blocked", 30, save_as="dialog")
    held = s.inject("Sent while the dialog was open.")
    wait_until_sync(lambda: s.d.delivery(held)["reason"] == "blocked_dialog", 15, interval=0.05,
                    message=f"the prompt to wait for the dialog: {s.d.delivery(held)}")
    assert s.d.delivery(held)["status"] != "delivered"
    assert "Sent while the dialog was open." not in s.received()
    assert s.explain()["verdict"] == "blocked", s.brief()  # nothing was typed into it
    s.keys("Escape")
    assert s.final(held, 60)["status"] == "delivered"
    assert s.wait_received(base + 2)[base:] == [
        "Please run the tool. [mock:tool]", "Sent while the dialog was open."]
    assert not marker.exists(), "the dialog was answered 'yes' by something"
    s.wait_verdict("idle", 30)

    # 5. clear_keys empty a half-typed input and a placeholder; nothing is submitted
    profile = idle["profile"]
    before = len(s.received())
    s.keys({"text": "half typed, never sent"})
    s.wait_verdict("composer-has-text", 15, save_as="typed")
    s.keys(*profile["clear_keys"])
    s.wait_verdict("idle", 15)
    pasted = s.final(s.inject(big("placeholder", 30_000), no_enter=True), 60)
    assert pasted["status"] == "delivered" and pasted["evidence"].get("paste_seen") == "placeholder", pasted
    s.wait_verdict("composer-has-text", 15, save_as="placeholder")
    s.keys(*profile["clear_keys"])
    s.wait_verdict("idle", 15)
    assert len(s.received()) == before, s.received()[before:]

    # 6. the agent quits: the next prompt fails agent_exited, the shell never sees it
    s.run.quit()
    gone = s.final(s.inject("echo THIS-MUST-NOT-RUN"), 60)
    assert gone["status"] == "failed" and gone["reason"] == "agent_exited", gone
    assert "THIS-MUST-NOT-RUN" not in s.run.text()
    assert s.explain()["verdict"] == "agent-exited"


def _diff(expected: list[str], got: list[str]) -> str:
    lines = [f"expected {len(expected)} messages, got {len(got)}"]
    for i in range(max(len(expected), len(got))):
        e = expected[i] if i < len(expected) else None
        g = got[i] if i < len(got) else None
        if e != g:
            lines.append(f"#{i}: expected {_short(e)} got {_short(g)}")
    return "\n".join(lines)


def _short(text: str | None) -> str:
    if text is None:
        return "nothing"
    return f"{len(text)} chars {text[:60]!r}…{text[-30:]!r}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
