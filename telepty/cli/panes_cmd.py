"""``telepty panes`` and ``telepty register-pane``: agents already running in tmux.

These run beside the user's tmux, as the user, so they ask tmux directly (through
``telepty.tmux``) and tell the daemon only what it needs to remember.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
from pathlib import Path
from typing import Any

from telepty.cli.client import EXIT_USAGE, Client, CliError, NoDaemon
from telepty.cli.options import add_agent, add_json
from telepty.cli.output import emit_json, print_table
from telepty.config import Config, ConfigError
from telepty.delivery.profiles import load_profiles
from telepty.errors import BadRequest
from telepty.sessions.model import PANE_ID_RE, validate_session_id
from telepty.tmux import TmuxError, TmuxServer
from telepty.tmux.discovery import find_panes


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("panes", help="list tmux panes, marking those running an agent CLI")
    p.add_argument("--all", action="store_true", help="include panes with no agent")
    p.add_argument("--socket", action="append", help="a tmux socket path (default: all of yours)")
    add_json(p)
    p.set_defaults(func=cmd_panes)

    p = sub.add_parser("register-pane", help="register an existing tmux pane as a session")
    p.add_argument("pane", help="pane id, e.g. %%3")
    p.add_argument("--id", dest="session_id", required=True, help="session id to give it")
    p.add_argument("--socket", help="tmux socket path (default: this tmux, else the default server)")
    add_agent(p, "agent kind, a profile name or other (default: detected)")
    p.add_argument("--replace", action="store_true", help="take over a live session of that name")
    add_json(p)
    p.set_defaults(func=cmd_register_pane)


def user_sockets(config: Config) -> list[str]:
    """Every tmux server socket of this user, plus the one we are inside, if any."""
    found: list[str] = []
    base = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
    try:
        for entry in sorted(base.iterdir()):
            try:
                if stat.S_ISSOCK(entry.stat().st_mode):
                    found.append(str(entry))
            except OSError:
                continue
    except OSError:
        pass
    current = _current_socket()
    if current and current not in found:
        found.append(current)
    return found


def _current_socket() -> str | None:
    value = os.environ.get("TMUX", "")
    if not value:
        return None
    return value.rsplit(",", 2)[0] if value.count(",") >= 2 else value


async def _socket_path(srv: TmuxServer) -> str:
    return (await srv.run("display-message", "-p", "#{socket_path}", stage="socket_path")).strip()


async def _discover(sockets: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for sock in sockets:
        srv = TmuxServer(socket_path=sock, use_control=False)
        try:
            panes = await find_panes(srv)
        except TmuxError:
            continue  # a stale socket of a server that is gone
        for p in panes:
            rows.append({
                "pane": p.pane_id, "socket": sock, "session": p.session_name,
                "window": p.window_index, "index": p.pane_index, "pid": p.pane_pid,
                "command": p.pane_current_command, "cwd": p.pane_current_path,
                "agent": p.agent, "dead": p.pane_dead,
            })
    return rows


def know_user_agents(config: Config) -> None:
    """Load the user's profiles so pane discovery knows the programs they name
    (``[opencode]`` with ``programs = ["opencode"]``)."""
    try:
        load_profiles(config.profiles_path)
    except ConfigError as exc:
        raise CliError(f"invalid_profiles: {exc}", "invalid_profiles") from None


def cmd_panes(args: argparse.Namespace, config: Config) -> int:
    if not TmuxServer().available():
        raise CliError("tmux is not installed or not on PATH", "tmux_unavailable")
    know_user_agents(config)
    rows = asyncio.run(_discover(args.socket or user_sockets(config)))
    registered: dict[tuple[str, str], str] = {}
    try:
        for s in Client(config, timeout=3.0).request("GET", "/api/sessions", query={"all": "0"}):
            if s.get("tmux_pane"):
                registered[(s["tmux_pane"], s.get("tmux_socket") or "")] = s["id"]
    except NoDaemon:
        pass  # listing panes does not need the daemon (and never asks another home's)
    for r in rows:
        r["session_id"] = registered.get((r["pane"], r["socket"]))
    if not args.all:
        rows = [r for r in rows if r["agent"]]
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print("no agent panes found" + ("" if args.all else " (use --all to list every pane)"))
        return 0
    print_table(
        [(r["pane"], f"{r['session']}:{r['window']}.{r['index']}", r["agent"] or "-", r["pid"],
          r["command"], r["session_id"] or "-", os.path.basename(r["socket"])) for r in rows],
        ["PANE", "TARGET", "AGENT", "PID", "COMMAND", "REGISTERED", "SOCKET"],
    )
    return 0


async def _pane_details(pane: str, socket: str | None) -> tuple[str, Any]:
    srv = TmuxServer(socket_path=socket, use_control=False)
    try:
        path = await _socket_path(srv)
        panes = {p.pane_id: p for p in await find_panes(srv)}
    except TmuxError as exc:
        raise CliError(f"{exc.code}: {exc.detail}", exc.code) from None
    found = panes.get(pane)
    if found is None or found.pane_dead:
        raise CliError(f"pane_dead: pane {pane} does not exist on {path}", "pane_dead")
    return path, found


def cmd_register_pane(args: argparse.Namespace, config: Config) -> int:
    if not PANE_ID_RE.match(args.pane):
        raise CliError(f"invalid_field: pane must look like %3, got {args.pane!r}", "invalid_field",
                       exit_code=EXIT_USAGE)
    try:
        validate_session_id(args.session_id, "--id")
    except BadRequest as exc:
        raise CliError(f"{exc.code}: {exc.detail}", exc.code, exit_code=EXIT_USAGE) from None
    if not TmuxServer().available():
        raise CliError("tmux_unavailable: tmux is not installed or not on PATH", "tmux_unavailable")
    know_user_agents(config)
    socket, pane = asyncio.run(_pane_details(args.pane, args.socket or _current_socket()))
    body = {
        "type": "pane", "session_id": args.session_id, "tmux_pane": args.pane,
        "tmux_socket": socket, "command": pane.agent or pane.pane_current_command,
        "cwd": pane.pane_current_path, "pid": pane.pane_pid,
        "agent": args.agent or pane.agent or "other", "replace": args.replace,
    }
    session = Client(config).request("POST", "/api/sessions/register", body)
    if args.json:
        emit_json(session)
    else:
        print(f"registered {session['id']} → pane {args.pane} ({session['agent']}) on {socket}")
    return 0
