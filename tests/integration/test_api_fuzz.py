"""Fuzz the HTTP API of a real daemon: thousands of random requests, zero 5xx, still healthy.

Random methods × the known route templates (with random ids) and unknown routes; random
JSON, wrong types, garbage, bad UTF-8, huge bodies and wrong content types; with, without
and with a wrong token. Fixed seed, so a failure replays.
"""

from __future__ import annotations

import http.client
import json
import random
import string
from collections import Counter
from urllib.parse import quote

from tests.helpers import DaemonProcess

SEED = 20261123
REQUESTS = 4000
ROUTES = [
    "/api/health", "/api/meta", "/api/sessions", "/api/sessions/register", "/api/sessions/clean",
    "/api/sessions/{id}", "/api/sessions/{id}/rename", "/api/sessions/{id}/inject", "/api/sessions/{id}/keys",
    "/api/sessions/{id}/explain", "/api/sessions/{id}/screen", "/api/sessions/multicast/inject",
    "/api/sessions/broadcast/inject", "/api/deliveries", "/api/deliveries/{id}", "/api/injects",
    "/api/identity", "/api/reply", "/api/bus/publish", "/api/bus/events", "/api/handoffs",
    "/api/handoffs/{id}", "/api/handoffs/{id}/claim", "/api/handoffs/{id}/complete", "/api/threads",
    "/api/threads/{id}", "/api/threads/{id}/close", "/metrics", "/api/nope", "/{id}",
    "/api/sessions/{id}/x/y",
]
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


def _path(rng: random.Random) -> str:
    tpl = rng.choice(ROUTES)
    path = tpl.replace("{id}", _q(_rand_str(rng) or "x") if rng.random() < 0.9 else "%ZZ%ff")
    if rng.random() < 0.3:
        path += "?" + "&".join(f"{quote(rng.choice(FIELDS))}={_q(_rand_str(rng))}"
                               for _ in range(rng.randint(1, 3)))
    return path


def test_api_fuzz_no_5xx(daemon: DaemonProcess) -> None:
    rng = random.Random(SEED)
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    token = daemon.token
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    for i in range(REQUESTS):
        m = rng.random()  # mostly the methods the routes take, so requests reach the handlers
        method = "POST" if m < 0.45 else "GET" if m < 0.8 else rng.choice(METHODS)
        path, body = _path(rng), _body(rng)
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
    print(f"\nfuzz: {REQUESTS} requests, statuses {dict(sorted(statuses.items()))}")
    assert not failures, failures[:20]
    assert daemon.proc is not None and daemon.proc.poll() is None, "daemon died"
    assert daemon.request("GET", "/api/health")[0] == 200
    assert "Error handling request" not in daemon.log_path.read_text()
