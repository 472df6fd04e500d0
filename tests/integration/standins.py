"""Helpers that run the agent stand-ins (tests/programs/standin_*.py) in real tmux panes.

A stand-in runs as ``exec -a <agent>``, so the process tree shows the agent kind the
way a real ``codex``/``claude`` would (telepty's readiness check looks for it), and
everything it really did is read back from its JSON-lines log.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, wait_until

PROGRAMS = ROOT / "tests" / "programs"


def standin_command(program: str, agent: str, out: Path, args: list[str]) -> str:
    """A shell command line running the stand-in with argv[0] = the agent's name."""
    argv = [sys.executable, str(PROGRAMS / program), "--out", str(out), *args]
    return f"exec -a {shlex.quote(agent)} {shlex.join(argv)}"


@dataclass
class StandInPane:
    pane_id: str
    socket_path: str
    out: Path
    pane: Any  # libtmux Pane
    agent: str
    tmp: Path

    def log(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        data = self.out.read_text()
        complete = data[: data.rfind("\n") + 1]  # a last line without its newline is mid-write
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def submissions(self) -> list[str]:
        return [e["text"] for e in self.log() if "n" in e]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log() if e.get("event") == name]

    def screen(self) -> str:
        return "\n".join(self.pane.capture_pane())

    async def ready(self, text: str | None = None) -> None:
        marker = text or ("Ask Codex" if self.agent == "codex" else "for shortcuts")
        await wait_until(lambda: marker in self.screen(), 10, message=f"{self.agent} stand-in ready")


def _socket(session: Any) -> str:
    return session.server.cmd("display-message", "-p", "#{socket_path}").stdout[0]


def start_standin(session: Any, tmp_path: Path, program: str, *, name: str = "agent",
                  agent: str = "codex", args: list[str] | None = None) -> StandInPane:
    """A new window in the libtmux test ``session`` running the stand-in, nothing else."""
    out = tmp_path / f"{name}.jsonl"
    cmd = standin_command(program, agent, out, list(args or []))
    window = session.new_window(window_name=name, window_shell=f"bash -c {shlex.quote(cmd)}")
    pane = window.active_pane
    return StandInPane(pane.pane_id, _socket(session), out, pane, agent, tmp_path)


def start_shell(session: Any, tmp_path: Path, name: str = "shell") -> StandInPane:
    """A bare interactive shell (prompt ``$ ``); stand-ins are started from it with
    ``launch_from_shell`` and return to it when they exit."""
    window = session.new_window(
        window_name=name,
        window_shell="env PS1='$ ' HISTFILE=/dev/null bash --norc --noprofile -i",
    )
    pane = window.active_pane
    return StandInPane(pane.pane_id, _socket(session), tmp_path / f"{name}.jsonl", pane, "codex",
                       tmp_path)


def launch_from_shell(shell: StandInPane, program: str, args: list[str]) -> None:
    """Type a command line into the shell that runs the stand-in as a child process."""
    cmd = "(" + standin_command(program, shell.agent, shell.out, args) + ")"
    shell.pane.send_keys(cmd, enter=True)


async def register(client: Any, sp: StandInPane, sid: str, agent: str | None = None) -> None:
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": sid, "tmux_pane": sp.pane_id, "tmux_socket": sp.socket_path,
        "command": sp.agent, "agent": agent or sp.agent,
    })
    assert resp.status == 201, await resp.text()


def write_profiles(home: Path, text: str) -> None:
    (home / "profiles.toml").write_text(text)


async def inject(client: Any, target: str, headers: dict[str, str] | None = None,
                 **body: Any) -> tuple[int, Any]:
    resp = await client.post(f"/api/sessions/{target}/inject", json=body, headers=headers or {})
    return resp.status, await resp.json()


async def keys(client: Any, target: str, *key_items: Any, **body: Any) -> tuple[int, Any]:
    resp = await client.post(f"/api/sessions/{target}/keys", json={"keys": list(key_items), **body})
    return resp.status, await resp.json()


async def delivery(client: Any, did: str) -> dict[str, Any]:
    return await (await client.get(f"/api/deliveries/{did}")).json()  # type: ignore[no-any-return]
