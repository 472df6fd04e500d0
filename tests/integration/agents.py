"""Helpers that put the fake agent (tests/programs/fake_agent.py) in real terminals."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import ROOT

FAKE_AGENT = str(ROOT / "tests" / "programs" / "fake_agent.py")


@dataclass
class AgentFiles:
    out: Path
    raw: Path
    stop: Path

    def submissions(self) -> list[str]:
        return [str(e["text"]) for e in self.records() if "text" in e]

    def records(self) -> list[dict[str, Any]]:
        """Every line of the log: submissions ({n, text, t}) and events ({event, t})."""
        if not self.out.exists():
            return []
        data = self.out.read_text()
        # A line is complete only once its newline is written; a big one may be mid-write.
        complete = data[: data.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line]

    def raw_bytes(self) -> bytes:
        return self.raw.read_bytes() if self.raw.exists() else b""


def agent_argv(files: AgentFiles, *, busy: bool = False, bracketed: bool = True,
               echo: bool = False) -> list[str]:
    argv = [sys.executable, FAKE_AGENT, "--out", str(files.out), "--raw-out", str(files.raw)]
    if echo:
        argv.append("--echo")
    if busy:
        argv += ["--busy-until", str(files.stop)]
    if not bracketed:
        argv.append("--no-bracketed")
    return argv


def agent_files(tmp_path: Path, name: str = "agent") -> AgentFiles:
    return AgentFiles(out=tmp_path / f"{name}.jsonl", raw=tmp_path / f"{name}.raw",
                      stop=tmp_path / f"{name}.stop")


@dataclass
class AgentPane:
    pane_id: str
    socket_path: str
    files: AgentFiles
    pane: object  # libtmux Pane

    def screen(self) -> str:
        return "\n".join(self.pane.capture_pane())  # type: ignore[attr-defined]


def start_agent_pane(session: object, tmp_path: Path, name: str = "agent", *, busy: bool = False,
                     bracketed: bool = True, echo: bool = False) -> AgentPane:
    """A new tmux window in the libtmux test ``session`` running the fake agent."""
    files = agent_files(tmp_path, name)
    window = session.new_window(  # type: ignore[attr-defined]
        window_name=name,
        window_shell=shlex.join(agent_argv(files, busy=busy, bracketed=bracketed, echo=echo)),
    )
    pane = window.active_pane
    socket_path = session.server.cmd("display-message", "-p", "#{socket_path}").stdout[0]  # type: ignore[attr-defined]
    return AgentPane(pane_id=pane.pane_id, socket_path=socket_path, files=files, pane=pane)


# -- input programs of three kinds, for crash tests ------------------------------------------

INPUT_KINDS = ("box", "readline", "cat")


def input_program(kind: str, log: Path, busy_until: Path | None = None) -> str:
    """A shell command line running an input program that logs what it receives.

    - ``box``: the fake agent drawing its input line (``ready> …``; JSON-lines log);
    - ``readline``: bash's ``read -e`` (GNU readline, bracketed paste; one line per entry);
    - ``cat``: a tty in canonical mode (one line per entry).

    With ``busy_until``, each prints a ticker until that file exists (a busy agent).
    """
    out = shlex.quote(str(log))
    if kind == "box":
        argv = [sys.executable, FAKE_AGENT, "--out", str(log), "--echo"]
        if busy_until is not None:
            argv += ["--busy-until", str(busy_until)]
        return shlex.join(argv)
    if kind == "readline":
        loop = f'while IFS= read -r -e -p "$ " line; do printf "%s\\n" "$line" >> {out}; done'
        body = shlex.join(["bash", "--norc", "--noprofile", "-c", loop])
    elif kind == "cat":
        body = f"cat >> {out}"
    else:
        raise ValueError(f"unknown input program kind {kind!r}")
    if busy_until is None:
        return f"exec {body}"
    stop = shlex.quote(str(busy_until))
    return f"while [ ! -e {stop} ]; do echo working; sleep 0.05; done; exec {body}"


def input_submissions(kind: str, log: Path) -> list[str]:
    """What an ``input_program`` received, in order (complete lines only)."""
    if not log.exists():
        return []
    data = log.read_text()
    complete = data[: data.rfind("\n") + 1]
    if kind == "box":
        records = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return [str(r["text"]) for r in records if "text" in r]
    return complete.splitlines()
