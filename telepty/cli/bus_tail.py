"""``telepty bus tail``: follow the durable log over the daemon's WebSocket.

A follower in the durable-log sense: it remembers the last seq it printed and, when the
daemon goes away (a restart, a crash, an overflow disconnect), reconnects with backoff
and asks for everything after that seq. Nothing is missed and nothing is printed twice,
across any number of restarts. Apart from the other bus commands because only this one
runs an event loop and aiohttp.
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
from telepty.config import Config
from telepty.token_file import TOKEN_HEADER

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
SUMMARY_CHARS = 120

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
                    headers = {TOKEN_HEADER: self.client.token or ""}
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


def follow(args: argparse.Namespace, config: Config) -> int:
    """``telepty bus tail``: check its arguments, then follow until Ctrl-C or ``--count``."""
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
