"""Which agent CLI is this? From a command line, or from a live process tree.

The agent kind picks the submit profile (settle delay, submit keys, screen patterns),
so a wrong answer costs real prompts: Codex swallowing an early Enter, Claude parking
a paste in its composer. Agents are rarely launched as a bare ``claude``: they run as
``node …/cli.js``, through ``npx``/``uvx``/``pipx``, via ``python -m aider``, under a
shell ``-c`` or with ``exec -a``. Detection therefore looks through launchers and
interpreters to the program they run, and never guesses from arguments further on
(``vim notes-about-claude.md`` is not Claude).

Process-tree detection is what tells a live agent from the bare shell it leaves behind
when it exits (``agent_exited``); it must never raise just because a process vanished
or belongs to someone else, because it runs against processes we do not own.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources

import psutil

from telepty.sessions.agent_names import (  # noqa: F401 - re-exported: agents are named here too
    AGENT_KINDS,
    AGENT_NAME_RE,
    OTHER,
    agent_name_arg,
    validate_agent_name,
)
from telepty.sessions.procfs import HAS_PROC, read_stat

# Program or package name → agent kind, from the ``programs`` of the loaded profiles.
# Scoped npm packages are reduced to their last path component before lookup
# (``@openai/codex`` → ``codex``). None until first used: then the shipped profiles'.
_programs: dict[str, str] | None = None


def _shipped_programs() -> dict[str, list[str]]:
    text = resources.files("telepty").joinpath("data/profiles.toml").read_text("utf-8")
    return {name: list(table.get("programs") or []) for name, table in tomllib.loads(text).items()
            if isinstance(table, dict) and name not in ("default", OTHER)}


def _names() -> dict[str, str]:
    global _programs
    if _programs is None:
        _programs = {}
        _add_programs(_programs, _shipped_programs())
    return _programs


def _add_programs(table: dict[str, str], programs: Mapping[str, Iterable[str]]) -> None:
    for kind, names in programs.items():
        for name in list(names) or [kind]:  # a profile naming no programs is for its own name
            table[name.lower()] = kind


def register_programs(programs: Mapping[str, Iterable[str]]) -> None:
    """Teach detection the programs each agent kind runs as (kind → program names).

    Called when profiles are loaded: that is where a user adds ``[opencode]`` with
    ``programs = ["opencode"]``. Additive, because detection runs in places that do not
    hold the profiles (transports, pane discovery) and must never forget a kind that
    sessions were registered with.
    """
    _add_programs(_names(), programs)


def programs_of(kind: str) -> list[str]:
    """The program names detection knows for ``kind`` (for messages)."""
    return sorted(name for name, k in _names().items() if k == kind)


_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish", "mksh", "ash"})
# Prefix commands that run their first non-option operand as the real program.
_PREFIX_COMMANDS = frozenset({"env", "exec", "nohup", "command", "time", "nice", "stdbuf", "sudo"})
_NODE_LIKE = frozenset({"node", "nodejs", "bun", "deno", "tsx", "ts-node"})
_PACKAGE_RUNNERS = frozenset({"npx", "bunx", "pnpx", "uvx", "pipx", "yarn", "pnpm", "npm", "uv"})
_PYTHON_RE = re.compile(r"^(?:python|pypy)(?:\d+(?:\.\d+)*)?$")
_SCRIPT_SUFFIX_RE = re.compile(r"\.(?:js|mjs|cjs|ts|py|exe|cmd|sh)$")
_VERSION_SUFFIX_RE = re.compile(r"@[^/@]*$")
_ENV_ASSIGN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Native Claude Code installs live at …/claude/versions/<semver>; the binary's own name
# is the version number, so the directory is the only signal psutil's name() offers.
_CLAUDE_VERSIONED_RE = re.compile(r"(?:^|/)claude/versions/[^/]+$")
# Runners' own options that take a value, so the value is not mistaken for the program.
_RUNNER_VALUE_OPTS = frozenset(
    {"-p", "--package", "--from", "--with", "--python", "-c", "--call", "--spec", "--cwd"}
)


def _tokens(command: str | Sequence[str]) -> list[str]:
    if isinstance(command, str):
        try:
            return shlex.split(command)
        except ValueError:  # unbalanced quotes in a stored command line
            return command.split()
    return [str(t) for t in command]


_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", "\n"})


def _first_command(script: str) -> list[str]:
    """The first simple command of a shell script: ``claude; exec bash`` runs claude
    (what comes after runs once it has exited)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    try:
        for word in lexer:
            if word in _SEPARATORS or set(word) <= set(";&|()"):
                if words:
                    break
                continue
            words.append(word)
    except ValueError:  # unbalanced quotes
        return _tokens(script)
    return words


def kind_of_name(token: str, extra_names: Iterable[str] = ()) -> str | None:
    """Map one program path, script path or package spec to an agent kind, if it is one.

    Public because a process's own name (``psutil.Process.name()``) needs the same
    mapping as an ``argv[0]``.
    """
    token = token.strip()
    if not token:
        return None
    if _CLAUDE_VERSIONED_RE.search(token):
        return "claude"
    base = _VERSION_SUFFIX_RE.sub("", token.rstrip("/"))
    base = os.path.basename(base)
    base = _SCRIPT_SUFFIX_RE.sub("", base).lower()
    extras = {e.lower(): e for e in extra_names}
    if base in extras:
        return extras[base]
    names = _names()
    kind = names.get(base)
    if kind:
        return kind
    # Interpreters run scripts that live inside the agent's package directory
    # (…/node_modules/@anthropic-ai/claude-code/cli.js, …/@google/gemini-cli/dist/index.js).
    # Only package directories count: a project folder called "gemini" holding some
    # server.js is not Gemini CLI.
    if "/" in token:
        parts = token.split("/")[:-1]
        for idx, part in enumerate(parts):
            part = _VERSION_SUFFIX_RE.sub("", part).lower()
            in_packages = "node_modules" in parts[:idx] or "site-packages" in parts[:idx]
            if part in names and (in_packages or "-" in part):
                return names[part]
            if part in extras and in_packages:
                return extras[part]
    return None


def _skip_options(tokens: list[str], i: int, value_opts: frozenset[str] = frozenset()) -> int:
    while i < len(tokens) and tokens[i].startswith("-") and tokens[i] != "-":
        if tokens[i] == "--":
            return i + 1
        if tokens[i] in value_opts and "=" not in tokens[i]:
            i += 1
        i += 1
    return i


def _detect(tokens: list[str], extra_names: Sequence[str], depth: int = 0) -> str | None:
    if depth > 4:
        return None
    i = 0
    while i < len(tokens) and _ENV_ASSIGN_RE.match(tokens[i]):
        i += 1
    if i >= len(tokens):
        return None
    prog = tokens[i]
    kind = kind_of_name(prog, extra_names)
    if kind:
        return kind
    name = os.path.basename(prog).lower()
    rest = tokens[i + 1 :]

    if name in _PREFIX_COMMANDS:
        j = _skip_options(rest, 0, frozenset({"-u", "-n", "-o", "-e", "-i", "-C", "-a"}))
        while j < len(rest) and _ENV_ASSIGN_RE.match(rest[j]):
            j += 1
        return _detect(rest[j:], extra_names, depth + 1)

    if name in _SHELLS:
        # `bash -c 'claude --resume'`, `bash -lc …`: the program is inside the string.
        for j, tok in enumerate(rest):
            if tok.startswith("-") and not tok.startswith("--") and "c" in tok[1:]:
                if j + 1 < len(rest):
                    return _detect(_first_command(rest[j + 1]), extra_names, depth + 1)
                return None
        j = _skip_options(rest, 0)
        return _detect(rest[j:], extra_names, depth + 1) if j < len(rest) else None

    if name in _NODE_LIKE:
        j = _skip_options(rest, 0, frozenset({"-r", "--require", "--import", "--loader"}))
        if name == "deno" and j < len(rest) and rest[j] == "run":
            j = _skip_options(rest, j + 1)
        return kind_of_name(rest[j], extra_names) if j < len(rest) else None

    if _PYTHON_RE.match(name):
        j = 0
        while j < len(rest):
            tok = rest[j]
            if tok == "-m" and j + 1 < len(rest):
                return kind_of_name(rest[j + 1].split(".")[0], extra_names)
            if tok.startswith("-m") and len(tok) > 2:
                return kind_of_name(tok[2:].split(".")[0], extra_names)
            if tok in ("-c",):
                return None
            if tok.startswith("-"):
                j += 1
                continue
            return kind_of_name(tok, extra_names)
        return None

    if name in _PACKAGE_RUNNERS:
        j = 0
        # Subcommands that mean "run a package": npm exec, pnpm dlx, yarn dlx, uv tool run,
        # uv run, pipx run.
        while j < len(rest) and rest[j] in ("exec", "dlx", "x", "tool", "run"):
            j += 1
        j = _skip_options(rest, j, _RUNNER_VALUE_OPTS)
        if j >= len(rest):
            return None
        # `npx -p @openai/codex codex` and `uvx --from aider-chat aider` name the
        # program after the package; either one identifies the agent.
        return kind_of_name(rest[j], extra_names) or _runner_package(rest, extra_names)

    return None


def _runner_package(tokens: list[str], extra_names: Sequence[str]) -> str | None:
    for j, tok in enumerate(tokens[:-1]):
        if tok in ("-p", "--package", "--from", "--spec"):
            return kind_of_name(tokens[j + 1], extra_names)
    return None


def detect_agent(command: str | Sequence[str], extra_names: Sequence[str] = ()) -> str:
    """Return the agent kind a command line runs (a profile name) or ``"other"``.

    ``extra_names`` are user-configured program names that count as agents; a match
    returns the name itself so a profile of that name can be looked up.
    """
    return _detect(_tokens(command), extra_names) or OTHER


def _process_kind(proc: psutil.Process, extra_names: Sequence[str]) -> str | None:
    """Agent kind of one process, from its argv first and its kernel name second.

    argv wins because ``exec -a claude`` and node's process.title rewrite it to the
    agent's name while the kernel still calls the process ``node`` or ``sleep``; the
    kernel name wins when argv is unreadable (another user's process).
    """
    try:
        cmdline = proc.cmdline()
    except (psutil.Error, OSError):
        cmdline = []
    if cmdline:
        kind = _detect(cmdline, extra_names)
        if kind:
            return kind
        # A process that rewrote its whole argv into one string (process.title).
        if len(cmdline) == 1 and " " in cmdline[0]:
            kind = _detect(_tokens(cmdline[0]), extra_names)
            if kind:
                return kind
    try:
        return kind_of_name(proc.name(), extra_names)
    except (psutil.Error, OSError):
        return None


def _children_map() -> dict[int, list[int]]:
    """Parent → children for every process on the machine.

    On Linux it reads ``/proc/N/stat`` directly, about three times faster than
    psutil's per-process objects; elsewhere psutil does it.
    """
    try:
        return _children_map_proc()
    except OSError:
        pass
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid is not None:
            children.setdefault(ppid, []).append(proc.pid)
    return children


def _children_map_proc() -> dict[int, list[int]]:
    if not HAS_PROC:
        raise OSError("no /proc")
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := read_stat(name)) is not None:
            children.setdefault(stat[1], []).append(int(name))
    return children


def _has_proc_children() -> bool:
    me = os.getpid()
    return os.path.exists(f"/proc/{me}/task/{me}/children")


# Linux with CONFIG_PROC_CHILDREN lists each thread's children in /proc: walking one
# tree then reads only that tree, not every process on the machine.
_PROC_CHILDREN = _has_proc_children()


def _proc_children_of(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out  # gone
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return out


class _LazyChildren:
    """Children of a process, found as cheaply as this system allows.

    This is the cost of a readiness check (it runs before every delivery, and a pane's
    root is usually a shell, not the agent): per-process child lists where /proc has
    them, else one scan of the whole process table, made only if the walk gets past a
    root that is not itself the agent, and shared by every tree in one call.
    """

    def __init__(self, use_proc: bool = True) -> None:
        self._map: dict[int, list[int]] | None = None
        self.use_proc = use_proc and _PROC_CHILDREN

    def get(self, pid: int) -> Sequence[int]:
        if self.use_proc:
            return _proc_children_of(pid)
        if self._map is None:
            try:
                self._map = _children_map()
            except (psutil.Error, OSError):
                self._map = {}
        return self._map.get(pid, ())


def _tree(root: int, children: _LazyChildren) -> Iterator[psutil.Process]:
    """The live processes of the tree under ``root``, breadth first (nearest first); a
    zombie's children are not looked at, and nothing if ``root`` itself is gone."""
    queue = [root]
    seen: set[int] = set()
    while queue:
        pid = queue.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.Error, OSError):
            if pid == root:
                return
            continue
        yield proc
        queue.extend(children.get(pid))


def _walk(root: int, children: _LazyChildren, extra_names: Sequence[str]) -> str | None:
    # Breadth first: the agent nearest the pane's shell is the one the user talks to;
    # a deeper one is a tool it launched (an MCP server, `codex exec` run by Claude).
    for proc in _tree(root, children):
        kind = _process_kind(proc, extra_names)
        if kind:
            return kind
    return None


def agent_processes(pid: int, kind: str) -> list[psutil.Process]:
    """Every process under ``pid`` (and ``pid`` itself) that runs agent ``kind``, nearest
    first: a shell ``-c`` that launched it, the launcher, the program itself."""
    if not pid or pid <= 0:
        return []
    return [p for p in _tree(pid, _LazyChildren()) if _process_kind(p, ()) == kind]


def detect_agents_in_trees(
    pids: Iterable[int], extra_names: Sequence[str] = (), *, confirm_none: bool = False
) -> dict[int, str | None]:
    """Agent kind per process tree, sharing one scan of the process table.

    Finding descendants means reading every process's parent; doing that once for all
    panes instead of once per pane keeps ``telepty panes`` fast on busy machines.
    """
    pid_list = [p for p in pids if p and p > 0]
    if not pid_list:
        return {}
    children = _LazyChildren()
    found = {pid: _walk(pid, children, extra_names) for pid in pid_list}
    if confirm_none and children.use_proc:
        # The kernel's per-task child lists may miss a child while it is being created
        # or reparented. Where "no agent" would fail a delivery for good
        # (agent_exited), look again through the whole process table first.
        table = _LazyChildren(use_proc=False)
        for pid, kind in found.items():
            if kind is None:
                found[pid] = _walk(pid, table, extra_names)
    return found


def detect_agent_in_tree(
    pid: int, extra_names: Sequence[str] = (), *, confirm_none: bool = False
) -> str | None:
    """Agent kind running in ``pid`` or any descendant; None if none or the process is gone.

    Blocking (reads /proc): call it through ``asyncio.to_thread`` from the event loop.
    """
    if not pid or pid <= 0:
        return None
    return detect_agents_in_trees([pid], extra_names, confirm_none=confirm_none).get(pid)


def tree_contains_agent(pid: int, extra_names: Sequence[str] = ()) -> bool:
    """True while an agent CLI still runs under ``pid`` (not just the shell it left)."""
    return detect_agent_in_tree(pid, extra_names, confirm_none=True) is not None
