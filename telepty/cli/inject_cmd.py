"""``telepty inject`` and ``telepty deliveries``."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from telepty.cli.client import Client, CliError
from telepty.cli.output import emit_json, print_table
from telepty.config import Config
from telepty.delivery.model import DeliveryStatus

FINAL = {"delivered", "failed", "cancelled"}


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inject",
        help="deliver a prompt into a session",
        description="Deliver PROMPT (or stdin with '-') into TARGET (an id or alias), "
        "whole, at a quiet moment, then submit it.",
    )
    p.add_argument("target", help="session id or alias; ID@HOST for a session on a peer")
    p.add_argument("prompt", help="the prompt text, or - to read it from stdin")
    p.add_argument("--from", dest="sender", help="who is sending (a session id)")
    p.add_argument("--reply-to", help="where replies should go (default: --from)")
    p.add_argument("--thread", dest="thread_id", help="thread id")
    p.add_argument("--reply-expected", action="store_true")
    p.add_argument("--no-enter", action="store_true", help="paste without submitting")
    p.add_argument("--force", action="store_true", help="skip the quiet guard")
    p.add_argument("--raw", action="store_true", help="allow control characters")
    p.add_argument("--quiet-ms", type=int, help="quiet time required before injecting")
    p.add_argument("--wait", action="store_true", help="wait until the delivery is final")
    p.add_argument("--timeout", type=float, default=120.0, help="with --wait: give up after (s)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inject)

    p = sub.add_parser("deliveries", help="list deliveries, show one, or cancel one")
    p.add_argument("id", nargs="?", help="a delivery id to show")
    p.add_argument("--session")
    p.add_argument("--status", choices=[str(s) for s in DeliveryStatus])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cancel", action="store_true",
                   help="cancel the given pending delivery (or end the hold a failed one put on its session)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_deliveries)


@contextlib.contextmanager
def spinner(label: str, enabled: bool) -> Iterator[None]:
    """A spinner on stderr while we wait — only for a person at a terminal."""
    if not enabled:
        yield
        return
    stop = threading.Event()

    def spin() -> None:
        for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            if stop.wait(0.1):
                break
            sys.stderr.write(f"\r{frame} {label}")
            sys.stderr.flush()
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def read_prompt(arg: str) -> str:
    if arg != "-":
        return arg
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"stdin is not valid UTF-8 (byte {exc.start})", "invalid_prompt") from None


def cmd_inject(args: argparse.Namespace, config: Config) -> int:
    prompt = read_prompt(args.prompt)
    body: dict[str, Any] = {"prompt": prompt}
    for key, value in (("from", args.sender), ("reply_to", args.reply_to),
                       ("thread_id", args.thread_id), ("quiet_ms", args.quiet_ms)):
        if value is not None:
            body[key] = value
    for key in ("reply_expected", "no_enter", "force", "raw"):
        if getattr(args, key):
            body[key] = True
    client = Client(config)
    # One idempotency key per invocation: a retried HTTP request cannot deliver twice.
    headers = {"Idempotency-Key": f"cli-{uuid.uuid4()}", "x-telepty-origin": "cli"}
    if args.wait:
        body["wait"] = True
        body["timeout"] = args.timeout
        with spinner(f"delivering to {args.target}", sys.stderr.isatty() and not args.json):
            result = _request_final(client, args.target, body, headers, args.timeout)
    else:
        result = client.request("POST", f"/api/sessions/{args.target}/inject", body, headers=headers)
    return report_delivery(result, args)


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
    if status in {"failed", "cancelled"}:
        return 1
    if args.wait and status not in FINAL:
        print(f"telepty: still {status} after {args.timeout:.0f}s", file=sys.stderr)
        return 4
    return 0


def _request_final(client: Client, target: str, body: dict[str, Any], headers: dict[str, str],
                   timeout: float) -> dict[str, Any]:
    try:
        return client.request("POST", f"/api/sessions/{target}/inject", body, headers=headers,
                              timeout=timeout + 10)
    except CliError as exc:
        # A final failure comes back as an error status with the record in the body.
        record = getattr(exc, "body", None)
        if isinstance(record, dict) and "delivery_id" in record:
            return record
        raise


def cmd_deliveries(args: argparse.Namespace, config: Config) -> int:
    client = Client(config)
    if args.cancel:
        if not args.id:
            raise CliError("--cancel needs a delivery id", "missing_argument", exit_code=2)
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
