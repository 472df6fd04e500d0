"""``telepty list``, ``screen``, ``kill``, ``rename`` and ``clean``.

``kill`` and ``rename`` take exact session ids only, never aliases: alias resolution
once killed a sibling session in the Node.js telepty.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from telepty.cli.client import Client, CliError
from telepty.cli.node_daemon import node_sessions
from telepty.cli.options import add_agent, add_json, int_between, session_arg
from telepty.cli.output import emit_json, human_seconds, print_table
from telepty.config import Config

SESSION_TYPES = ["spawned", "wrapped", "pane"]


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("list", aliases=["ls"], help="list sessions")
    add_json(p)
    p.add_argument("--all", action="store_true",
                   help="include exited sessions and the sessions of every peer in peers.json")
    p.add_argument("--type", choices=SESSION_TYPES, help="only sessions of this type")
    add_agent(p, "only sessions of this agent kind")
    p.add_argument("--project", help="only sessions in this project (basename of their cwd)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("screen", help="what the session's terminal shows now",
                       description="The last lines of the session's screen: a tmux pane's capture, or "
                       "the output of a PTY session rendered by the terminal model `explain` uses.")
    session_arg(p, "id", "session id or alias")
    p.add_argument("--lines", type=int_between(1, 10_000), default=40, metavar="N",
                   help="at most this many lines, the last ones (default: %(default)s)")
    add_json(p)
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("kill", help="stop a session (exact id only, never an alias)")
    session_arg(p, "id", "the session's exact id")
    add_json(p)
    p.set_defaults(func=cmd_kill)

    p = sub.add_parser("rename", help="give a session a new id (exact ids only, never an alias)",
                       description="Rename session OLD (its exact id) to NEW. Refused while deliveries to "
                       "it are pending or its wrapper is disconnected.")
    session_arg(p, "old", "the session's exact id now", metavar="OLD")
    p.add_argument("new", metavar="NEW", help="the id it gets")
    add_json(p)
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("clean", help="forget exited sessions",
                       description="Remove exited sessions from the daemon's records (running and "
                       "disconnected ones are never touched).")
    p.add_argument("--exited", action="store_true",
                   help="remove exited sessions (the default, and the only kind clean removes)")
    p.add_argument("--older-than", metavar="D",
                   help="only those idle longer than D (90s, 15m, 2h, 7d, 1w)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    add_json(p)
    p.set_defaults(func=cmd_clean)


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    client = Client(config, foreign_ok=True)
    answer = client.request(
        "GET",
        "/api/sessions",
        query={"type": args.type, "agent": args.agent, "project": args.project,
               "all": "1" if args.all else "0", "scope": "all" if args.all else None},
    )
    sessions = answer
    if client.foreign is not None:  # the Node.js daemon: its records, filtered here
        sessions = [s for s in node_sessions(answer) if _wanted(s, args)]
    elif isinstance(answer, dict):  # scope=all: local and peer sessions, each with its address
        sessions = answer.get("sessions") or []
        for p in answer.get("peers") or []:
            if not p.get("reachable"):
                print(f"telepty: peer {p['name']} ({p['url']}) unreachable: {p.get('error')}",
                      file=sys.stderr)
    if args.json:
        emit_json(sessions)  # with --all, each also has its host and address
        return 0
    if not sessions:
        print("no sessions" + ("" if args.all else " (use --all to include exited ones)"))
        return 0
    print_table([_row(s) for s in sessions], LIST_COLUMNS)
    return 0


def _wanted(s: dict[str, Any], args: argparse.Namespace) -> bool:
    """The filters our daemon applies, for a daemon that ignores them."""
    return ((args.all or s["state"] != "exited") and args.type in (None, s["type"])
            and args.agent in (None, s["agent"])
            and args.project in (None, (s.get("locator") or {}).get("project_id")))


LIST_COLUMNS = ["ID", "TYPE", "AGENT", "STATE", "PANE", "IDLE", "CLIENTS", "PROJECT", "COMMAND"]


def _row(s: dict[str, Any]) -> tuple[Any, ...]:
    """One session, the same columns with or without --all (a peer's is ID@HOST)."""
    return (s.get("address") or s["id"], s["type"], s["agent"], s["state"], s.get("tmux_pane") or "-",
            human_seconds(s.get("idle_seconds")), s.get("clients", 0),
            (s.get("locator") or {}).get("project_id", ""), s["command"][:40])


def cmd_kill(args: argparse.Namespace, config: Config) -> int:
    client = Client(config, foreign_ok=True)
    if client.url and client.foreign is not None:
        # The Node.js daemon deletes whatever an alias resolves to; kill takes exact ids only.
        ids = {s["id"] for s in node_sessions(client.request("GET", "/api/sessions"))}
        if args.id not in ids:
            raise CliError(f"no session with exactly the id {args.id!r} on {client.foreign.name}",
                           "session_not_found", hint="see `telepty list`; kill never resolves aliases")
    result = client.request("DELETE", f"/api/sessions/{args.id}")
    if args.json:
        emit_json(result)
    else:
        print(f"killed {result.get('session_id') or args.id}")
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
