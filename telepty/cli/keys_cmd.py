"""``telepty keys`` (raw keys into a session) and ``telepty explain`` (what the daemon sees)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from telepty.cli.client import Client
from telepty.cli.inject_cmd import follow, post_delivery, report_delivery
from telepty.cli.options import add_json, add_quiet_ms, add_wait, int_between, session_arg
from telepty.cli.output import emit_json
from telepty.config import Config

TEXT_PREFIX = "text:"


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "keys",
        help="send raw keys to a session (answer a permission menu)",
        description="Send tmux key names to TARGET, unbracketed, through its delivery queue: "
        "e.g. `telepty keys claude Down Enter`. Names: Enter Escape Tab BSpace Space Up Down "
        "Left Right Home End PageUp PageDown F1-F12, single characters, with C-/M-/S- "
        "prefixes. `text:yes` types the text after the colon.",
    )
    session_arg(p, "target", "session id or alias")
    p.add_argument("keys", nargs="+", metavar="KEY", help="key names, or text:WORDS to type WORDS")
    p.add_argument("--force", action="store_true", help="skip the quiet guard")
    add_quiet_ms(p, "sending")
    add_wait(p, "the keys were sent (or failed)")
    add_json(p)
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser(
        "explain",
        help="show what the daemon sees on a session's screen and why",
        description="Print the agent kind, the profile in force, the last screen lines, and the "
        "verdict (idle / busy / blocked / composer-has-text / unknown) with the pattern that "
        "decided it, plus what is waiting in the session's queue.",
    )
    session_arg(p, "target", "session id or alias")
    p.add_argument("--lines", type=int_between(1, 1000), default=20, metavar="N",
                   help="screen lines to show (default: %(default)s)")
    add_json(p)
    p.set_defaults(func=cmd_explain)


def parse_key_args(tokens: list[str]) -> list[Any]:
    out: list[Any] = []
    for tok in tokens:
        if tok.startswith(TEXT_PREFIX):
            out.append({"text": tok[len(TEXT_PREFIX):]})
        else:
            out.append(tok)
    return out


def cmd_keys(args: argparse.Namespace, config: Config) -> int:
    body: dict[str, Any] = {"keys": parse_key_args(args.keys)}
    if args.force:
        body["force"] = True
    if args.quiet_ms is not None:
        body["quiet_ms"] = args.quiet_ms
    client = Client(config)
    accepted = post_delivery(client, f"/api/sessions/{quote(args.target, safe='@')}/keys", body)
    return report_delivery(follow(client, accepted, args), args)


def _profile_line(p: dict[str, Any]) -> str:
    rescue = " | ".join("+".join(step) for step in p.get("rescue") or []) or "none"
    screen = "reads the composer" if p.get("composer_patterns") else "no composer patterns (unverified)"
    return (f"{p['name']}: settle {p['settle_ms']} ms, submit {'+'.join(p['submit_keys'])}, "
            f"confirm {p.get('confirm_ms', '-')} ms, rescue {rescue}; {screen}")


def cmd_explain(args: argparse.Namespace, config: Config) -> int:
    client = Client(config)
    e = client.request("GET", f"/api/sessions/{args.target}/explain", query={"lines": args.lines})
    if args.json:
        emit_json(e)
        return 0
    where = e.get("pane") or e.get("source") or ""
    print(f"session    {e['session_id']} ({e['transport']}{', ' + where if where else ''}; "
          f"{e.get('session_state', '?')})")
    present = e.get("agent_present")
    status = "" if present is None else (" — running" if present else " — NOT RUNNING")
    print(f"agent      {e['agent']} (process tree: {e.get('agent_detected') or 'no agent'}, "
          f"pid {e.get('pid') or '-'}){status}")
    print(f"profile    {_profile_line(e['profile'])}")
    if e.get("pane_in_mode"):
        print("mode       the pane is in copy/view mode (left before the next delivery)")
    print(f"verdict    {e['verdict']} — {e.get('why') or ''}")
    composer = e.get("composer")
    if composer:
        text = composer.get("text") or ""
        print(f"composer   line {composer['index']}: {'empty' if composer.get('empty') else repr(text[:120])}"
              f" (pattern {composer['pattern']!r})")
    else:
        print("composer   not found on the screen")
    for d in e.get("pending") or []:
        why = f" {d['reason']}" if d.get("reason") else ""
        when = f", next try {d['next_attempt_at']}" if d.get("next_attempt_at") else ""
        print(f"waiting    {d['delivery_id']} {d['kind']} {d['status']}{why} "
              f"(attempts {d['attempts']}{when})")
    lines = e.get("lines") or []
    print(f"screen     last {len(lines)} line(s):")
    for line in lines:
        print(f"  | {line}")
    return 0
