"""``telepty inject`` and ``telepty deliveries``."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any
from urllib.parse import quote

from telepty.cli.client import EXIT_FAILED, EXIT_USAGE, Client, CliError
from telepty.cli.options import add_json, add_quiet_ms, add_wait, int_between, non_blank, session_arg
from telepty.cli.output import emit_json, print_table
from telepty.cli.waiting import FINAL, wait_final
from telepty.config import Config

STATUSES = ["queued", "delivering", "delivered", "retrying", "held", "failed", "cancelled"]


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inject",
        help="deliver a prompt into a session",
        description="Deliver PROMPT (or stdin with '-') into TARGET (an id or alias), "
        "whole, at a quiet moment, then submit it.",
    )
    session_arg(p, "target", "session id or alias; ID@HOST for a session on a peer")
    p.add_argument("prompt", help="the prompt text, or - to read it from stdin")
    p.add_argument("--from", dest="sender", metavar="SESSION",
                   help="who is sending (a session id; default: this session, when inside one)")
    p.add_argument("--reply-to", metavar="SESSION", help="where replies should go (default: --from)")
    p.add_argument("--thread", dest="thread_id", metavar="ID", help="the conversation thread it belongs to")
    p.add_argument("--reply-expected", action="store_true",
                   help="ask for an answer (the prompt gets a line saying how to reply)")
    p.add_argument("--no-enter", action="store_true", help="paste without submitting")
    p.add_argument("--force", action="store_true", help="skip the quiet guard")
    p.add_argument("--raw", action="store_true",
                   help="allow control characters other than newline and tab")
    add_quiet_ms(p)
    add_wait(p)
    add_json(p)
    p.set_defaults(func=cmd_inject)

    p = sub.add_parser("deliveries", help="list deliveries, show one, or cancel one",
                       description="List recent deliveries (newest first), show one with ID, or "
                       "cancel a pending one with ID --cancel.")
    p.add_argument("id", nargs="?", help="a delivery id (dlv_…) to show or cancel")
    session_arg(p, "--session", "only deliveries to this session")
    p.add_argument("--status", choices=STATUSES, help="only deliveries with this status")
    p.add_argument("--limit", type=int_between(1, 1000), default=20, metavar="N",
                   help="at most this many (default: %(default)s)")
    p.add_argument("--cancel", action="store_true",
                   help="cancel the given pending delivery (or end the hold a failed one put on its session)")
    add_json(p)
    p.set_defaults(func=cmd_deliveries)


def read_prompt(arg: str) -> str:
    if arg != "-":
        return arg
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"stdin is not valid UTF-8 (byte {exc.start})", "invalid_prompt") from None


def cmd_inject(args: argparse.Namespace, config: Config) -> int:
    prompt = non_blank(read_prompt(args.prompt))
    body: dict[str, Any] = {"prompt": prompt}
    for key, value in (("from", args.sender), ("reply_to", args.reply_to),
                       ("thread_id", args.thread_id), ("quiet_ms", args.quiet_ms)):
        if value is not None:
            body[key] = value
    for key in ("reply_expected", "no_enter", "force", "raw"):
        if getattr(args, key):
            body[key] = True
    client = Client(config, foreign_ok=True)
    path = f"/api/sessions/{quote(args.target, safe='@')}/inject"
    if client.url and client.foreign is not None:
        return _inject_foreign(client, path, body, args)
    accepted = post_delivery(client, path, body)
    return report_delivery(follow(client, accepted, args), args)


def _inject_foreign(client: Client, path: str, body: dict[str, Any], args: argparse.Namespace) -> int:
    """Inject into a Node.js daemon: it writes the prompt and keeps no record, so there
    is no delivery to follow and nothing confirms it reached the agent."""
    assert client.foreign is not None
    unsupported = [name for name, given in (("--force", args.force), ("--raw", args.raw),
                                            ("--quiet-ms", args.quiet_ms is not None),
                                            ("--wait", args.wait)) if given]
    if unsupported:
        print(f"telepty: {client.foreign.name} has no {', '.join(unsupported)}: ignored", file=sys.stderr)
    sent = {k: v for k, v in body.items() if k not in ("force", "raw", "quiet_ms")}
    answer = client.request("POST", path, sent)
    result = {"delivery_id": answer.get("inject_id"), "status": "written", "session_id": args.target,
              "detail": f"typed by {client.foreign.name}; it does not confirm delivery"}
    if args.json:
        emit_json({**answer, **result})
    else:
        print(f"{result['delivery_id']} written (by {client.foreign.name}: not confirmed)")
    return 0


def post_delivery(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a delivery (answered at once, 202); a refusal comes back as its record."""
    # One idempotency key per invocation: a retried HTTP request cannot deliver twice.
    headers = {"Idempotency-Key": f"cli-{uuid.uuid4()}", "x-telepty-origin": "cli"}
    try:
        return dict(client.request("POST", path, body, headers=headers))
    except CliError as exc:
        if isinstance(exc.body, dict) and "delivery_id" in exc.body:
            return dict(exc.body)  # a final failure: the record says why
        raise


def follow(client: Client, accepted: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """With --wait, the record once final (what the answer said besides is kept)."""
    if not args.wait or accepted.get("status") in FINAL:
        return accepted
    record = wait_final(client, accepted["delivery_id"], args.timeout, show=not args.json)
    return {**accepted, **record}


def report_delivery(result: dict[str, Any], args: argparse.Namespace, suffix: str = "") -> int:
    """Print one delivery's outcome and turn it into the exit code scripts rely on."""
    if args.json:
        emit_json(result)
    status = result.get("status")
    if not args.json:
        line = f"{result['delivery_id']} {status}{suffix}"
        if result.get("reason"):
            line += f" ({result['reason']}{': ' + result['detail'] if result.get('detail') else ''})"
        print(line)
        for w in result.get("warnings", []):
            print(f"warning: {w}", file=sys.stderr)
    return EXIT_FAILED if status in {"failed", "cancelled"} else 0


def cmd_deliveries(args: argparse.Namespace, config: Config) -> int:
    client = Client(config)
    if args.cancel:
        if not args.id:
            raise CliError("--cancel needs a delivery id", "missing_argument", exit_code=EXIT_USAGE)
        d = client.request("DELETE", f"/api/deliveries/{args.id}")
        if args.json:
            emit_json(d)
        elif d.get("hold_released"):
            print(f"{d['delivery_id']} {d['status']}; the hold on {d['hold_released']} is released")
        else:
            print(f"{d['delivery_id']} {d['status']}")
        return 0
    if args.id:
        d = client.request("GET", f"/api/deliveries/{args.id}")
        if args.json:
            emit_json(d)
            return 0
        for key in ("delivery_id", "session_id", "target", "status", "reason", "detail", "stage",
                    "attempts", "confirmed", "origin", "from", "reply_to", "prompt_bytes",
                    "created_at", "finished_at", "next_attempt_at"):
            if d.get(key) not in (None, ""):
                print(f"{key:16} {d[key]}")
        if (d.get("evidence") or {}).get("blocked_by"):
            print(f"{'blocked_by':16} {d['evidence']['blocked_by']}")
        return 0
    items = client.request("GET", "/api/deliveries",
                           query={"session": args.session, "status": args.status, "limit": args.limit})
    if args.json:
        emit_json(items)
        return 0
    if not items:
        print("no deliveries")
        return 0
    print_table(
        [(d["delivery_id"], d["session_id"], d["status"], d.get("reason") or "-", d["attempts"],
          d.get("prompt_bytes", "-"), d["created_at"]) for d in items],
        ["ID", "SESSION", "STATUS", "REASON", "ATTEMPTS", "BYTES", "CREATED"],
    )
    return 0
