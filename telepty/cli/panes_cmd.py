"""``telepty panes`` and ``telepty register-pane``: agents already running in tmux.

These run beside the user's tmux, as the user, so they ask tmux directly (through
libtmux, :mod:`telepty.tmux.user_servers`) and tell the daemon only what it needs to
remember. tmux, the process walk that finds the agent in a pane and the profiles are
loaded when one of these commands runs, never by the CLI's other commands.
"""

from __future__ import annotations

import argparse
import os
import shutil
from typing import TYPE_CHECKING, Any

from telepty.cli.client import EXIT_USAGE, Client, CliError, NoDaemon
from telepty.cli.options import add_agent, add_json
from telepty.cli.output import emit_json, print_table
from telepty.config import Config, ConfigError
from telepty.errors import BadRequest
from telepty.sessions.model import PANE_ID_RE, validate_session_id

if TYPE_CHECKING:
    from telepty.tmux.server import PaneInfo


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


def _discover(sockets: list[str], tmux_bin: str) -> list[dict[str, Any]]:
    from telepty.tmux import TmuxError
    from telepty.tmux.user_servers import UserTmux

    rows: list[dict[str, Any]] = []
    for sock in sockets:
        try:
            panes = UserTmux(sock, tmux_bin).panes()
        except TmuxError:
            continue  # a stale socket of a server that is gone
        agents = _agents(panes)
        for p in panes:
            rows.append({
                "pane": p.pane_id, "socket": sock, "session": p.session_name,
                "window": p.window_index, "index": p.pane_index, "pid": p.pane_pid,
                "command": p.pane_current_command, "cwd": p.pane_current_path,
                "agent": agents.get(p.pane_id), "dead": p.pane_dead,
            })
    return rows


def _agents(panes: list[PaneInfo]) -> dict[str, str]:
    """The agent kind running in each live pane (a pane's own command is usually a shell;
    the agent is somewhere below it)."""
    from telepty.sessions.agents import detect_agents_in_trees

    live = [p for p in panes if not p.pane_dead]
    kinds = detect_agents_in_trees([p.pane_pid for p in live], ())
    return {p.pane_id: kinds[p.pane_pid] for p in live if kinds.get(p.pane_pid)}


def _require_tmux(config: Config, message: str) -> None:
    if shutil.which(config.tmux_bin) is None:
        raise CliError(message, "tmux_unavailable")


def know_user_agents(config: Config) -> None:
    """Load the user's profiles so pane discovery knows the programs they name
    (``[opencode]`` with ``programs = ["opencode"]``)."""
    from telepty.delivery.profiles import load_profiles

    try:
        load_profiles(config.profiles_path)
    except ConfigError as exc:
        raise CliError(f"invalid_profiles: {exc}", "invalid_profiles") from None


def cmd_panes(args: argparse.Namespace, config: Config) -> int:
    from telepty.tmux.user_servers import user_sockets

    _require_tmux(config, "tmux is not installed or not on PATH")
    know_user_agents(config)
    rows = _discover(args.socket or user_sockets(), config.tmux_bin)
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


def _pane_details(pane: str, socket: str | None, tmux_bin: str) -> tuple[str, PaneInfo, str | None]:
    """(the server's socket path, the pane, the agent running in it)."""
    from telepty.tmux import TmuxError
    from telepty.tmux.user_servers import UserTmux

    srv = UserTmux(socket, tmux_bin)
    try:
        path = srv.socket_path()
        panes = {p.pane_id: p for p in srv.panes()}
    except TmuxError as exc:
        raise CliError(f"{exc.code}: {exc.detail}", exc.code) from None
    found = panes.get(pane)
    if found is None or found.pane_dead:
        raise CliError(f"pane_dead: pane {pane} does not exist on {path}", "pane_dead")
    return path, found, _agents([found]).get(pane)


def cmd_register_pane(args: argparse.Namespace, config: Config) -> int:
    from telepty.tmux.env import TmuxEnv

    if not PANE_ID_RE.match(args.pane):
        raise CliError(f"invalid_field: pane must look like %3, got {args.pane!r}", "invalid_field",
                       exit_code=EXIT_USAGE)
    try:
        validate_session_id(args.session_id, "--id")
    except BadRequest as exc:
        raise CliError(f"{exc.code}: {exc.detail}", exc.code, exit_code=EXIT_USAGE) from None
    _require_tmux(config, "tmux_unavailable: tmux is not installed or not on PATH")
    know_user_agents(config)
    inside = TmuxEnv.of(os.environ)
    socket, pane, agent = _pane_details(args.pane, args.socket or (inside.socket_path if inside else None),
                                        config.tmux_bin)
    body = {
        "type": "pane", "session_id": args.session_id, "tmux_pane": args.pane,
        "tmux_socket": socket, "command": agent or pane.pane_current_command,
        "cwd": pane.pane_current_path, "pid": pane.pane_pid,
        "agent": args.agent or agent or "other", "replace": args.replace,
    }
    session = Client(config).request("POST", "/api/sessions/register", body)
    if args.json:
        emit_json(session)
    else:
        print(f"registered {session['id']} → pane {args.pane} ({session['agent']}) on {socket}")
    return 0
