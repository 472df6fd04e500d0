"""``telepty bus publish`` and ``telepty bus tail`` (which follows the log: :mod:`telepty.cli.bus_tail`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from telepty.cli.client import EXIT_USAGE, Client, CliError
from telepty.cli.options import add_json, session_arg
from telepty.cli.output import emit_json
from telepty.config import Config


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bus = sub.add_parser("bus", help="publish to and follow the event bus",
                         description="Publish events to the daemon's bus, or follow its durable log.")
    bus_sub = bus.add_subparsers(dest="bus_command", metavar="SUBCOMMAND")
    bus.set_defaults(func=lambda args, config: _usage(bus))

    p = bus_sub.add_parser(
        "publish", help="publish one event",
        description="Publish one event of KIND. A turn_request is auto-routed into its target "
        "session (payload.prompt is typed there).",
    )
    p.add_argument("kind", help="the event kind, e.g. turn_request")
    session_arg(p, "--target", "target session id or alias (optionally SESSION@HOST)")
    p.add_argument("--payload", help="the payload as a JSON object, or - to read it from stdin")
    p.add_argument("--message-id", help="your id for the event (a repeat is not published twice)")
    add_json(p)
    p.set_defaults(func=cmd_publish)

    p = bus_sub.add_parser(
        "tail", help="follow the bus (reconnects and resumes after a daemon restart)",
        description="Print bus events as they happen. With --since, replay the log after that "
        "seq first. Survives daemon restarts: it resumes after the last seq it printed.",
    )
    p.add_argument("--since", type=int, metavar="SEQ",
                   help="replay events after this seq first (0 = everything kept)")
    p.add_argument("--kinds", metavar="KIND,KIND…",
                   help="only these kinds, comma-separated (session_health is shown only when named here)")
    p.add_argument("--new-kinds", action="store_true",
                   help="accept --kinds that nobody has published yet (your own publishers' kinds)")
    p.add_argument("--count", type=int, metavar="N", help="exit after printing this many events")
    p.add_argument("--json", action="store_true", help="one JSON event per line")
    p.set_defaults(func=cmd_tail)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- publish ----------------------------------------------------------------------------


def read_payload(arg: str | None) -> dict[str, Any] | None:
    if arg is None:
        return None
    text = sys.stdin.read() if arg == "-" else arg
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--payload is not valid JSON: {exc}", "invalid_payload",
                       exit_code=EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise CliError("--payload must be a JSON object", "invalid_payload", exit_code=EXIT_USAGE)
    return value


def cmd_publish(args: argparse.Namespace, config: Config) -> int:
    body: dict[str, Any] = {"kind": args.kind}
    if args.target is not None:
        body["target"] = args.target
    payload = read_payload(args.payload)
    if payload is not None:
        body["payload"] = payload
    if args.message_id is not None:
        body["message_id"] = args.message_id
    client = Client(config, foreign_ok=True)
    result = client.request("POST", "/api/bus/publish", body)
    route = result.get("route") or {}
    if args.json:
        emit_json(result)
    elif client.foreign is not None:  # {success, delivered}: no log there, so no seq
        print(f"published {args.kind} to {result.get('delivered', 0)} subscriber(s) of "
              f"{client.foreign.name} (it keeps no log: no seq)")
    else:
        note = " (duplicate: already in the log)" if result.get("duplicate") else ""
        print(f"published {result['kind']} seq {result['seq']} message_id {result['message_id']}{note}")
        if route.get("status") == "accepted":
            print(f"routed to {route.get('session_id')}: delivery {route.get('delivery_id')} "
                  f"{route.get('delivery_status', '')}".rstrip())
    if route.get("status") == "failed":
        if not args.json:
            print(f"telepty: not routed: {route.get('reason')}: {route.get('detail', '')}".rstrip(": "),
                  file=sys.stderr)
        return 1
    return 0


def cmd_tail(args: argparse.Namespace, config: Config) -> int:
    from telepty.cli.bus_tail import follow  # asyncio and aiohttp: only tail pays for them

    return follow(args, config)
