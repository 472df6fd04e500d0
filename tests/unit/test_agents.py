"""Agent detection: command lines (pure) and live process trees (real processes)."""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from telepty.errors import BadRequest
from telepty.sessions import agents
from telepty.sessions.agents import (
    AGENT_KINDS,
    detect_agent,
    detect_agent_in_tree,
    detect_agents_in_trees,
    tree_contains_agent,
)

COMMANDS: list[tuple[str | list[str], str]] = [
    ("claude", "claude"),
    ("/usr/local/bin/claude --resume", "claude"),
    ("claude --dangerously-skip-permissions -p 'hi there'", "claude"),
    ("node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js", "claude"),
    ("npx -y @anthropic-ai/claude-code", "claude"),
    ("/home/u/.local/share/claude/versions/2.0.14 --continue", "claude"),
    ("ANTHROPIC_MODEL=opus claude", "claude"),
    ("env FOO=1 claude", "claude"),
    ("bash -c 'claude --resume'", "claude"),
    ("bash -lc \"exec claude\"", "claude"),
    # The first command of a -c script is what runs in the terminal.
    ("bash --norc -c '/x/node_modules/.bin/claude; exec bash -i'", "claude"),
    ("sh -c 'codex && echo done'", "codex"),
    ("sh -c '(gemini)'", "gemini"),
    ("bash -c 'cd /repo && claude'", "other"),
    ("codex", "codex"),
    ("codex --model gpt-5 'fix the bug'", "codex"),
    ("npx @openai/codex", "codex"),
    ("npx @openai/codex@latest exec 'x'", "codex"),
    ("node /opt/node_modules/@openai/codex/bin/codex.js", "codex"),
    ("/opt/node_modules/@openai/codex/vendor/x86_64-unknown-linux-musl/codex/codex", "codex"),
    ("bunx @openai/codex", "codex"),
    ("pnpm dlx @openai/codex", "codex"),
    ("npm exec @openai/codex", "codex"),
    ("gemini", "gemini"),
    ("node /usr/local/lib/node_modules/@google/gemini-cli/dist/index.js", "gemini"),
    ("npx https://github.com/google-gemini/gemini-cli", "gemini"),
    ("npx @google/gemini-cli", "gemini"),
    ("aider --model sonnet", "aider"),
    ("python -m aider", "aider"),
    ("python3.12 -m aider.main --yes", "aider"),
    ("/home/u/.venv/bin/python /home/u/.venv/bin/aider", "aider"),
    ("uvx aider-chat", "aider"),
    ("uvx --from aider-chat aider", "aider"),
    ("uv tool run aider-chat", "aider"),
    ("pipx run aider-chat", "aider"),
    (["node", "/x/node_modules/@anthropic-ai/claude-code/cli.js", "--resume"], "claude"),
    (["codex"], "codex"),
    # Not agents, even though an agent's name appears somewhere in the line.
    ("bash", "other"),
    ("-bash", "other"),
    ("", "other"),
    ("vim notes-about-claude.md", "other"),
    ("grep codex log.txt", "other"),
    ("node /home/u/projects/gemini/server.js", "other"),
    ("python -c 'import aider'", "other"),
    ("npx prettier --write .", "other"),
    ("cat claude", "other"),
    ("claudette", "other"),
    ("sleep 30", "other"),
    ("'unbalanced quote", "other"),
]


@pytest.mark.parametrize(("command", "expected"), COMMANDS)
def test_detect_agent(command: str | list[str], expected: str) -> None:
    assert detect_agent(command) == expected


def test_detect_agent_extra_names() -> None:
    assert detect_agent("opencode --tui") == "other"
    assert detect_agent("opencode --tui", extra_names=["opencode"]) == "opencode"


def test_agent_kinds() -> None:
    assert AGENT_KINDS == ("claude", "codex", "gemini", "aider")


def test_registered_programs_are_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents, "_programs", None)  # start from the shipped profiles
    assert detect_agent("node /u/node_modules/@acme/zed-agent/bin/cli.js") == "other"
    agents.register_programs({"zed": ["zed-agent"], "quill": []})
    assert detect_agent("node /u/node_modules/@acme/zed-agent/bin/cli.js") == "zed"
    assert detect_agent("quill --fast") == "quill"  # no programs: the kind's own name
    assert detect_agent("claude") == "claude"
    assert agents.programs_of("zed") == ["zed-agent"]


@pytest.mark.parametrize("name", ["claude", "my-agent", "a_b9", "other"])
def test_agent_name_ok(name: str) -> None:
    assert agents.validate_agent_name(name) == name


@pytest.mark.parametrize("name", ["", "Claude", "9x", "a b", "x" * 33, "../x", 3])
def test_agent_name_bad(name: object) -> None:
    with pytest.raises(BadRequest):
        agents.validate_agent_name(name)


@pytest.fixture(params=["proc-children", "process-table"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of finding children: /proc child lists, and the whole-table scan."""
    if request.param == "process-table":
        monkeypatch.setattr(agents, "_PROC_CHILDREN", False)
    elif not agents._PROC_CHILDREN:
        pytest.skip("this kernel has no /proc/PID/task/TID/children")
    return str(request.param)


@pytest.fixture
def spawn(walk: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        # The trees are whole process groups: kill children too, not just the root.
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)


def _start(procs: list[subprocess.Popen[bytes]], script: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    procs.append(p)
    return p


def _wait_until(pred: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)  # sync unit test polling a real process table, not the loop
    raise AssertionError("condition not met in time")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_tree_with_exec_a_agent(spawn: list[subprocess.Popen[bytes]]) -> None:
    # `exec -a claude sleep 30`: the kernel calls it "sleep", argv[0] says "claude".
    root = _start(spawn, "exec -a claude sleep 30")
    _wait_until(lambda: psutil.Process(root.pid).cmdline()[:1] == ["claude"])
    assert psutil.Process(root.pid).name() == "sleep"
    assert detect_agent_in_tree(root.pid) == "claude"
    assert tree_contains_agent(root.pid)


def test_tree_with_agent_below_a_shell(spawn: list[subprocess.Popen[bytes]]) -> None:
    root = _start(spawn, "(exec -a codex sleep 30) & (exec -a gemini-helper sleep 30) & wait")
    _wait_until(
        lambda: any(p.cmdline()[:1] == ["codex"] for p in _descendants(root.pid))
    )
    assert detect_agent_in_tree(root.pid) == "codex"
    assert detect_agents_in_trees([root.pid]) == {root.pid: "codex"}


def test_tree_with_node_style_agent(
    spawn: list[subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    # What `node …/claude-code/cli.js` looks like in /proc: argv[0] "node", the script
    # path inside the package directory second.
    cli = tmp_path / "node_modules" / "@anthropic-ai" / "claude-code" / "cli.js"
    cli.parent.mkdir(parents=True)
    cli.write_text("sleep 30; :\n")
    root = _start(spawn, f"exec -a node bash {shlex.quote(str(cli))}")
    _wait_until(lambda: psutil.Process(root.pid).cmdline()[:1] == ["node"])
    assert detect_agent_in_tree(root.pid) == "claude"


def test_tree_without_agent(spawn: list[subprocess.Popen[bytes]]) -> None:
    root = _start(spawn, "sleep 30 & wait")
    _wait_until(lambda: len(_descendants(root.pid)) == 1)
    assert detect_agent_in_tree(root.pid) is None
    assert not tree_contains_agent(root.pid)


def test_tree_extra_names(spawn: list[subprocess.Popen[bytes]]) -> None:
    root = _start(spawn, "exec -a opencode sleep 30")
    _wait_until(lambda: psutil.Process(root.pid).cmdline()[:1] == ["opencode"])
    assert detect_agent_in_tree(root.pid) is None
    assert detect_agent_in_tree(root.pid, extra_names=["opencode"]) == "opencode"


def test_gone_process_is_none_not_an_error(spawn: list[subprocess.Popen[bytes]]) -> None:
    root = _start(spawn, "exit 0")
    root.wait(timeout=5)
    assert detect_agent_in_tree(root.pid) is None
    assert detect_agent_in_tree(0) is None
    assert detect_agent_in_tree(-5) is None
    assert detect_agents_in_trees([root.pid]) == {root.pid: None}


def test_process_we_cannot_read_does_not_raise() -> None:
    # pid 1 (and its whole tree) may be unreadable for non-root users: must not raise.
    result = detect_agent_in_tree(1)
    assert result is None or isinstance(result, str)


def test_process_table_scan_agrees_with_psutil(spawn: list[subprocess.Popen[bytes]]) -> None:
    root = _start(spawn, "sleep 30 & sleep 30 & wait")
    _wait_until(lambda: len(_descendants(root.pid)) == 2)
    want = sorted(p.pid for p in psutil.Process(root.pid).children())
    assert sorted(agents._children_map()[root.pid]) == want
    assert sorted(agents._proc_children_of(root.pid)) == (want if agents._has_proc_children() else [])


def test_a_child_the_fast_walk_missed_is_found_before_saying_none(
    spawn: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _start(spawn, "(exec -a codex sleep 30) & wait")
    _wait_until(lambda: any(p.cmdline()[:1] == ["codex"] for p in _descendants(root.pid)))
    monkeypatch.setattr(agents, "_PROC_CHILDREN", True)
    monkeypatch.setattr(agents, "_proc_children_of", lambda pid: [])  # the kernel list lagging
    assert detect_agent_in_tree(root.pid) is None  # discovery may miss it
    assert detect_agent_in_tree(root.pid, confirm_none=True) == "codex"  # a verdict may not
    assert tree_contains_agent(root.pid)
