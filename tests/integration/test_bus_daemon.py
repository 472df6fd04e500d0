"""The bus across real daemon restarts, and the bus CLI against a real daemon."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import urllib.request
from typing import Any

import aiohttp

from tests.helpers import DaemonProcess, wait_until, wait_until_sync
from tests.integration.bus_helpers import Frames


def publish(d: DaemonProcess, kind: str, **payload: Any) -> int:
    status, body = d.request("POST", "/api/bus/publish", {"kind": kind, "payload": payload})
    assert status == 202, body
    return int(body["seq"])


def log_seqs(d: DaemonProcess, since: int = 0) -> list[int]:
    status, body = d.request("GET", f"/api/bus/events?since={since}&limit=1000")
    assert status == 200
    return [e["seq"] for e in body["events"]]


def ws_url(d: DaemonProcess, query: str) -> str:
    return "ws" + d.url[len("http"):] + "/api/bus" + query


async def test_replay_across_a_daemon_restart_has_no_gap(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory().start()
    async with aiohttp.ClientSession() as http:
        frames = Frames(await http.ws_connect(ws_url(d, "?since=0")))
        await frames.wait_live()
        before = [publish(d, "restart.test", n=i) for i in range(3)]
        await wait_until(lambda: frames.seqs() == before, message="live events before the restart")
        d.stop()
        await wait_until(lambda: frames.closed_with is not None, message="socket closed by the stop")
        (err,) = frames.of("bus.error")
        assert (err["error"], err["resume_since"]) == ("daemon_stopping", before[-1])
        assert frames.closed_with == 1001

        d.start()  # same home, same log; a new port
        during = [publish(d, "restart.test", n=i) for i in range(3, 6)]  # before we reconnect
        again = Frames(await http.ws_connect(ws_url(d, f"?since={err['resume_since']}")))
        await again.wait_live()
        after = [publish(d, "restart.test", n=i) for i in range(6, 8)]
        await wait_until(lambda: again.seqs()[-1:] == after[-1:], message="caught up after restart")
        received = frames.seqs() + again.seqs()
        assert received == log_seqs(d)  # every event in the log, once, in order
        assert received == before + during + after == list(range(1, 9))
        assert [e["payload"]["n"] for e in frames.events + again.events] == list(range(8))
        await again.close()
    d.stop()


class Tail:
    """``telepty bus tail`` as a subprocess, its stdout lines collected by a thread."""

    def __init__(self, d: DaemonProcess, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telepty", "bus", "tail", *args], env=d.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        for stream, sink in ((self.proc.stdout, self.lines), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, sink: list[str]) -> None:
        for raw in stream:
            sink.append(raw.decode(errors="replace").rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def test_cli_tail_resumes_after_a_daemon_restart(daemon_factory, machines) -> None:  # type: ignore[no-untyped-def]
    # Another home's daemon listens where a CLI that guessed would look (TELEPTY_PORT, as
    # 3848 for a user who followed the quick start), with events the tail must never print.
    stray = machines("stray").start()
    for n in range(90, 96):
        publish(stray, "cli.test", n=n)
    stray_port = stray.url.rsplit(":", 1)[1]
    d = daemon_factory(TELEPTY_PORT=stray_port).start()  # `--port 0`: it listens elsewhere
    publish(d, "noise")  # not in --kinds: must not show
    # cli.test is published here only after the tail starts: --new-kinds takes it anyway.
    tail = Tail(d, "--since", "0", "--kinds", "cli.test", "--new-kinds", "--json")
    try:
        r = d.cli("bus", "publish", "cli.test", "--payload", '{"n": 1}')
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("published cli.test seq 2 message_id cli.test-")
        wait_until_sync(lambda: len(tail.lines) == 1, 15, message="first event printed")
        d.stop()
        wait_until_sync(lambda: any("connection lost" in e for e in tail.err), 15,
                        message="tail noticed the daemon going away")
        d.start()  # a new port: the tail finds it through the daemon's runtime file
        for n in (2, 3):
            r = d.cli("bus", "publish", "cli.test", "--payload", json.dumps({"n": n}))
            assert r.returncode == 0, r.stderr
        wait_until_sync(lambda: len(tail.lines) == 3, 20, message="events after the restart")
        events = tail.events()
        assert [e["payload"]["n"] for e in events] == [1, 2, 3]
        assert [e["seq"] for e in events] == [2, 3, 4]
        assert all(e["kind"] == e["type"] == "cli.test" for e in events)
        assert any(f"reconnected to {d.url}; resuming after seq 2" in e for e in tail.err)
        assert not any(stray.url in e for e in tail.err)  # never even tried the other home's
        assert tail.proc.poll() is None  # still following
    finally:
        tail.stop()
        d.stop()


def test_cli_tail_live_from_now_and_count(daemon: DaemonProcess) -> None:
    publish(daemon, "before")
    tail = Tail(daemon, "--count", "2")
    try:
        # It has connected once the daemon counts a subscriber.
        def subscribed() -> bool:
            with urllib.request.urlopen(daemon.url + "/metrics", timeout=5) as resp:
                return "\ntelepty_bus_subscribers 1\n" in resp.read().decode()

        wait_until_sync(subscribed, 15, message="tail subscribed")
        publish(daemon, "after.one", x=1)
        publish(daemon, "after.two")
        assert tail.proc.wait(15) == 0
        assert len(tail.lines) == 2
        assert tail.lines[0].split()[0] == "2" and "after.one" in tail.lines[0]
        assert tail.lines[0].endswith('{"payload":{"x":1}}')
        assert tail.lines[1].split()[0] == "3" and "after.two" in tail.lines[1]
    finally:
        tail.stop()


def test_cli_publish_reports_routing_and_refuses_bad_input(daemon: DaemonProcess) -> None:
    r = daemon.cli("bus", "publish", "turn_request", "--target", "nobody", "--payload", '{"prompt": "hi"}')
    assert r.returncode == 1
    assert "not routed: session_not_found" in r.stderr
    r = daemon.cli("bus", "publish", "x.y", "--payload", "-", "--message-id", "m-9", "--json",
                   input=b'{"a": [1, 2]}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["message_id"] == "m-9"
    again = daemon.cli("bus", "publish", "x.y", "--message-id", "m-9")
    assert again.returncode == 0 and "(duplicate: already in the log)" in again.stdout
    for args, code, text in [
        (("bus", "publish", "x", "--payload", "[1]"), 2, "--payload must be a JSON object"),
        (("bus", "publish", "x", "--payload", "{nope"), 2, "--payload is not valid JSON"),
        (("bus", "publish", "bad kind"), 1, "invalid_kind"),
        (("bus", "publish", "inject_written"), 1, "reserved_kind"),
        (("bus", "tail", "--kinds", "bad kind"), 2, "--kinds has invalid kind names"),
        (("bus", "tail", "--since", "-1"), 2, "--since must be"),
        (("bus",), 2, "usage: telepty bus"),
    ]:
        r = daemon.cli(*args)
        assert r.returncode == code, (args, r.stdout, r.stderr)
        assert text in r.stderr, (args, r.stderr)
    _, page = daemon.request("GET", "/api/bus/events?since=0")
    assert [e["kind"] for e in page["events"]] == ["turn_request", "delivery.failed", "x.y"]
