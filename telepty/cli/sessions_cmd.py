"""``telepty list``, ``screen``, ``kill``, ``rename`` and ``clean``.

``kill`` and ``rename`` take exact session ids only, never aliases: alias resolution
once killed a sibling session in the Node.js telepty (SPEC §8).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from telepty.cli.client import Client
from telepty.cli.output import emit_json, human_seconds, print_table
from telepty.config import Config


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("list", aliases=["ls"], help="list sessions")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true",
                   help="include exited sessions and the sessions of every peer in peers.json")
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

    p = sub.add_parser("rename", help="give a session a new id (exact ids only, never an alias)",
                       description="Rename session OLD (its exact id) to NEW. Refused while deliveries to "
                       "it are pending or its wrapper is disconnected.")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("clean", help="forget exited sessions",
                       description="Remove exited sessions from the daemon's records (running and "
                       "disconnected ones are never touched).")
    p.add_argument("--exited", action="store_true",
                   help="remove exited sessions (the default, and the only kind clean removes)")
    p.add_argument("--older-than", metavar="D",
                   help="only those idle longer than D (90s, 15m, 2h, 7d, 1w)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_clean)


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    answer = Client(config).request(
        "GET",
        "/api/sessions",
        query={"type": args.type, "agent": args.agent, "project": args.project,
               "all": "1" if args.all else "0", "scope": "all" if args.all else None},
    )
    if isinstance(answer, dict):  # scope=all: local and peer sessions
        return _list_everywhere(answer, args.json)
    sessions = answer
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


def _list_everywhere(answer: dict[str, Any], as_json: bool) -> int:
    sessions = answer.get("sessions") or []
    peers = answer.get("peers") or []
    for p in peers:
        if not p.get("reachable"):
            print(f"telepty: peer {p['name']} ({p['url']}) unreachable: {p.get('error')}", file=sys.stderr)
    if as_json:
        emit_json(sessions)  # the same shape as a local list, each with host and address
        return 0
    if not sessions:
        print("no sessions")
        return 0
    rows = [
        (s["address"], s["host"], s["type"], s["agent"], s["state"], human_seconds(s.get("idle_seconds")),
         s.get("locator", {}).get("project_id", ""), s["command"][:40])
        for s in sessions
    ]
    print_table(rows, ["ADDRESS", "HOST", "TYPE", "AGENT", "STATE", "IDLE", "PROJECT", "COMMAND"])
    return 0


def cmd_kill(args: argparse.Namespace, config: Config) -> int:
    result = Client(config).request("DELETE", f"/api/sessions/{args.id}")
    if args.json:
        emit_json(result)
    else:
        print(f"killed {result['session_id']}")
    return 0


def cmd_rename(args: argparse.Namespace, config: Config) -> int:
    result = Client(config).request("POST", f"/api/sessions/{quote(args.old, safe='')}/rename",
                                    {"new_id": args.new})
    if args.json:
        emit_json(result)
    else:
        print(f"renamed {result['old_id']} → {result['new_id']}")
    return 0


def cmd_clean(args: argparse.Namespace, config: Config) -> int:
    body: dict[str, object] = {"exited": True, "dry_run": args.dry_run}
    if args.older_than is not None:
        body["older_than"] = args.older_than
    result = Client(config).request("POST", "/api/sessions/clean", body)
    if args.json:
        emit_json(result)
        return 0
    verb = "would remove" if result["dry_run"] else "removed"
    if not result["removed"]:
        print("nothing to clean")
    for sid in result["removed"]:
        print(f"{verb} {sid}")
    return 0


def cmd_screen(args: argparse.Namespace, config: Config) -> int:
    body = Client(config).request("GET", f"/api/sessions/{args.id}/screen",
                                  query={"lines": args.lines})
    if args.json:
        emit_json(body)
    else:
        print(body["text"])
    return 0
