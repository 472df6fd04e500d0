"""Every command shown in README.md, executed as written, against a real daemon.

The README's ``sh``/``bash``/``console`` code blocks are parsed into command lines
(comments stripped, ``\\`` continuations joined, identical lines run once) and each one
runs through ``bash -c`` in README order, in a world made to look like a new user's:

- a private ``HOME`` (so ``~/.config/telepty`` is the daemon's home, literally), a
  private tmux server (``TMUX_TMPDIR``: plain ``tmux`` commands reach it, nothing else
  does), and a ``PATH`` where ``claude`` and ``codex`` are the agent stand-ins from
  ``tests/programs`` (a Claude-/Codex-looking TUI that logs every submitted prompt);
- the daemon is the tutorial's own ``telepty daemon``, on a free port instead of 3848
  (``TELEPTY_PORT``; ``curl`` lines get the same port written in): the only rewrite.

Foreground programs run where a person would run them: ``tmux new-session`` in a
pseudo-terminal of its own, ``telepty wrap`` and ``telepty attach`` typed into tmux
panes, ``telepty daemon`` and ``telepty bus tail`` as background processes. Each line
has an entry in ``SPECS`` saying how to run it and what must come of it (exit code,
output, and for the tutorial what the agent really received). A README line without
an entry fails the test, and so does an entry whose line left the README.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import ptyprocess
import pytest

from tests.helpers import ROOT, free_port, wait_until_sync

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
SHELL_LANGS = {"sh", "bash", "console", "shell"}
DEFAULT_PORT = "3848"
TIMEOUT = 30.0


# -- reading the README -------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    text: str  # as bash gets it (continuations kept, trailing comment removed)
    key: str  # one line, whitespace collapsed: what SPECS is keyed by
    lineno: int
    section: str


def strip_comment(line: str) -> str:
    """Drop a trailing ``# comment``: a ``#`` outside quotes, at the start or after a blank."""
    quote: str | None = None
    escaped = False
    prev = " "
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and prev.isspace():
            return line[:i].rstrip()
        prev = ch
    return line.rstrip()


def readme_commands(text: str | None = None) -> list[Command]:
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    out: list[Command] = []
    section = ""
    lang: str | None = None
    pending: list[str] = []
    start = 0
    for n, raw in enumerate(lines, 1):
        if lang is None:
            if raw.startswith("#"):
                section = raw.lstrip("#").strip()
            m = re.match(r"^```\s*([\w-]*)", raw)
            if m:
                lang = m.group(1).lower() or "text"
            continue
        if raw.startswith("```"):
            assert not pending, f"README.md:{start}: a command ends in a continuation '\\'"
            lang = None
            continue
        if lang not in SHELL_LANGS:
            continue
        line = raw
        if lang == "console" and not pending:
            if not line.startswith("$ "):
                continue  # output shown after a command
            line = line[2:]
        if not pending:
            line = strip_comment(line)
            if not line.strip():
                continue
            start = n
        if line.endswith("\\"):
            pending.append(line)
            continue
        pending.append(strip_comment(line) if len(pending) else line)
        text_ = "\n".join(pending)
        key = " ".join(text_.replace("\\\n", " ").split())
        out.append(Command(text_, key, start, section))
        pending = []
    return out


# -- the world the commands run in ----------------------------------------------------------


@dataclass
class Result:
    rc: int
    out: str
    err: str


@dataclass
class World:
    base: Path  # short (tmux socket paths are limited), removed afterwards
    port: int
    env: dict[str, str] = field(default_factory=dict)
    background: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)
    client: ptyprocess.PtyProcess | None = None
    panes: dict[str, str] = field(default_factory=dict)  # README line → the pane it was typed in
    notes: dict[str, int] = field(default_factory=dict)  # what a setup saw, for its check

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def telepty_home(self) -> Path:
        return self.home / ".config" / "telepty"

    @property
    def work(self) -> Path:
        return self.base / "project"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # running things -----------------------------------------------------------------------

    def sh(self, line: str, *, env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> Result:
        """``bash -c LINE`` in the world (stdin empty, as from a script), extra ``env`` on top."""
        proc = subprocess.run(["bash", "-c", line], env={**self.env, **(env or {})}, cwd=self.work,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout.decode(errors="replace"),
                      proc.stderr.decode(errors="replace"))

    def start_background(self, key: str, line: str) -> None:
        log = self.base / f"bg-{len(self.background)}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(["bash", "-c", line], env=self.env, cwd=self.work, stdout=f,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.background[key] = (proc, log)

    def output(self, key: str) -> str:
        return self.background[key][1].read_text(errors="replace")

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(["tmux", *args], env=self.env, capture_output=True, text=True, timeout=10)
        assert proc.returncode == 0, f"tmux {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def screen(self, pane: str) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", pane)

    def wait_prompt(self, pane: str) -> None:
        """Until the shell in ``pane`` shows its prompt (``$``, set in ~/.bash_profile)."""
        wait_until_sync(lambda: self.screen(pane).rstrip().endswith("$"), 10,
                        message=f"a shell prompt in pane {pane}")

    def type_into(self, pane: str, line: str) -> None:
        self.tmux("send-keys", "-t", pane, "-l", line)
        self.tmux("send-keys", "-t", pane, "Enter")

    def new_window(self) -> str:
        pane = self.tmux("new-window", "-d", "-t", "agents:", "-P", "-F", "#{pane_id}").strip()
        self.wait_prompt(pane)
        return pane

    def pane_command(self, pane: str) -> str:
        return self.tmux("display-message", "-p", "-t", pane, "#{pane_current_command}").strip()

    # the daemon ---------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("x-telepty-token", (self.telepty_home / "token").read_text().strip())
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def session(self, sid: str) -> dict[str, Any] | None:
        status, body = self.api("GET", f"/api/sessions/{sid}")
        return body if status == 200 else None

    def subscribers(self) -> int:
        req = urllib.request.Request(self.url + "/metrics")
        with urllib.request.urlopen(req, timeout=5) as resp:
            text = resp.read().decode()
        m = re.search(r"^telepty_bus_subscribers(?:\{[^}]*\})? (\d+)", text, re.M)
        return int(m.group(1)) if m else 0

    def session_env(self, sid: str) -> dict[str, str]:
        """The telepty variables of the process running in session ``sid`` ("inside" it)."""
        info = self.session(sid)
        assert info and info.get("pid"), f"session {sid} has no pid: {info}"
        root = psutil.Process(info["pid"])
        for proc in [root, *root.children(recursive=True)]:
            try:
                environ = proc.environ()
            except psutil.Error:
                continue
            if environ.get("TELEPTY_SESSION_TOKEN"):
                return {k: v for k, v in environ.items() if k.startswith("TELEPTY_SESSION_")}
        raise AssertionError(f"no process of session {sid} carries a session token")

    # the stand-in agents -------------------------------------------------------------------

    def agent_log(self, agent: str) -> list[dict[str, Any]]:
        path = self.base / "agents" / f"{agent}.jsonl"
        if not path.exists():
            return []
        data = path.read_text()
        return [json.loads(line) for line in data[: data.rfind("\n") + 1].splitlines() if line]

    def submissions(self, agent: str = "claude") -> list[str]:
        return [e["text"] for e in self.agent_log(agent) if "n" in e]

    def wait_submission(self, text: str, agent: str = "claude", count: int = 1) -> None:
        wait_until_sync(lambda: self.submissions(agent).count(text) >= count, 20,
                        message=f"{agent} to receive {text!r}")
        assert self.submissions(agent).count(text) == count, (text, self.submissions(agent))


STANDIN = """#!/bin/bash
# Stand-in for the {agent} CLI (tests/programs/{program}): looks like it, logs what it gets.
exec -a {agent} {python} {program_path} --out {log} --style {agent} {extra}"$@"
"""


def make_world(base: Path) -> World:
    w = World(base=base, port=free_port())
    for d in (w.home, w.work, base / "bin", base / "tmux", base / "agents"):
        d.mkdir(parents=True)
    for agent in ("claude", "codex"):
        program = "standin_render_settle.py"
        script = base / "bin" / agent
        script.write_text(STANDIN.format(
            agent=agent, program=program, python=sys.executable,
            program_path=ROOT / "tests" / "programs" / program, log=base / "agents" / f"{agent}.jsonl",
            extra="--settle-ms 0 "))
        script.chmod(0o755)
    path = f"{base / 'bin'}:{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEPTY_", "TMUX", "XDG_"))}
    env.update(
        HOME=str(w.home), XDG_CONFIG_HOME=str(w.home / ".config"), TMUX_TMPDIR=str(base / "tmux"),
        PATH=path, SHELL="/bin/bash", TERM="xterm-256color", LANG="C.UTF-8", LC_ALL="C.UTF-8",
        PYTHONUNBUFFERED="1",
        # Only the port differs from a new user's defaults, plus test-sized timings.
        TELEPTY_PORT=str(w.port), TELEPTY_MACHINE_ID="readme-test", TELEPTY_QUIET_MS="200",
        TELEPTY_RETRY_SCHEDULE="0.3,0.6,1", TELEPTY_SETTLE_MS="50", TELEPTY_LOG_LEVEL="INFO",
    )
    w.env = env
    # A login shell in a tmux pane reads /etc/profile, which resets PATH: a person's own
    # profile puts it back, and so does ours (with a short prompt the test can spot).
    (w.home / ".bash_profile").write_text(f'export PATH="{path}"\nPS1="$ "\nunset HISTFILE\n')
    return w


def teardown(w: World) -> None:
    """Stop only what this test started: its background processes, its tmux server, its PTY."""
    subprocess.run(["tmux", "kill-server"], env=w.env, capture_output=True, timeout=10)
    for proc, _ in w.background.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: bash -c and what it runs
    for proc, _ in w.background.values():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    if w.client is not None and w.client.isalive():
        w.client.terminate(force=True)


# -- what each README line is, and what must come of it ---------------------------------------

Check = Callable[[World, Result], None]


@dataclass(frozen=True)
class Spec:
    how: str = "run"  # run | background | client | pane | exempt
    rc: int = 0
    out: tuple[str, ...] = ()  # substrings of stdout
    setup: Callable[[World], None] | None = None
    check: Check | None = None
    inside: str | None = None  # run with this session's identity (as if typed in it)
    runner: Callable[[World, str], Result] | None = None  # how=run, when bash -c alone won't do
    pane: str = "new"  # for how=pane: "agents" (the tmux session) or "new" (a new window)
    why: str = ""  # for how=exempt


def _scripts_check(name: str) -> Check:
    def check(w: World, _: Result) -> None:
        path = ROOT / "scripts" / name
        assert path.is_file() and os.access(path, os.X_OK), f"{path} must exist and be executable"
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
        text = path.read_text()
        assert 'source "$ROOT/scripts/setup.sh"' in text
        assert ("telepty\" daemon \"$@\"" in text) if name == "run" else ("pytest" in text)
    return check


def _daemon_up(w: World, _: Result) -> None:
    def up() -> bool:
        try:
            info = json.loads((w.telepty_home / "daemon.json").read_text())
            with urllib.request.urlopen(info["url"] + "/api/health", timeout=1) as r:
                return r.status == 200
        except (OSError, ValueError, KeyError):
            return False

    wait_until_sync(up, 20, message="`telepty daemon` to answer")
    info = json.loads((w.telepty_home / "daemon.json").read_text())
    assert info["url"] == w.url
    assert stat.S_IMODE((w.telepty_home / "token").stat().st_mode) == 0o600
    assert (w.telepty_home / "telepty.db").exists()


def _tmux_session_up(w: World, _: Result) -> None:
    wait_until_sync(lambda: "agents" in w.sh("tmux list-sessions -F '#{session_name}'").out, 10,
                    message="tmux session agents")
    w.wait_prompt("agents")


def _wrapped_claude(w: World, _: Result) -> None:
    wait_until_sync(lambda: (w.session("claude") or {}).get("state") == "running", 15,
                    message="the wrapped session claude to register")
    s = w.session("claude")
    assert s is not None
    pane = w.tmux("display-message", "-p", "-t", "agents", "#{pane_id}").strip()
    assert (s["type"], s["agent"], s["tmux_pane"]) == ("wrapped", "claude", pane), s
    wait_until_sync(lambda: "? for shortcuts" in w.screen(pane), 10, message="claude's screen")


def _tail_ready(key: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        w.notes[key] = w.subscribers()
    return setup


def _tail_connected(key: str) -> Check:
    def check(w: World, _: Result) -> None:
        before = w.notes[key]
        wait_until_sync(lambda: w.subscribers() > before, 10, message=f"`{key}` to subscribe")
    return check


TUTORIAL_TAIL = "telepty bus tail --kinds inject_written,message_routed,delivery.failed"
REFERENCE_TAIL = "telepty bus tail --kinds inject_written"


def tail_events(w: World, key: str) -> list[tuple[str, str]]:
    """(kind, target) of each line `bus tail` printed: ``seq  ts  kind  target  {…}``."""
    events = []
    for line in w.output(key).splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0].isdigit():
            events.append((parts[2], parts[3]))
    return events


def _listed_claude(w: World, r: Result) -> None:
    rows = [line.split() for line in r.out.splitlines()[1:]]
    claude = next(row for row in rows if row[0] == "claude")
    assert claude[1:5] == ["wrapped", "claude", "running", "%0"], r.out


DELIVERED_RE = re.compile(r"^dlv_[0-9a-f]+ delivered$", re.M)


def _tutorial_inject(w: World, r: Result) -> None:
    assert DELIVERED_RE.search(r.out), r.out
    assert w.submissions() == ["Summarise README.md in one sentence."]
    wait_until_sync(lambda: ("inject_written", "claude") in tail_events(w, TUTORIAL_TAIL), 10,
                    message="bus tail to show inject_written")


def _tutorial_curl(w: World, r: Result) -> None:
    receipt = json.loads(r.out)
    assert receipt["ok"] is True and receipt["kind"] == "turn_request", receipt
    assert receipt["route"]["status"] == "accepted" and receipt["route"]["session_id"] == "claude"
    w.wait_submission("Now list three risks in it.")
    assert w.submissions() == ["Summarise README.md in one sentence.", "Now list three risks in it."]

    def tail_shows_route() -> bool:
        return tail_events(w, TUTORIAL_TAIL)[:3] == [
            ("inject_written", "claude"), ("inject_written", "claude"), ("message_routed", "claude")]

    wait_until_sync(tail_shows_route, 10, message=f"bus tail: two inject_written, then message_routed "
                    f"(got {tail_events(w, TUTORIAL_TAIL)})")
    _, page = w.api("GET", "/api/bus/events?since=0&limit=1000")
    written = [e for e in page["events"] if e["kind"] == "inject_written"]
    assert [e["source_type"] for e in written] == ["cli", "bus_auto_route"], written


def _deliveries_listed(w: World, r: Result) -> None:
    rows = [line.split() for line in r.out.splitlines()[1:]]
    assert len(rows) >= 2 and all(row[1:3] == ["claude", "delivered"] for row in rows), r.out


def _spawned_worker(w: World, r: Result) -> None:
    s = w.session("worker")
    assert s is not None and (s["type"], s["state"]) == ("spawned", "running"), s


def _attach_worker(w: World, _: Result) -> None:
    pane = w.panes["telepty attach worker"]
    wait_until_sync(lambda: w.pane_command(pane) != "bash", 10, message="telepty attach to start")
    # Typed into the attached terminal, run by the worker's shell: seen on its screen.
    w.type_into(pane, "echo attach-ok-$((6*7))")

    def worker_shows_it() -> bool:
        return "attach-ok-42" in w.api("GET", "/api/sessions/worker/screen")[1]["text"]

    wait_until_sync(worker_shows_it, 10, message="the worker to run what was typed through attach")
    wait_until_sync(lambda: "attach-ok-42" in w.screen(pane), 10, message="attach to show the output")
    w.tmux("send-keys", "-t", pane, "C-]")  # detach
    wait_until_sync(lambda: w.pane_command(pane) == "bash", 10, message="Ctrl-] to detach")
    assert (w.session("worker") or {}).get("state") == "running"  # detaching leaves it running


def _panes_lists_claude(w: World, r: Result) -> None:
    row = next(line.split() for line in r.out.splitlines() if line.startswith("%0 "))
    assert row[2] == "claude" and row[5] == "claude", r.out  # agent claude, registered as claude


def _pane_3_runs_codex(w: World) -> None:
    """`%3` must exist: open windows until tmux hands out %3, and start codex in it."""
    while True:
        pane = w.new_window()
        number = int(pane.lstrip("%"))
        if number >= 3:
            break
    assert pane == "%3", f"pane %3 was used up earlier (newest is {pane}): reorder the README test"
    w.type_into(pane, "codex")
    wait_until_sync(lambda: "Ask Codex" in w.screen(pane), 10, message="codex in pane %3")


def _registered_reviewer(w: World, r: Result) -> None:
    s = w.session("reviewer")
    assert s is not None and (s["type"], s["tmux_pane"], s["agent"]) == ("pane", "%3", "codex"), s


def _list_all(w: World, r: Result) -> None:
    ids = {line.split()[0] for line in r.out.splitlines()[1:] if line.strip()}
    assert {"claude", "worker", "reviewer"} <= ids, r.out


def _delivered_to_claude(text: str) -> Check:
    def check(w: World, r: Result) -> None:
        assert DELIVERED_RE.search(r.out), r.out
        w.wait_submission(text)
    return check


def _stdin_prompt(w: World, r: Result) -> None:
    assert re.match(r"^dlv_[0-9a-f]+ \w+", r.out), r.out
    wait_until_sync(lambda: any(s.rstrip("\n") == "long prompt" for s in w.submissions()), 20,
                    message="the prompt from stdin to arrive")


def _keys_arrived(w: World, r: Result) -> None:
    assert DELIVERED_RE.search(r.out), r.out
    # Down means nothing on an idle composer; the Enter reached the agent (an empty Enter).
    wait_until_sync(lambda: any(e.get("event") == "empty_enter" for e in w.agent_log("claude")), 10,
                    message="the Enter to reach claude")


def _explained(w: World, r: Result) -> None:
    assert re.search(r"^verdict +idle", r.out, re.M), r.out
    assert "profile    claude:" in r.out


def _killed_worker(w: World, r: Result) -> None:
    assert w.session("worker") is None  # gone: the PTY killed, the record removed


def _bus_publish(w: World, r: Result) -> None:
    assert re.search(r"^routed to claude: delivery dlv_\w+", r.out, re.M), r.out
    w.wait_submission("your turn")
    wait_until_sync(lambda: ("inject_written", "claude") in tail_events(w, REFERENCE_TAIL), 10,
                    message="the second bus tail to show the routed prompt")


def _spawn_workers(w: World) -> None:
    for sid in ("w1", "w2", "w3"):
        status, body = w.api("POST", "/api/sessions/spawn", {
            "session_id": sid, "command": "bash", "cwd": str(w.work)})
        assert status == 201, body
    for sid in ("w1", "w2", "w3"):
        wait_until_sync(lambda sid=sid: w.api("GET", f"/api/sessions/{sid}/screen")[1]["text"].strip(),
                        10, message=f"{sid}'s shell prompt")


def _claude_asks_w1(w: World) -> None:
    """claude (its own session token: a verified sender) asks w1 something."""
    token = w.session_env("claude")["TELEPTY_SESSION_TOKEN"]
    status, body = w.api("POST", "/api/sessions/w1/inject", {
        "prompt": ": are the tests green?", "from": "claude", "wait": True, "timeout": 20},
        headers={"x-telepty-session-token": token})
    assert status == 200 and body["status"] == "delivered", body
    assert body["verified_sender"] == "claude" and not body["spoofed"], body


def _replied(w: World, r: Result) -> None:
    assert r.out.strip().endswith("→ claude"), r.out
    w.wait_submission("tests pass on main")
    _, items = w.api("GET", "/api/deliveries?session=claude&limit=50")
    reply = next(d for d in items if d["prompt_bytes"] == len(b"tests pass on main"))
    assert reply["verified_sender"] == "w1" and reply["from"] == "w1", reply


def _multicast(w: World, r: Result) -> None:
    rows = {line.split()[0]: line.split()[2] for line in r.out.splitlines()[1:-1]}
    assert rows == {"w1": "delivered", "w2": "delivered", "w3": "delivered"}, r.out
    assert r.out.splitlines()[-1] == "3 deliveries: 3 delivered, 0 failed, 0 pending", r.out


def _broadcast(w: World, r: Result) -> None:
    rows = [line.split() for line in r.out.splitlines()[1:-1]]  # the last line sums them up
    assert [row[0] for row in rows] == ["claude"], r.out  # --agent claude: only claude
    w.wait_submission("freeze merges")


def _injects(w: World, r: Result) -> None:
    rows = [line for line in r.out.splitlines()[1:] if line.strip()]
    assert len(rows) == 2 and all(" w1 " in row for row in rows), r.out  # the question, the status?


def _w2_exits(w: World) -> None:
    """Something for clean to find: w2's shell is told to exit (its session becomes exited)."""
    status, body = w.api("POST", "/api/sessions/w2/inject", {"prompt": "exit", "wait": True, "timeout": 20})
    assert status == 200 and body["status"] == "delivered", body
    wait_until_sync(lambda: (w.session("w2") or {}).get("state") == "exited", 10, message="w2 to exit")


def _in_session(sid: str) -> Check:
    def check(w: World, r: Result) -> None:
        assert r.out.strip() == sid
    return check


def _read_lines(stream: Any, into: queue.Queue[bytes]) -> None:
    for line in iter(stream.readline, b""):
        into.put(line)


def _mcp(w: World, line: str) -> Result:
    """`telepty mcp` speaks JSON-RPC on stdio: initialize, list the tools, hang up."""
    errlog = w.base / "mcp-stderr.log"
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(["bash", "-c", line], env=w.env, cwd=w.work, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err)
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()

    def send(msg: dict[str, Any]) -> None:
        stdin.write(json.dumps(msg).encode() + b"\n")
        stdin.flush()

    def answer(msg_id: int) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                raw = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"telepty mcp did not answer request {msg_id}: "
                                     f"{errlog.read_text(errors='replace')}") from None
            msg = json.loads(raw)
            if msg.get("id") == msg_id:
                return msg  # type: ignore[no-any-return]

    try:
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "readme-test", "version": "0"}}})
        init = answer(1)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        tools = answer(2)
        stdin.close()  # end of input: the server exits
        rc = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    names = sorted(t["name"] for t in tools["result"]["tools"])
    out = json.dumps({"server": init["result"]["serverInfo"], "tools": names})
    return Result(rc, out, errlog.read_text(errors="replace"))


def _mcp_tools(w: World, r: Result) -> None:
    tools = json.loads(r.out)["tools"]
    assert tools == ["delivery_status", "inject", "list_sessions", "read_screen", "reply"], r.out


def _doctor_green(w: World, r: Result) -> None:
    assert r.out.splitlines()[-1].endswith(" ok, 0 failed"), r.out
    for sid in ("claude", "w1", "reviewer"):
        assert f"✓ session {sid}: " in r.out, r.out


def _unit_path(w: World) -> Path:
    return w.home / ".config" / "systemd" / "user" / "telepty.service"


def _service_installed(w: World, r: Result) -> None:
    unit = _unit_path(w).read_text()
    assert '"telepty" "daemon"' in unit and f"TELEPTY_HOME={w.telepty_home}" in unit, unit
    assert "systemctl --user" in r.out


def _service_removed(w: World, r: Result) -> None:
    assert not _unit_path(w).exists()


def _completion(w: World, r: Result) -> None:
    res = w.sh("source <(telepty completion bash) && complete -p telepty")
    assert res.rc == 0 and "telepty" in res.out, res


def _keys_cleared(w: World, r: Result) -> None:
    did = r.out.split()[0]

    def final() -> dict[str, Any] | None:
        d = w.api("GET", f"/api/deliveries/{did}")[1]
        return d if d["status"] in {"delivered", "failed", "cancelled"} else None

    assert wait_until_sync(final, 20, message="the C-u keys")["status"] == "delivered"


def _self_as_peer(w: World) -> None:
    """A peers.json naming a reachable daemon (this one: all a peer check needs is an answer)."""
    token = (w.telepty_home / "token").read_text().strip()
    (w.telepty_home / "peers.json").write_text(json.dumps({"desk": {"url": w.url, "token": token}}))


def _peers(w: World, r: Result) -> None:
    row = r.out.splitlines()[1].split()
    assert row[:3] == ["desk", w.url, "yes"] and row[4] == "readme-test", r.out


SPECS: dict[str, Spec] = {
    # Quick start: both set up the shared virtualenv (pip) before doing their job.
    "./scripts/run": Spec(how="exempt", check=_scripts_check("run"), why=(
        "installs into the shared .venv when pyproject.toml changed, then runs a foreground "
        "daemon on port 3848; what it execs, `telepty daemon`, is the tutorial's first command")),
    "./scripts/test": Spec(how="exempt", check=_scripts_check("test"), why=(
        "runs ruff and the whole suite, this test included: it would recurse")),
    # Five-minute tutorial.
    "telepty daemon": Spec(how="background", check=_daemon_up),
    "tmux new-session -s agents": Spec(how="client", check=_tmux_session_up),
    "telepty wrap --id claude -- claude": Spec(how="pane", pane="agents", check=_wrapped_claude),
    TUTORIAL_TAIL: Spec(how="background", setup=_tail_ready(TUTORIAL_TAIL),
                        check=_tail_connected(TUTORIAL_TAIL)),
    "telepty list": Spec(out=("ID", "claude"), check=_listed_claude),
    'telepty inject claude "Summarise README.md in one sentence." --wait': Spec(check=_tutorial_inject),
    "curl -s http://127.0.0.1:3848/api/bus/publish -H 'Content-Type: application/json' "
    '-H "x-telepty-token: $(cat ~/.config/telepty/token)" -d \'{"kind": "turn_request", '
    '"source": "tutorial", "target": "claude", "payload": {"prompt": "Now list three risks in it."}}\'':
        Spec(check=_tutorial_curl),
    "telepty deliveries": Spec(check=_deliveries_listed),
    # Using it.
    "telepty status": Spec(out=("telepty daemon ", "running at http://127.0.0.1:", "machine: readme-test")),
    "telepty spawn --id worker -- bash": Spec(out=("worker",), check=_spawned_worker),
    "telepty attach worker": Spec(how="pane", pane="new", check=_attach_worker),
    "telepty panes": Spec(out=("PANE",), check=_panes_lists_claude),
    "telepty register-pane %3 --id reviewer": Spec(
        setup=_pane_3_runs_codex, out=("registered reviewer → pane %3 (codex)",), check=_registered_reviewer),
    "telepty list --all": Spec(check=_list_all),
    'telepty inject claude "review the diff" --wait': Spec(check=_delivered_to_claude("review the diff")),
    'echo "long prompt" | telepty inject claude -': Spec(check=_stdin_prompt),
    "telepty keys claude Down Enter --wait": Spec(check=_keys_arrived),
    "telepty explain claude": Spec(check=_explained),
    "telepty kill worker": Spec(out=("killed worker",), check=_killed_worker),
    "telepty meta": Spec(out=("machine_id   readme-test", "capabilities")),
    REFERENCE_TAIL: Spec(how="background", setup=_tail_ready(REFERENCE_TAIL),
                         check=_tail_connected(REFERENCE_TAIL)),
    'telepty bus publish turn_request --target claude --payload \'{"prompt": "your turn"}\'':
        Spec(out=("published turn_request seq ",), check=_bus_publish),
    # Agents talking to agents.
    "telepty whoami": Spec(setup=_spawn_workers, inside="w1", check=_in_session("w1")),
    'telepty reply "tests pass on main"': Spec(setup=_claude_asks_w1, inside="w1", check=_replied),
    'telepty multicast w1,w2,w3 "status?" --wait': Spec(check=_multicast),
    'telepty broadcast "freeze merges" --agent claude': Spec(check=_broadcast),
    "telepty injects --since 1h --to w1": Spec(check=_injects),
    "telepty rename w3 tester": Spec(out=("renamed w3 → tester",)),
    "telepty clean --dry-run": Spec(setup=_w2_exits, out=("would remove w2",)),
    "telepty init --print-snippet --target agents": Spec(out=("## telepty: messages", "telepty reply")),
    "telepty mcp": Spec(runner=_mcp, check=_mcp_tools),
    # First hour.
    "telepty doctor": Spec(check=_doctor_green),
    "telepty service install --user": Spec(out=("telepty.service",), check=_service_installed),
    "telepty service install --print": Spec(out=("[Service]", "ExecStart=")),
    "telepty service uninstall": Spec(check=_service_removed),
    "source <(telepty completion bash)": Spec(check=_completion),
    # Troubleshooting.
    "telepty deliveries --status failed": Spec(out=("no deliveries",)),
    "telepty keys claude C-u": Spec(check=_keys_cleared),
    "telepty peers": Spec(setup=_self_as_peer, out=("NAME", "REACHABLE"), check=_peers),
}


def run_command(w: World, cmd: Command, spec: Spec) -> None:
    where = f"README.md:{cmd.lineno} ({cmd.section}): {cmd.key}"
    line = cmd.text.replace(f"127.0.0.1:{DEFAULT_PORT}", f"127.0.0.1:{w.port}").replace(
        f"localhost:{DEFAULT_PORT}", f"localhost:{w.port}")
    if spec.setup is not None:
        spec.setup(w)
    result = Result(0, "", "")
    if spec.how == "run":
        env = w.session_env(spec.inside) if spec.inside else None
        result = spec.runner(w, line) if spec.runner else w.sh(line, env=env)
        assert result.rc == spec.rc, (
            f"{where}\nexit {result.rc}, expected {spec.rc}\n{result.out}{result.err}")
        for snippet in spec.out:
            assert snippet in result.out, f"{where}\n{snippet!r} not in the output:\n{result.out}{result.err}"
    elif spec.how == "background":
        w.start_background(cmd.key, line)
    elif spec.how == "client":
        w.client = ptyprocess.PtyProcess.spawn(["bash", "-c", line], env=w.env, cwd=str(w.work),
                                               dimensions=(50, 200))
        client = w.client
        threading.Thread(target=_drain, args=(client,), daemon=True).start()
    elif spec.how == "pane":
        pane = spec.pane if spec.pane != "new" else w.new_window()
        w.panes[cmd.key] = pane
        w.type_into(pane, line)
    else:
        assert spec.how == "exempt", spec.how
    if spec.check is not None:
        try:
            spec.check(w, result)
        except AssertionError as exc:
            raise AssertionError(f"{where}\n{exc}\n--- output:\n{result.out}{result.err}") from exc
    if spec.how == "background":
        proc, log = w.background[cmd.key]
        assert proc.poll() is None, f"{where} exited early:\n{log.read_text()}"


def _drain(client: ptyprocess.PtyProcess) -> None:
    """Read the tmux client's terminal so it never blocks on a full PTY."""
    try:
        while True:
            client.read(65536)
    except (EOFError, OSError):
        pass


# -- the tests --------------------------------------------------------------------------------


def test_every_readme_command_has_a_spec_and_every_spec_a_command() -> None:
    keys = [c.key for c in readme_commands()]
    unknown = [f"README.md:{c.lineno}: {c.key}" for c in readme_commands() if c.key not in SPECS]
    assert not unknown, ("README commands nobody runs: add each to SPECS in tests/integration/"
                         "test_readme.py (how to run it, what must come of it):\n" + "\n".join(unknown))
    stale = sorted(set(SPECS) - set(keys))
    assert not stale, f"SPECS entries whose command left README.md (remove or update them): {stale}"
    exempt = {k: s.why for k, s in SPECS.items() if s.how == "exempt"}
    assert set(exempt) == {"./scripts/run", "./scripts/test"} and all(exempt.values())


def test_the_parser_handles_comments_continuations_and_console_prompts() -> None:
    text = "\n".join([
        "# Title", "```sh", "# a whole-line comment", "telepty list   # trailing comment",
        "curl -s http://x \\", "  -d '{\"a\": \"#not a comment\"}'", "", "```",
        "```console", "$ telepty status", "telepty daemon 0.2 running at …", "```",
        "```json", '{"telepty": "not a command"}', "```",
    ])
    cmds = readme_commands(text)
    assert [c.key for c in cmds] == [
        "telepty list", "curl -s http://x -d '{\"a\": \"#not a comment\"}'", "telepty status"]
    assert cmds[1].text == "curl -s http://x \\\n  -d '{\"a\": \"#not a comment\"}'"
    assert cmds[0].section == "Title"


def test_the_peers_json_example_is_valid() -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```json\n(\{\"desk\".*?)\n```", text, re.S)
    assert block is not None
    example = json.loads(block.group(1))
    assert set(example["desk"]) == {"url", "token"}


@pytest.fixture
def world() -> Iterator[World]:
    if shutil.which("curl") is None or shutil.which("tmux") is None:
        pytest.fail("the README needs curl and tmux (scripts/setup.sh installs both)")
    base = Path(tempfile.mkdtemp(prefix="readme-", dir="/tmp"))
    w = make_world(base)
    try:
        yield w
    finally:
        teardown(w)
        shutil.rmtree(base, ignore_errors=True)


def test_every_readme_command_runs_and_does_what_the_readme_says(world: World) -> None:
    w = world
    seen: set[str] = set()
    for cmd in readme_commands():
        if cmd.key in seen:
            continue  # the same command again (a cheat sheet repeating the tutorial): run once
        seen.add(cmd.key)
        assert cmd.key in SPECS, f"README.md:{cmd.lineno}: no spec for {cmd.key!r} (add it to SPECS)"
        run_command(w, cmd, SPECS[cmd.key])

    # Troubleshooting's messages are the real ones.
    again = w.sh("telepty daemon", timeout=20)
    assert again.rc == 1 and f"a daemon is already running for {w.telepty_home} (pid " in again.err, again
    other = w.base / "other-home"
    busy = w.sh("telepty daemon", env={"TELEPTY_HOME": str(other)}, timeout=20)
    assert busy.rc == 1 and f"cannot listen on 127.0.0.1:{w.port}: " in busy.err, busy
    assert "address already in use" in busy.err.lower(), busy
    daemon, _ = w.background["telepty daemon"]
    os.killpg(daemon.pid, signal.SIGTERM)
    assert daemon.wait(15) == 0
    # Another home's daemon takes the port the tutorial's had (what 3848 is for a user
    # with a quick-start daemon): the CLI still says this home's daemon is not running.
    w.start_background("stray daemon", f"TELEPTY_HOME={other} telepty daemon")
    wait_until_sync(lambda: (other / "daemon.json").exists(), 20, message="the other home's daemon")
    down = w.sh("telepty status")
    assert down.rc == 3, down
    assert down.err == (f"telepty: no telepty daemon is running for TELEPTY_HOME={w.telepty_home}; start "
                        "it with `telepty daemon`, or point TELEPTY_HOME at the home of the daemon you "
                        "mean\n"), down
