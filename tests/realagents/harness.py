"""Run the real agent CLIs offline: a private HOME, a private tmux server, the mock model.

``scripts/setup.sh test`` installs the pinned CLIs (``scripts/agent-versions.txt``) into
``.cache/agents``. Each agent started here gets

- a HOME seeded so it opens straight at its input box: onboarding done, the project
  folder trusted, a fake API key accepted, the model API pointed at the loopback
  :class:`MockServer`, telemetry, update checks and auto-update off;
- its own tmux server on a socket in the test's temp folder (killed on close), in which
  it runs under an interactive-looking shell, so that when it exits a shell is what is
  left in the terminal (the case where a pasted prompt would become a command line).

Used by the real-agent tests and by ``scripts/bench/realagents.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.helpers import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ("claude", "codex", "gemini")
VERSIONS_FILE = ROOT / "scripts" / "agent-versions.txt"
AGENTS_DIR = Path(os.environ.get("TELEPTY_AGENTS_DIR") or ROOT / ".cache" / "agents")
FAKE_KEY = "sk-ant-mock-0123456789abcdefghij"  # Claude remembers approving its last 20 chars
COLS, ROWS = 120, 40


def pinned_versions() -> dict[str, str]:
    """npm package → version, from the one file that pins them."""
    out: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.rpartition("@")
            out[name] = version
    return out


PACKAGES = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex", "gemini": "@google/gemini-cli"}


def agent_version(agent: str) -> str:
    return pinned_versions()[PACKAGES[agent]]


def agent_bin(agent: str) -> Path:
    return AGENTS_DIR / "node_modules" / ".bin" / agent


def missing_agents() -> list[str]:
    return [a for a in AGENTS if not agent_bin(a).exists()]


# -- the mock model -------------------------------------------------------------------


@dataclass
class MockServer:
    """The mock model API as a subprocess; its log is read back from disk."""

    log: Path
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        data = self.log.read_text(encoding="utf-8")
        complete = data[: data.rfind("\n") + 1]  # a last line without its newline is mid-write
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def received(self) -> list[str]:
        """Every prompt the agent sent as its own user message, in order."""
        return [e["text"] for e in self.events() if e.get("event") == "received"]

    def received_times(self) -> list[tuple[str, float]]:
        return [(e["text"], e["t"]) for e in self.events() if e.get("event") == "received"]

    def answered_at(self, turn: int) -> float | None:
        """When the answer to the ``turn``-th human message (1-based) ended."""
        times = [e["t"] for e in self.events() if e.get("event") == "answered" and e["humans"] == turn]
        return max(times) if times else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_mock(folder: Path, dump: bool = False) -> MockServer:
    folder.mkdir(parents=True, exist_ok=True)
    log, port_file = folder / "mock.jsonl", folder / "mock.port"
    port_file.unlink(missing_ok=True)
    args = [sys.executable, "-m", "tests.realagents.mock_model", "--log", str(log),
            "--port-file", str(port_file)]
    if dump:
        (folder / "requests").mkdir(exist_ok=True)
        args += ["--dump", str(folder / "requests")]
    err = open(folder / "mock.stderr", "ab")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=err, stderr=err, stdin=subprocess.DEVNULL)
    err.close()

    def up() -> int | None:
        if proc.poll() is not None:
            raise RuntimeError(f"mock model exited: {(folder / 'mock.stderr').read_text()}")
        try:
            return int(port_file.read_text())
        except (OSError, ValueError):
            return None

    return MockServer(log, proc, wait_until_sync(up, 15, message="the mock model to listen"))


# -- a private HOME per agent ---------------------------------------------------------


def seed_home(agent: str, home: Path, project: Path, mock_url: str) -> dict[str, str]:
    """Write the agent's config into ``home``; returns the environment it needs."""
    home.mkdir(parents=True, exist_ok=True)
    project.mkdir(parents=True, exist_ok=True)
    if agent == "claude":
        (home / ".claude").mkdir(exist_ok=True)
        (home / ".claude.json").write_text(json.dumps({
            "hasCompletedOnboarding": True,
            "numStartups": 3,
            "theme": "dark",
            "customApiKeyResponses": {"approved": [FAKE_KEY[-20:]], "rejected": []},
            "projects": {str(project): {"hasTrustDialogAccepted": True, "allowedTools": [],
                                        "hasCompletedProjectOnboarding": True}},
        }))
        return {
            "ANTHROPIC_BASE_URL": mock_url, "ANTHROPIC_API_KEY": FAKE_KEY,
            "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
    if agent == "codex":
        codex = home / ".codex"
        codex.mkdir(exist_ok=True)
        (codex / "config.toml").write_text(
            'model = "mock-model"\n'
            'model_provider = "mock"\n'
            "check_for_update_on_startup = false\n"
            "[analytics]\nenabled = false\n"
            "[model_providers.mock]\n"
            'name = "Mock"\n'
            f'base_url = "{mock_url}/v1"\n'
            'env_key = "MOCK_API_KEY"\n'
            'wire_api = "responses"\n'
            f"[projects.{json.dumps(str(project))}]\n"
            'trust_level = "trusted"\n'
        )
        return {"MOCK_API_KEY": "mock-key", "CODEX_HOME": str(codex)}
    if agent == "gemini":
        gemini = home / ".gemini"
        gemini.mkdir(exist_ok=True)
        (gemini / "settings.json").write_text(json.dumps({
            "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "model": {"name": "gemini-2.5-flash"},
        }))
        return {"GEMINI_API_KEY": "mock-key", "GOOGLE_GEMINI_BASE_URL": mock_url,
                "COLORTERM": "truecolor"}
    raise ValueError(f"unknown agent {agent!r}")


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: nothing of the developer's own agent setup leaks in."""
    node_dir = os.path.dirname(shutil.which("node") or "/usr/bin/node")
    path = os.pathsep.join(dict.fromkeys([str(AGENTS_DIR / "node_modules" / ".bin"), node_dir,
                                          os.path.dirname(sys.executable), "/usr/local/bin",
                                          "/usr/bin", "/bin"]))
    return {"HOME": str(home), "PATH": path, "TERM": "xterm-256color", "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "USER": os.environ.get("USER", "user"), "SHELL": "/bin/bash",
            "TMPDIR": str(home / "tmp")}


# -- a private tmux server ------------------------------------------------------------


@dataclass
class PrivateTmux:
    """A tmux server of our own on a socket in ``folder``; ``close`` kills it."""

    folder: Path
    socket: Path = field(init=False)

    def __post_init__(self) -> None:
        self.socket = self.folder / "tmux.sock"

    def run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True,
                              text=True, timeout=20)
        if check and proc.returncode:
            raise RuntimeError(f"tmux {args}: {proc.stderr.strip()}")
        return proc.stdout

    def new_pane(self, argv: list[str], env: dict[str, str], cwd: Path, name: str) -> str:
        """A window running ``argv`` with exactly ``env``; its pane id."""
        command = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv])
        if not self.socket.exists():
            out = self.run("-f", "/dev/null", "new-session", "-d", "-P", "-F", "#{pane_id}",
                           "-s", name, "-x", str(COLS), "-y", str(ROWS), "-c", str(cwd), command)
            self.run("set", "-g", "history-limit", "5000")
            self.run("set", "-g", "remain-on-exit", "off")
        else:
            out = self.run("new-window", "-d", "-P", "-F", "#{pane_id}", "-n", name,
                           "-c", str(cwd), command)
        return out.strip()

    def screen(self, pane: str) -> list[str]:
        return self.run("capture-pane", "-p", "-t", pane, check=False).split("\n")

    def send(self, pane: str, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", pane, *(["-l"] if literal else []), "--", *keys)

    def paste(self, pane: str, text: str) -> None:
        buf = self.folder / "paste.txt"
        buf.write_text(text, encoding="utf-8")
        self.run("load-buffer", "-b", "harness", str(buf))
        self.run("paste-buffer", "-p", "-d", "-b", "harness", "-t", pane)

    def pane_pid(self, pane: str) -> int:
        return int(self.run("display-message", "-p", "-t", pane, "#{pane_pid}").strip())

    def close(self) -> None:
        if self.socket.exists():
            self.run("kill-server", check=False)


# -- one agent in one terminal ---------------------------------------------------------

WRAP = "wrap"
PANE = "pane"
MODES = (WRAP, PANE)

# What each agent shows once it is ready for input.
READY_TEXT = {"claude": "? for shortcuts", "codex": "? for shortcuts", "gemini": "Type your message"}


def as_received(agent: str, prompt: str) -> str:
    """The text the model gets for ``prompt``: Claude Code turns each tab into four
    spaces (a plain tmux paste shows the same); the others send it as it was."""
    return prompt.replace("\t", "    ") if agent == "claude" else prompt


@dataclass
class AgentRun:
    """A real agent, started in its own terminal, and everything needed to drive it."""

    agent: str
    mode: str
    session_id: str
    folder: Path
    tmux: PrivateTmux
    pane: str
    mock: MockServer
    project: Path

    def screen(self) -> list[str]:
        return self.tmux.screen(self.pane)

    def text(self) -> str:
        return "\n".join(self.screen())

    def agent_pid(self) -> int | None:
        """The agent's own process under the pane, if it still runs."""
        try:
            root = psutil.Process(self.tmux.pane_pid(self.pane))
            procs = [root, *root.children(recursive=True)]
        except (psutil.Error, RuntimeError, ValueError):
            return None
        binary = str(agent_bin(self.agent).resolve())
        for p in procs:
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            if any(binary == c or os.path.realpath(c) == binary for c in cmd[:2]):
                return p.pid
        return None

    def quit(self) -> None:
        """Quit the agent the way a person does, with Ctrl-C until it is gone (Claude and
        Gemini want two presses; one on an empty input quits Codex). The shell stays."""
        for _ in range(10):
            self.tmux.send(self.pane, "C-c")
            try:
                # Inside every agent's double-press window.
                wait_until_sync(lambda: self.agent_pid() is None, 0.3, message="quit")
                return
            except AssertionError:
                continue
        wait_until_sync(lambda: self.agent_pid() is None, 10, message=f"{self.agent} to quit")

    def wait_ready(self, timeout: float = 60) -> None:
        marker = READY_TEXT[self.agent]
        wait_until_sync(lambda: marker in self.text(), timeout,
                        message=f"{self.agent} to show its input box; screen:\n{self.text()}")

    def stop(self) -> None:
        self.tmux.close()
        # Codex leaves a background app-server running from its HOME; anything still
        # running from this run's folder is ours to end.
        for proc in processes_under(self.folder):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        self.mock.stop()


def processes_under(folder: Path) -> list[psutil.Process]:
    """Processes whose program or arguments live in ``folder``."""
    mark = str(folder)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.pid != os.getpid() and any(mark in part for part in cmdline):
            found.append(proc)
    return found


def start_agent(agent: str, mode: str, folder: Path, *, telepty_home: Path | None = None,
                session_id: str | None = None, telepty_env: dict[str, str] | None = None,
                dump: bool = False) -> AgentRun:
    """Start ``agent`` under a shell in a private tmux server; for ``wrap`` through
    ``telepty wrap`` (outside tmux as far as the wrapper knows, so the daemon reaches it
    through the wrapper, not the pane)."""
    if not agent_bin(agent).exists():
        raise FileNotFoundError(f"{agent_bin(agent)} is missing: run ./scripts/setup.sh test")
    folder.mkdir(parents=True, exist_ok=True)
    mock = start_mock(folder / "mock", dump=dump)
    home, project = folder / "home", folder / "project"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**base_env(home), **seed_home(agent, home, project, mock.url)}
    # A shell runs the agent and stays when it exits, as in a person's terminal.
    shell = ["bash", "--norc", "--noprofile"]
    inner = [*shell, "-c", f"{shlex.quote(str(agent_bin(agent)))}; exec {shlex.join(shell)} -i"]
    sid = session_id or f"{agent}-{mode}"
    if mode == WRAP:
        if telepty_home is None:
            raise ValueError("wrap mode needs the daemon's TELEPTY_HOME")
        env.update({"TELEPTY_HOME": str(telepty_home), "PS1": "$ ", **(telepty_env or {})})
        argv = [sys.executable, "-m", "telepty", "wrap", "--id", sid, "--", *inner]
    else:
        env["PS1"] = "$ "
        argv = inner
    tmux = PrivateTmux(folder)
    pane = tmux.new_pane(argv, env, project, sid)
    return AgentRun(agent, mode, sid, folder, tmux, pane, mock, project)
