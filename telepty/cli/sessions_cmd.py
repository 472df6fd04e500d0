"""``telepty list`` and ``telepty kill``."""

from __future__ import annotations

import argparse

from telepty.cli.client import Client
from telepty.cli.output import emit_json, human_seconds, print_table
from telepty.config import Config


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("list", aliases=["ls"], help="list sessions")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="include exited sessions")
    p.add_argument("--type", choices=["spawned", "wrapped", "pane"])
    p.add_argument("--agent")
    p.add_argument("--project")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("screen", help="what the session's terminal shows now")
    p.add_argument("id")
    p.add_argument("--lines", type=int, default=40)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("kill", help="stop a session (exact id only, never an alias)")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_kill)


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    sessions = Client(config).request(
        "GET",
        "/api/sessions",
        query={"type": args.type, "agent": args.agent, "project": args.project,
               "all": "1" if args.all else "0"},
    )
    if args.json:
        emit_json(sessions)
        return 0
    if not sessions:
        print("no sessions" + ("" if args.all else " (use --all to include exited ones)"))
        return 0
    rows = [
        (s["id"], s["type"], s["agent"], s["state"], s.get("tmux_pane") or "-",
         human_seconds(s.get("idle_seconds")), s.get("clients", 0), s["locator"]["project_id"],
         s["command"][:40])
        for s in sessions
    ]
    print_table(rows, ["ID", "TYPE", "AGENT", "STATE", "PANE", "IDLE", "CLIENTS", "PROJECT", "COMMAND"])
    return 0


def cmd_kill(args: argparse.Namespace, config: Config) -> int:
    result = Client(config).request("DELETE", f"/api/sessions/{args.id}")
    if args.json:
        emit_json(result)
    else:
        print(f"killed {result['session_id']}")
    return 0


def cmd_screen(args: argparse.Namespace, config: Config) -> int:
    body = Client(config).request("GET", f"/api/sessions/{args.id}/screen",
                                  query={"lines": args.lines})
    if args.json:
        emit_json(body)
    else:
        print(body["text"])
    return 0
