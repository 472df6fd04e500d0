"""Auth from a non-loopback address, for real: a network namespace joined by a veth pair.

B listens on the host end of the pair (not loopback). Callers inside the namespace come
from the other end, so they are neither loopback nor Tailscale: without B's token they
get 401 on HTTP and on the WebSocket upgrade and nothing happens; with it they succeed.
Daemon A runs inside the namespace and relays to B with the token from its peers.json.

Needs root and ``ip netns``; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DaemonProcess, daemon_env, wait_until_sync
from tests.integration.agents import start_agent_pane

PROBE = r"""
import json, socket, sys, urllib.error, urllib.parse, urllib.request
url, token = sys.argv[1], sys.argv[2]
def call(method, path, body=None, tok=None):
    req = urllib.request.Request(url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if tok:
        req.add_header("x-telepty-token", tok)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
def ws(tok=None):
    u = urllib.parse.urlsplit(url)
    path = "/api/bus" + (f"?token={tok}" if tok else "")
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        return int(s.recv(64).split()[1])
print(json.dumps({
    "health": call("GET", "/api/health"),
    "list_no_token": call("GET", "/api/sessions"),
    "inject_no_token": call("POST", "/api/sessions/s/inject", {"prompt": "intruder", "force": True}),
    "ws_no_token": ws(),
    "list_token": call("GET", "/api/sessions", tok=token),
    "ws_token": ws(token),
}))
"""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


@pytest.fixture
def netns() -> Iterator[tuple[str, str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) to put a caller on a non-loopback address")
    n = os.getpid() % 100000
    ns, host_if, ns_if = f"tpns{n}", f"tph{n}", f"tpn{n}"
    subnet = f"10.231.{n % 250}"
    host_ip, ns_ip = f"{subnet}.1", f"{subnet}.2"
    steps = [
        ("ip", "netns", "add", ns),
        ("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if),
        ("ip", "link", "set", ns_if, "netns", ns),
        ("ip", "addr", "add", f"{host_ip}/24", "dev", host_if),
        ("ip", "link", "set", host_if, "up"),
        ("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/24", "dev", ns_if),
        ("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up"),
        ("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"),
    ]
    try:
        for step in steps:
            res = _run(*step)
            if res.returncode != 0:
                reason = f"{' '.join(step)}: {res.stderr.strip()}"
                pytest.skip(f"cannot set up a network namespace here ({reason})")
        yield ns, host_ip, ns_ip
    finally:
        _run("ip", "link", "del", host_if)
        _run("ip", "netns", "del", ns)


class NetnsDaemon(DaemonProcess):
    """A DaemonProcess started with ``ip netns exec NS`` in front."""

    ns: str = ""

    def start(self, timeout: float = 15.0) -> DaemonProcess:
        original = subprocess.Popen

        def popen(argv: list[str], *a: Any, **kw: Any) -> subprocess.Popen[bytes]:
            if self.ns and argv[:3] == [sys.executable, "-m", "telepty"]:
                argv = ["ip", "netns", "exec", self.ns, *argv]
            return original(argv, *a, **kw)

        subprocess.Popen = popen  # type: ignore[assignment,misc]
        try:
            return super().start(timeout)
        finally:
            subprocess.Popen = original  # type: ignore[misc]


def _daemon(tmp_path: Path, name: str, ns: str = "", **env: str) -> DaemonProcess:
    home = tmp_path / f"home-{name}"
    home.mkdir()
    d = NetnsDaemon(home=home, env=daemon_env(home, TELEPTY_MACHINE_ID=name, TELEPTY_TRUST_TAILSCALE="0",
                                              **env))
    d.ns = ns
    return d


def test_non_loopback_callers_need_the_token_and_the_relay_sends_it(netns, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ns, host_ip, ns_ip = netns
    b = _daemon(tmp_path, "B", TELEPTY_HOST=host_ip)
    a = _daemon(tmp_path, "A", ns, TELEPTY_HOST=ns_ip)
    try:
        b.start()
        btok = {"x-telepty-token": b.token}
        ap = start_agent_pane(session, tmp_path)
        wait_until_sync(lambda: "ready>" in ap.screen(), message="agent ready")
        status, body = b.request("POST", "/api/sessions/register", {
            "type": "pane", "session_id": "s", "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
            "command": "fake_agent"}, headers=btok)
        assert status == 201, body

        probe = _run("ip", "netns", "exec", ns, sys.executable, "-c", PROBE, b.url, b.token)
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout) == {
            "health": 200, "list_no_token": 401, "inject_no_token": 401, "ws_no_token": 401,
            "list_token": 200, "ws_token": 101,
        }
        assert b.request("GET", "/api/deliveries", headers=btok)[1] == []  # nothing happened

        a.start()
        atok = {"x-telepty-token": a.token}
        (a.home / "peers.json").write_text(json.dumps({"B": {"url": b.url, "token": b.token}}))
        # The relay never forwards what it could not authenticate: A's own caller (from
        # the host end, not loopback for A) without A's token gets 401, B sees nothing.
        status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "sneaky", "wait": True})
        assert (status, body["error"]) == (401, "unauthorized"), body
        assert b.request("GET", "/api/deliveries", headers=btok)[1] == []
        assert ap.files.submissions() == []
        (a.home / "peers.json").write_text(json.dumps({"B": {"url": b.url}}))
        status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "no token", "wait": True},
                                 headers=atok)
        assert (body["status"], body["reason"], body["attempts"]) == ("failed", "peer_unauthorized", 1)
        assert b.request("GET", "/api/deliveries", headers=btok)[1] == []
        (a.home / "peers.json").write_text(json.dumps({"B": {"url": b.url, "token": b.token}}))
        status, body = a.request("POST", "/api/sessions/s@B/inject", {"prompt": "with token", "wait": True},
                                 headers=atok)
        assert (status, body["status"], body["origin"]) == (200, "delivered", "relay"), body
        wait_until_sync(lambda: ap.files.submissions() == ["with token"], 10, message="one submission")
        assert b.token not in json.dumps(a.request("GET", "/api/peers", headers=atok)[1])
        assert b.token not in a.log_path.read_text() and b.token not in b.log_path.read_text()
    finally:
        for d in (a, b):
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
