"""Agents talking to agents: ``reply``, ``multicast``, ``broadcast``, ``injects``,
``whoami``, ``init --print-snippet`` and ``mcp``.

Run inside a wrapped or spawned session, every command here presents that session's
token (``TELEPTY_SESSION_TOKEN``, sent by :class:`~telepty.cli.client.Client`), so the
daemon knows which agent is speaking. ``-h/--help`` anywhere before ``--`` prints help
and sends nothing (argparse stops there): the Node.js telepty once broadcast
``--help`` to every session.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from telepty.cli.client import EXIT_FAILED, EXIT_PENDING, EXIT_USAGE, Client, CliError
from telepty.cli.inject_cmd import follow, post_delivery, read_prompt, report_delivery
from telepty.cli.options import add_agent, add_json, add_wait, int_between, non_blank, session_arg
from telepty.cli.output import emit_json, print_table
from telepty.cli.waiting import Progress
from telepty.config import Config

# -- init --print-snippet ------------------------------------------------------------

SNIPPET_FILES = {"claude": "CLAUDE.md", "agents": "AGENTS.md", "gemini": "GEMINI.md"}
# What an agent says to end a conversation, and must not answer. Each one is
# detected by telepty.delivery.reply_guide.termination_signal (a unit test keeps them in step).
TERMINATION_PHRASES = (
    "no further reply needed",
    "thread closed",
    "closed on our side",
    "ack received",
    "ack-only",
    "회신 불필요",
    "스레드 종료",
)
MCP_HINTS = {
    "claude": "claude mcp add telepty -- telepty mcp",
    "agents": '~/.codex/config.toml: [mcp_servers.telepty] command = "telepty", args = ["mcp"]',
    "gemini": '~/.gemini/settings.json: "mcpServers": {"telepty": {"command": "telepty", "args": ["mcp"]}}',
}


def snippet_markdown(target: str) -> str:
    """The paragraph for an agent's CLAUDE.md / AGENTS.md / GEMINI.md.

    Written to the agent, in the imperative, short: it is read on every turn. It says
    how to find out who it is, who else is there, how to answer and how to stop.
    """
    phrases = ", ".join(f'"{p}"' for p in TERMINATION_PHRASES)
    return f"""\
## telepty: messages from and to other agents

You may be running inside a telepty session: other AI agents on this machine can send
you prompts, and you can send them yours.

- **Who you are**: your session id is `$TELEPTY_SESSION_ID` (or run `telepty whoami`).
  The `telepty` commands you run prove it to the daemon by themselves through
  `$TELEPTY_SESSION_TOKEN`; never print, copy or pass on that token.
- **Reply** to a prompt another agent sent you: `telepty reply "your answer"`. It goes
  to whoever asked, in the same thread. Prompts that want an answer end with a
  `[telepty] reply expected` line.
- **Peers**: `telepty list` shows the sessions you can reach (`--json` for details).
- **Ask**: `telepty inject SESSION_ID "message" --reply-expected`; several sessions:
  `telepty multicast ID1,ID2 "message"`; every session: `telepty broadcast "message"`
  (sparingly).
- **Ending a conversation**: when no answer is needed, say so with one of {phrases}.
  Never reply to a message that contains one of them, and never acknowledge an
  acknowledgement.
"""


def snippet(target: str, fmt: str) -> str:
    text = snippet_markdown(target)
    if fmt == "markdown":
        return text
    return json.dumps({
        "target": target,
        "file": SNIPPET_FILES[target],
        "markdown": text,
        "session_env": ["TELEPTY_SESSION_ID", "TELEPTY_SESSION_TOKEN"],
        "commands": {
            "whoami": "telepty whoami",
            "reply": 'telepty reply "…"',
            "peers": "telepty list --json",
            "inject": 'telepty inject SESSION_ID "…" --reply-expected',
            "multicast": 'telepty multicast ID1,ID2 "…"',
            "broadcast": 'telepty broadcast "…"',
        },
        "termination_phrases": list(TERMINATION_PHRASES),
        "mcp": {"mcpServers": {"telepty": {"command": "telepty", "args": ["mcp"]}},
                "how": MCP_HINTS[target]},
    }, indent=2, ensure_ascii=False) + "\n"


# -- parsers -------------------------------------------------------------------------


def _delivery_options(p: argparse.ArgumentParser, *, with_from: bool = True) -> None:
    if with_from:
        session_arg(p, "--from", "who is sending (default: this session, when inside one)", dest="sender")
        session_arg(p, "--reply-to", "where replies should go (default: --from)")
    p.add_argument("--thread", dest="thread_id", metavar="ID", help="the conversation thread it belongs to")
    p.add_argument("--reply-expected", action="store_true",
                   help="ask for an answer (the prompt gets a line saying how to reply)")
    p.add_argument("--no-enter", action="store_true", help="paste without submitting")
    p.add_argument("--force", action="store_true", help="skip the quiet guard")
    p.add_argument("--raw", action="store_true",
                   help="allow control characters other than newline and tab")
    add_wait(p, "every delivery is final")
    add_json(p)


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "reply", help="answer the last prompt this session received",
        description="Deliver PROMPT (or stdin with '-') to the reply_to of the last prompt this "
        "session received that named one, from this session, in the same thread.",
    )
    p.add_argument("prompt", help="the reply, or - to read it from stdin")
    session_arg(p, "--session", "reply as this session (only outside a session: inside one, its token "
                "decides)")
    _delivery_options(p, with_from=False)
    p.set_defaults(func=cmd_reply)

    p = sub.add_parser(
        "multicast", help="deliver one prompt to several sessions",
        description="Deliver PROMPT to each of IDS (comma-separated ids or aliases): one delivery "
        "per session. Nothing is sent if any of them is unknown.",
    )
    session_arg(p, "ids", "comma-separated session ids or aliases", metavar="ID,ID…")
    p.add_argument("prompt", help="the prompt text, or - to read it from stdin")
    _delivery_options(p)
    p.set_defaults(func=cmd_multicast)

    p = sub.add_parser(
        "broadcast", help="deliver one prompt to every live session but your own",
        description="Deliver PROMPT to every session that has not exited, except the sender's own "
        "(and --exclude). Refused when that is more than TELEPTY_FANOUT_MAX sessions (default 100).",
    )
    p.add_argument("prompt", help="the prompt text, or - to read it from stdin")
    add_agent(p, "only sessions of this agent kind")
    p.add_argument("--project", help="only sessions in this project (basename of their cwd)")
    p.add_argument("--type", choices=["spawned", "wrapped", "pane"], help="only sessions of this type")
    session_arg(p, "--exclude", "comma-separated sessions to leave out", metavar="ID,ID…")
    _delivery_options(p)
    p.set_defaults(func=cmd_broadcast)

    p = sub.add_parser(
        "injects", help="the audit log of injections",
        description="Every injection the daemon accepted, newest first: when, from whom (claimed and "
        "verified), to which session, and the prompt's sha256 and length (its text only when the "
        "daemon runs with TELEPTY_AUDIT_CONTENT=1).",
    )
    p.add_argument("--since", metavar="WHEN",
                   help="from this time on: ISO-8601, epoch seconds, or ago (15m, 2h, 7d)")
    p.add_argument("--until", metavar="WHEN", help="up to this time (same forms as --since)")
    session_arg(p, "--to", "only injections into this session")
    session_arg(p, "--from", "only injections from this sender (claimed or verified)", dest="sender")
    p.add_argument("--limit", type=int_between(1, 1000), default=50, metavar="N",
                   help="at most this many rows, newest first (default: %(default)s)")
    add_json(p)
    p.set_defaults(func=cmd_injects)

    p = sub.add_parser("whoami", help="the session this shell runs in (from its session token)")
    add_json(p)
    p.set_defaults(func=cmd_whoami)

    p = sub.add_parser(
        "init", help="print the telepty paragraph for an agent's CLAUDE.md / AGENTS.md / GEMINI.md",
        description="Print what an agent needs to know to talk through telepty: its session id, how "
        "to reply, how to list peers, and the phrases that end a conversation. Nothing is written: "
        "paste it into the agent's file yourself.",
    )
    p.add_argument("--print-snippet", action="store_true",
                   help="print the snippet to stdout (what init does anyway: nothing is written anywhere)")
    p.add_argument("--target", choices=sorted(SNIPPET_FILES), default="claude",
                   help="which agent's file it is for (default: %(default)s)")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown",
                   help="markdown to paste, or json with the MCP setup too (default: %(default)s)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "mcp", help="run telepty as an MCP server over stdio (for agent CLIs)",
        description="Serve the Model Context Protocol on stdin/stdout with the tools list_sessions, "
        "inject, delivery_status, read_screen and reply, backed by the local daemon. Add it to an "
        "agent's MCP config as the command `telepty mcp`.",
    )
    p.set_defaults(func=cmd_mcp)


# -- commands ------------------------------------------------------------------------


def _body(args: argparse.Namespace, prompt: str) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt}
    for key, attr in (("from", "sender"), ("reply_to", "reply_to"), ("thread_id", "thread_id")):
        value = getattr(args, attr, None)
        if value is not None:
            body[key] = value
    for key in ("reply_expected", "no_enter", "force", "raw"):
        if getattr(args, key, False):
            body[key] = True
    return body


def _post(client: Client, path: str, body: dict[str, Any], args: argparse.Namespace, label: str) -> Any:
    """A fan-out, waited for by the daemon with --wait; a final failure's answer is an answer."""
    if args.wait:
        body = {**body, "wait": True, "timeout": args.timeout}
    headers = {"Idempotency-Key": f"cli-{uuid.uuid4()}", "x-telepty-origin": "cli"}
    progress = Progress(sys.stderr, live=sys.stderr.isatty(), enabled=args.wait and not args.json)
    try:
        with progress:
            progress.update(f"{label}: waiting until every delivery is final (up to {args.timeout:g}s)")
            return client.request("POST", path, body, headers=headers,
                                  timeout=(args.timeout + 10) if args.wait else None)
    except CliError as exc:
        if isinstance(exc.body, dict) and ("delivery_id" in exc.body or "results" in exc.body):
            return exc.body
        raise


def _ids(text: str) -> list[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise CliError("no session ids given (expected ID,ID,…)", "missing_argument", exit_code=EXIT_USAGE)
    return ids


def _fanout_result(result: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        emit_json(result)
    else:
        rows = [(r["session_id"], r.get("delivery_id") or "-", r["status"],
                 (r.get("reason") or "") + (f": {r['detail']}" if r.get("detail") else ""))
                for r in result.get("results", [])]
        print_table(rows, ["SESSION", "DELIVERY", "STATUS", "REASON"])
        for e in result.get("excluded", []):
            print(f"excluded {e['session_id']} ({e['reason']})", file=sys.stderr)
        for w in result.get("warnings", []):
            print(f"warning: {w}", file=sys.stderr)
        if result.get("spoofed"):
            print(f"warning: --from contradicts this session ({result.get('verified_sender')}); "
                  "recorded as spoofed", file=sys.stderr)
    summary = result.get("summary", {})
    if not args.json:
        counts = ", ".join(f"{summary.get(k, 0)} {k}" for k in ("delivered", "failed", "pending"))
        print(f"{len(result.get('results', []))} deliveries: {counts}")
    if summary.get("failed"):
        if not args.json:
            print(f"telepty: {result.get('detail') or 'some deliveries failed'}", file=sys.stderr)
        return EXIT_FAILED
    if args.wait and summary.get("pending"):
        if not args.json:
            print(f"telepty: stopped waiting after {args.timeout:g}s; {summary['pending']} still pending "
                  "(the daemon keeps trying; `telepty deliveries ID --cancel` cancels one)", file=sys.stderr)
        return EXIT_PENDING
    return 0


def cmd_multicast(args: argparse.Namespace, config: Config) -> int:
    ids = _ids(args.ids)
    body = _body(args, non_blank(read_prompt(args.prompt)))
    body["session_ids"] = ids
    result = _post(Client(config), "/api/sessions/multicast/inject", body, args,
                   f"delivering to {len(ids)} sessions")
    return _fanout_result(result, args)


def cmd_broadcast(args: argparse.Namespace, config: Config) -> int:
    body = _body(args, non_blank(read_prompt(args.prompt)))
    for key in ("agent", "project", "type"):
        if getattr(args, key):
            body[key] = getattr(args, key)
    if args.exclude:
        body["exclude"] = _ids(args.exclude)
    result = _post(Client(config), "/api/sessions/broadcast/inject", body, args, "broadcasting")
    return _fanout_result(result, args)


def cmd_reply(args: argparse.Namespace, config: Config) -> int:
    body = _body(args, non_blank(read_prompt(args.prompt)))
    session = args.session
    if session is None and not config.session_token:
        # Outside a token-bearing session, the id the environment names is the next best thing.
        session = config.session_id
    if session is not None:
        body["session_id"] = session
    client = Client(config)
    result = follow(client, post_delivery(client, "/api/reply", body), args)
    return report_delivery(result, args, f" → {result.get('reply_to') or result.get('target')}")


def cmd_injects(args: argparse.Namespace, config: Config) -> int:
    rows = Client(config).request("GET", "/api/injects", query={
        "since": args.since, "until": args.until, "to": args.to, "from": args.sender, "limit": args.limit,
    })
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print("no injections")
        return 0
    print_table(
        [(r["at"], r["origin"] + (f"/{r['via']}" if r.get("via") else ""), r.get("from") or "-",
          r.get("verified_sender") or "-", "SPOOFED" if r["spoofed"] else "", r["session_id"],
          r["prompt_bytes"], r["prompt_sha256"][:16])
         for r in rows],
        ["AT", "ORIGIN", "FROM", "VERIFIED", "", "TO", "BYTES", "SHA256"],
    )
    return 0


def cmd_whoami(args: argparse.Namespace, config: Config) -> int:
    if not config.session_token:
        raise CliError("not inside a telepty session (TELEPTY_SESSION_TOKEN is not set)",
                       "no_session_identity")
    me = Client(config).request("GET", "/api/identity")
    if args.json:
        emit_json(me)
    else:
        print(me["session_id"])
    return 0


def cmd_init(args: argparse.Namespace, config: Config) -> int:
    sys.stdout.write(snippet(args.target, args.format))
    return 0


def cmd_mcp(args: argparse.Namespace, config: Config) -> int:
    from telepty.cli.mcp_server import run_mcp  # the MCP SDK is heavy: only this command pays for it

    return run_mcp(config)
