"""Fuzz the HTTP API of a real daemon: thousands of random requests, zero 5xx, still healthy.

Random methods × the route templates the daemon's own OpenAPI document lists (with random
path parameters; see telepty.api.openapi) and unknown routes; random JSON, wrong types,
garbage, bad UTF-8, huge bodies and wrong content types; with, without and with a wrong
token. Fixed seed, so a failure replays. tests/integration/test_api_schemathesis.py
fuzzes the same document with schema-aware data.

Never the operation that starts programs (``x-spawns-process``), and the daemon's tmux is
a stub that fails every command, so a random pane registration cannot reach a real tmux
server.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from telepty.api.openapi import OPENAPI_PATH
from tests.helpers import DaemonProcess, stub_tmux_env

SEED = 20261123
REQUESTS = 4000
# Routes no document lists: the router's 404 (and 405) must be JSON too.
UNKNOWN_ROUTES = ["/api/nope", "/{id}", "/api/sessions/{id}/x/y"]
METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]
FIELDS = ["prompt", "text", "from", "reply_to", "thread_id", "session_id", "type", "kind", "target",
          "targets", "payload", "message_id", "version", "ts", "new_id", "keys", "quiet_ms", "timeout",
          "older_than", "dry_run", "exited", "raw", "force", "no_enter", "tmux_pane", "tmux_socket", "status",
          "to", "handoff_id", "topic", "participants", "limit", "since", "after_seq", "agent"]
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/json; charset=latin-1", None]


def _rand_str(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.3:
        alphabet = string.ascii_letters + string.digits + "._-"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 70)))
    if pick < 0.5:
        return "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 20)))
    if pick < 0.6:
        return rng.choice(["", " ", "%1", "%%", "..", "../etc/passwd", "\x00", "\ud800", "turn_request",
                           "bus.ack", "inject_written", "2026-01-01T00:00:00Z", "-1", "1e309"])
    return rng.choice(["s1", "multicast", "dlv_x", "a" * 65, "é", "*", "all"])


def _rand_json(rng: random.Random, depth: int = 0) -> object:
    r = rng.random()
    if depth > 2 or r < 0.5:
        return rng.choice([None, True, False, rng.randint(-2**70, 2**70), rng.uniform(-1e9, 1e9), 0, -1,
                           _rand_str(rng), 10**400 if rng.random() < 0.05 else 1])
    if r < 0.7:
        return [_rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = rng.sample(FIELDS, rng.randint(0, 5)) + [_rand_str(rng) for _ in range(rng.randint(0, 2))]
    return {k: _rand_json(rng, depth + 1) for k in keys}


def _body(rng: random.Random) -> bytes | None:
    r = rng.random()
    if r < 0.15:
        return None
    if r < 0.6:
        obj = _rand_json(rng) if rng.random() < 0.3 else {k: _rand_json(rng, 1)
                                                           for k in rng.sample(FIELDS, rng.randint(1, 6))}
        try:
            return json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        except ValueError:
            return b"{}"
    if r < 0.75:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 200)))  # garbage, bad UTF-8
    if r < 0.85:
        return b'{"prompt": "\xff\xfe bad utf-8 \xc3\x28"}'
    if r < 0.95:
        return json.dumps({"prompt": "x" * rng.randint(1, 2_000_000)}).encode()  # up to a 2 MB prompt
    if r < 0.99:
        return b"[" * rng.randint(1, 100_000) + b"]" * rng.randint(0, 10)  # deep nesting
    return b"{" + b" " * (5 * 1024 * 1024) + b"}"  # over the 4 MiB body cap: 413


def _q(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def documented_routes(daemon: DaemonProcess) -> dict[str, list[str]]:
    """Path template → methods, from the document the daemon serves, minus spawning."""
    status, doc = daemon.request("GET", OPENAPI_PATH)
    assert status == 200, doc
    routes: dict[str, list[str]] = {}
    for path, item in doc["paths"].items():
        ops = {m.upper(): op for m, op in item.items() if m.upper() in METHODS}
        if any(op.get("x-spawns-process") for op in ops.values()):
            continue  # never start programs from random data
        routes[path] = sorted(ops)
    return routes


def _path(rng: random.Random, template: str) -> str:
    def param(_m: re.Match[str]) -> str:
        return _q(_rand_str(rng) or "x") if rng.random() < 0.9 else "%ZZ%ff"

    path = re.sub(r"\{[^}]+\}", param, template)
    if rng.random() < 0.3:
        path += "?" + "&".join(f"{quote(rng.choice(FIELDS))}={_q(_rand_str(rng))}"
                               for _ in range(rng.randint(1, 3)))
    return path


@pytest.fixture
def fuzz_daemon(daemon_factory: Any, tmp_path: Path) -> DaemonProcess:
    """A daemon whose tmux (and PATH) is a stub: no real tmux server can be reached."""
    return daemon_factory(**stub_tmux_env(tmp_path)).start()


def test_api_fuzz_no_5xx(fuzz_daemon: DaemonProcess) -> None:
    daemon = fuzz_daemon
    routes = documented_routes(daemon)
    assert len(routes) >= 30 and "/api/sessions/{id}/inject" in routes and "/api/sessions/spawn" not in routes
    templates = [*routes, *UNKNOWN_ROUTES]
    rng = random.Random(SEED)
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    token = daemon.token
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    for i in range(REQUESTS):
        template = rng.choice(templates)
        # Mostly a method the route takes, so requests reach the handlers.
        documented = routes.get(template, ["GET", "POST"])
        method = rng.choice(documented) if rng.random() < 0.8 else rng.choice(METHODS)
        path, body = _path(rng, template), _body(rng)
        headers = {}
        r = rng.random()
        if r < 0.85:
            headers["x-telepty-token"] = token
        elif r < 0.9:
            headers["x-telepty-token"] = "wrong"
        ctype = rng.choice(CONTENT_TYPES)
        if ctype and body is not None:
            headers["Content-Type"] = ctype
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=15)
        except (ConnectionError, http.client.HTTPException) as exc:
            # The server may cut an over-cap upload short after answering 413.
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=15)
            if body is None or len(body) <= 4 * 1024 * 1024:
                failures.append(f"#{i} {method} {path}: {exc!r}")
            status = 0
        statuses[status] += 1
        if status >= 500:
            failures.append(f"#{i} {method} {path} body={body[:80] if body else body!r}: {status}")
    conn.close()
    print(f"\nfuzz: {REQUESTS} requests over {len(routes)} documented routes, "
          f"statuses {dict(sorted(statuses.items()))}")
    assert not failures, failures[:20]
    assert daemon.proc is not None and daemon.proc.poll() is None, "daemon died"
    assert daemon.request("GET", "/api/health")[0] == 200
    assert "Error handling request" not in daemon.log_path.read_text()
