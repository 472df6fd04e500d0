"""``telepty peers``: the peers in peers.json, whether they answer, and how fast."""

from __future__ import annotations

import argparse

from telepty.cli.client import Client
from telepty.cli.options import add_json
from telepty.cli.output import emit_json, print_table
from telepty.config import Config


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("peers", help="list peer daemons with reachability, version and round-trip time",
                       description="Peers come from $TELEPTY_HOME/peers.json: "
                       '{"name": {"url": "http://100.x.y.z:3848", "token": "..."}}. '
                       "Address a session on one as ID@NAME.")
    add_json(p)
    p.set_defaults(func=cmd_peers)


def cmd_peers(args: argparse.Namespace, config: Config) -> int:
    answer = Client(config).request("GET", "/api/peers", timeout=15.0)
    if args.json:
        emit_json(answer)
        return 0
    peers = answer.get("peers") or []
    if not peers:
        print(f"no peers (add them to {answer.get('peers_file')})")
        return 0
    rows = [
        (p["name"], p["url"], "yes" if p.get("reachable") else "no", p.get("version") or "-",
         p.get("machine_id") or "-", f"{p['rtt_ms']:.1f}ms" if p.get("rtt_ms") is not None else "-",
         p.get("error") or "")
        for p in peers
    ]
    print_table(rows, ["NAME", "URL", "REACHABLE", "VERSION", "MACHINE_ID", "RTT", "ERROR"])
    return 0
