"""``telepty daemon``, ``status`` and ``meta``."""

from __future__ import annotations

import argparse

from telepty.cli.client import Client, CliError
from telepty.cli.options import add_json, int_between
from telepty.cli.output import emit_json
from telepty.config import Config


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("daemon", help="run the daemon in the foreground",
                       description="Run this home's daemon (TELEPTY_HOME) in the foreground. It writes "
                       "daemon.json there, which is how every telepty command finds it.")
    p.add_argument("--host", help="address to bind (default 127.0.0.1, env TELEPTY_HOST)")
    p.add_argument("--port", type=int_between(0, 65535),
                   help="port (default 3848, env TELEPTY_PORT; 0 = any free port)")
    p.set_defaults(func=cmd_daemon, needs_daemon=False)

    p = sub.add_parser("status", help="is a daemon up, where, which version")
    add_json(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("meta", help="the daemon's identity and capabilities")
    add_json(p)
    p.set_defaults(func=cmd_meta)


def cmd_daemon(args: argparse.Namespace, config: Config) -> int:
    from telepty.daemon import run_daemon

    changes: dict[str, object] = {}
    if args.host:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    return run_daemon(config.with_(**changes) if changes else config)


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    client = Client(config, timeout=3.0)
    meta = client.meta  # fetched when the daemon was checked to be this home's
    sessions = client.request("GET", "/api/sessions")
    live = sum(1 for s in sessions if s.get("state") == "running")
    if args.json:
        emit_json({"running": True, "url": client.url, "meta": meta, "sessions": len(sessions),
                   "live_sessions": live})
        return 0
    print(f"telepty daemon {meta['version']} running at {client.url} (pid {meta['pid']})")
    print(f"machine: {meta['machine_id']}   home: {meta.get('home', '?')}")
    print(f"sessions: {len(sessions)} ({live} running)")
    return 0


def cmd_meta(args: argparse.Namespace, config: Config) -> int:
    meta = Client(config).meta
    if args.json:
        emit_json(meta)
        return 0
    for key in ("version", "pid", "host", "port", "machine_id", "started_at", "home", "home_id"):
        print(f"{key:12} {meta.get(key)}")
    print(f"{'capabilities':12} {', '.join(meta.get('capabilities', []))}")
    return 0


__all__ = ["CliError", "add_parsers"]
