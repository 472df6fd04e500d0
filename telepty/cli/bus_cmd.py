"""``telepty bus publish`` and ``telepty bus tail``.

``tail`` is a follower in the durable-log sense: it remembers the last seq it printed
and, when the daemon goes away (a restart, a crash, an overflow disconnect), reconnects
with backoff and asks for everything after that seq. Nothing is missed and nothing is
printed twice, across any number of restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import sys
from typing import Any

from telepty.bus.envelope import DAEMON_KINDS, ENVELOPE_FIELDS, KIND_RE
from telepty.cli.client import EXIT_INTERRUPTED, EXIT_USAGE, Client, CliError, NoDaemon
from telepty.cli.options import add_json, session_arg
from telepty.cli.output import emit_json
from telepty.config import Config

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
SUMMARY_CHARS = 120


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


# -- tail -------------------------------------------------------------------------------

# A heartbeat per live session every 10 s would drown everything else: shown only when asked.
HIDDEN_BY_DEFAULT = frozenset({"session_health"})


def parse_kinds(raw: str | None) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip() for k in (raw or "").split(",") if k.strip()))
    bad = [k for k in kinds if not KIND_RE.match(k)]
    if bad:
        raise CliError(f"--kinds has invalid kind names: {', '.join(bad)}", "invalid_argument",
                       exit_code=EXIT_USAGE)
    return kinds


def check_kinds(client: Client, kinds: tuple[str, ...]) -> None:
    """Refuse kinds nobody emits: a typo would otherwise wait silently forever.

    Known are the kinds the daemon emits and any kind already in its log (what
    publishers use). A kind no one has published yet is taken with ``--new-kinds``.
    """
    unknown = []
    for kind in kinds:
        if kind in DAEMON_KINDS:
            continue
        page = client.request("GET", "/api/bus/events", query={"since": 0, "kinds": kind, "limit": 1})
        if not (isinstance(page, dict) and page.get("events")):
            unknown.append(kind)
    if not unknown:
        return
    guesses = [m for k in unknown for m in difflib.get_close_matches(k, sorted(DAEMON_KINDS), n=1)]
    did_you_mean = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
    raise CliError(
        f"--kinds: no event of kind {', '.join(unknown)} was ever published here, and the daemon "
        f"emits no such kind{did_you_mean}", "unknown_kind", exit_code=EXIT_USAGE,
        hint=f"the daemon emits {', '.join(sorted(DAEMON_KINDS))}; to follow a kind nobody has "
        "published yet, add --new-kinds",
    )


def format_event(event: dict[str, Any]) -> str:
    rest = {k: v for k, v in event.items() if k not in ENVELOPE_FIELDS and k != "seq"}
    summary = json.dumps(rest, ensure_ascii=False, separators=(",", ":")) if rest else ""
    if len(summary) > SUMMARY_CHARS:
        summary = summary[: SUMMARY_CHARS - 1] + "…"
    return (f"{event.get('seq', '-'):>6}  {event.get('ts', '-')}  {event.get('kind', '?'):<20} "
            f"{event.get('target') or '-':<16} {summary}").rstrip()


def _note(text: str) -> None:
    print(f"telepty: {text}", file=sys.stderr, flush=True)


class Tail:
    """The follow loop; ``cursor`` is the last seq seen (None: live from now).

    Every (re)connection goes to the daemon of this CLI's home, found again through
    ``daemon.json`` (a restarted daemon may listen on another port) and checked by its
    home id: never to whatever else listens meanwhile.
    """

    def __init__(self, client: Client, *, since: int | None, kinds: tuple[str, ...],
                 count: int | None, as_json: bool, hidden: frozenset[str] = frozenset()) -> None:
        self.client = client
        self.cursor = since
        self.kinds = kinds
        self.hidden = hidden
        self.remaining = count
        self.as_json = as_json
        self.said_waiting = False

    def url(self, base: str) -> str:
        ws = "ws" + base[len("http"):] if base.startswith("http") else base
        query = []
        if self.cursor is not None:
            query.append(f"since={self.cursor}")
        if self.kinds:
            query.append("kinds=" + ",".join(self.kinds))
        return f"{ws}/api/bus" + ("?" + "&".join(query) if query else "")

    async def _locate(self) -> str:
        """This home's daemon, found and verified afresh (off the event loop: urllib)."""
        self.client.forget()
        return await asyncio.to_thread(lambda: self.client.url)

    async def run(self) -> int:
        import aiohttp  # only tail needs it; the other commands stay quick to start

        backoff = BACKOFF_FIRST_S
        lost = False
        connected_once = False
        last_problem = ""
        async with aiohttp.ClientSession() as http:
            while True:
                problem = ""
                try:
                    base = await self._locate()
                    headers = {"x-telepty-token": self.client.token or ""}
                    async with http.ws_connect(self.url(base), headers=headers, heartbeat=30.0,
                                               max_msg_size=0) as ws:
                        if lost:
                            after = f" after seq {self.cursor}" if self.cursor is not None else ""
                            _note(f"reconnected to {base}; resuming{after}")
                        lost = False
                        connected_once = True
                        async for msg in ws:
                            if msg.type is not aiohttp.WSMsgType.TEXT:
                                break
                            if self._frame(json.loads(msg.data)):
                                backoff = BACKOFF_FIRST_S  # a healthy connection resets the backoff
                            if self.remaining is not None and self.remaining <= 0:
                                return 0
                except NoDaemon as exc:
                    if not connected_once:
                        raise  # never reached this home's daemon: say so and stop (exit 3)
                    problem = exc.line() if exc.code == "wrong_daemon" else ""
                except aiohttp.WSServerHandshakeError as exc:
                    if exc.status in (400, 401, 403, 404):
                        raise CliError(f"the daemon refused the bus connection: HTTP {exc.status} "
                                       f"{exc.message}", "bus_refused") from None
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                    pass
                if not lost:
                    after = f" after seq {self.cursor}" if self.cursor is not None else ""
                    _note(f"bus connection lost; waiting for this home's daemon ({self.client.config.home}) "
                          f"to come back (will resume{after})")
                    lost = True
                if problem and problem != last_problem:
                    _note(f"not following it: {problem}")
                last_problem = problem
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _frame(self, frame: Any) -> bool:
        """Handle one frame; True when it shows the connection is doing its job."""
        if not isinstance(frame, dict):
            return False
        kind = frame.get("kind")
        if kind == "bus.live":
            last = frame.get("last_seq")
            if self.cursor is None and isinstance(last, int):
                self.cursor = last  # resume from here if the daemon goes away before any event
            if not self.said_waiting:
                self.said_waiting = True
                which = f"events of kind {', '.join(self.kinds)}" if self.kinds else "events"
                hidden = (f" ({', '.join(sorted(self.hidden))} hidden: --kinds names it to see it)"
                          if self.hidden else "")
                _note(f"following the bus; waiting for {which}{hidden}; Ctrl-C stops")
            return True
        if kind == "bus.gap":
            _note(str(frame.get("detail")))
            return True
        if kind == "bus.error":
            _note(f"bus: {frame.get('error')}: {frame.get('detail')}")
            return False
        seq = frame.get("seq")
        if not isinstance(seq, int) or (self.cursor is not None and seq <= self.cursor):
            return False
        self.cursor = seq
        if kind in self.hidden:
            return True
        line = json.dumps(frame, ensure_ascii=False) if self.as_json else format_event(frame)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if self.remaining is not None:
            self.remaining -= 1
        return True


def cmd_tail(args: argparse.Namespace, config: Config) -> int:
    if args.since is not None and args.since < 0:
        raise CliError("--since must be a seq >= 0", "invalid_argument", exit_code=EXIT_USAGE)
    if args.count is not None and args.count < 1:
        raise CliError("--count must be at least 1", "invalid_argument", exit_code=EXIT_USAGE)
    kinds = parse_kinds(args.kinds)
    client = Client(config)
    if not args.new_kinds:
        check_kinds(client, kinds)  # also finds this home's daemon, or fails (exit 3)
    hidden = frozenset() if kinds else HIDDEN_BY_DEFAULT
    tail = Tail(client, since=args.since, kinds=kinds, count=args.count, as_json=args.json, hidden=hidden)
    try:
        return asyncio.run(tail.run())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
