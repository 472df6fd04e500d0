#!/usr/bin/env python3
"""Three daemons, four publishers: the bus on NATS JetStream against the SQLite bus, in
the same run, under the same load.

Each bus gets three real daemons (own homes, machine ids m1..m3) and four publisher
processes (publisher k sends to daemon k mod 3, one keep-alive connection, one request
in flight), each publishing ``--n`` events. Every daemon has one WebSocket subscriber.

Rows:
  accepted events/s        2xx answers of all four publishers / wall time from "go" to the last
  publish → subscriber     under that load: from just before a publisher sent an event to its
  under load p50/p95       arrival at a subscriber (every arrival). On SQLite each daemon's bus is
                           its own, so only the daemon it was published to sees it; on NATS every
                           daemon's subscriber sees every machine's events
  one at a time p50/p95    ``--m`` events published one by one (the next once it arrived), on m1,
                           timed to m1's subscriber (same daemon) and on NATS also to m3's (another
                           daemon: the fleet-wide path)

Also checked, not timed: every accepted event arrived (at its own daemon on SQLite, at all three
on NATS). nats-server runs on a loopback port with a token and its store in a temp directory.
Clocks: CLOCK_MONOTONIC (``time.monotonic``), the same in every process of the machine.

Run:
  .venv/bin/python scripts/bench/fleet.py [--n 3000] [--m 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import psutil
from benchlib import ROOT, pct, start_daemon
from bus import KeepAlive, connect, publish_request

sys.path.insert(0, str(ROOT))
from tests.integration.nats_helpers import NatsServer  # a real nats-server, as the tests start it

KIND = "bench.fleet"
PUBLISHERS = 4
DAEMONS = 3


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    url: str
    token: str


class Subscriber:
    """One bus socket; remembers when each bench event arrived."""

    def __init__(self, http: aiohttp.ClientSession, d: Daemon) -> None:
        self.http, self.d = http, d
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.live = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        ws = await self.http.ws_connect(self.d.url.replace("http", "ws", 1) + f"/api/bus?kinds={KIND}",
                                        headers={"x-telepty-token": self.d.token}, max_msg_size=0)
        self.task = asyncio.create_task(self._read(ws))
        async with asyncio.timeout(10):
            await self.live.wait()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            now = time.monotonic()
            frame = orjson.loads(msg.data)
            if frame.get("kind") == "bus.live":
                self.live.set()
            elif frame.get("kind") == KIND:
                self.arrived.setdefault(frame["message_id"], now)
                self.changed.set()

    async def wait_for(self, ids: set[str], timeout: float) -> bool:  # noqa: ASYNC109
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not ids <= self.arrived.keys():
                    self.changed.clear()
                    await self.changed.wait()
        return ids <= self.arrived.keys()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


# -- a publisher process ------------------------------------------------------------------


async def publisher_main(url: str, token: str, n: int, tag: str) -> None:
    """Connects, says ready, waits for go; prints {accepted, sent: {message_id: t}}."""
    conn = await connect(url)
    reqs = [(f"{tag}-{i}", publish_request(url, token, {"kind": KIND, "message_id": f"{tag}-{i}",
                                                          "payload": {"i": i}})) for i in range(n)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    sent: dict[str, float] = {}
    accepted = 0
    for mid, req in reqs:
        sent[mid] = time.monotonic()
        status, _ = await conn.request(req)
        if 200 <= status < 300:
            accepted += 1
        else:
            del sent[mid]
    print(orjson.dumps({"accepted": accepted, "sent": sent}).decode(), flush=True)


@dataclass
class Result:
    accepted: int = 0
    seconds: float = 0.0
    under_load: list[float] = field(default_factory=list)
    missing: int = 0
    same: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the load, by process


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        t = psutil.Process(pid).cpu_times()
        out[name] = t.user + t.system
    return out


async def measure(daemons: list[Daemon], n: int, m: int, fleet_wide: bool,
                  server_pid: int | None = None) -> Result:
    out = Result()
    pids = {f"m{i + 1}": d.proc.pid for i, d in enumerate(daemons)}
    if server_pid is not None:
        pids["nats-server"] = server_pid
    async with aiohttp.ClientSession() as http:
        subs = [Subscriber(http, d) for d in daemons]
        for s in subs:
            await s.open()
        pubs = []
        for k in range(PUBLISHERS):
            d = daemons[k % len(daemons)]
            pubs.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--publisher", d.url, d.token, str(n), f"p{k}",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
        for p in pubs:
            assert p.stdout is not None
            if (await p.stdout.readline()).strip() != b"ready":
                raise RuntimeError("a publisher did not start")
        cpu0 = cpu_seconds(pids)
        t0 = time.monotonic()
        for p in pubs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            await p.stdin.drain()
        results = [orjson.loads((await p.communicate())[0].splitlines()[-1]) for p in pubs]
        out.seconds = time.monotonic() - t0
        out.cpu = {k: v - cpu0[k] for k, v in cpu_seconds(pids).items()}
        out.accepted = sum(r["accepted"] for r in results)
        for k, r in enumerate(results):
            sent: dict[str, float] = r["sent"]
            seen_by = subs if fleet_wide else [subs[k % len(daemons)]]
            for s in seen_by:
                await s.wait_for(set(sent), 60)
                for mid, t in sent.items():
                    if mid in s.arrived:
                        out.under_load.append(s.arrived[mid] - t)
                    else:
                        out.missing += 1
        # One at a time, on m1; to m1's subscriber, and (NATS) to m3's.
        conn: KeepAlive = await connect(daemons[0].url)
        try:
            for i in range(m):
                mid = f"one-{i}"
                t = time.monotonic()
                status, body = await conn.request(publish_request(
                    daemons[0].url, daemons[0].token, {"kind": KIND, "message_id": mid, "payload": {"i": i}}))
                if not 200 <= status < 300:
                    raise RuntimeError(f"publish refused: {status} {body[:200]!r}")
                watched = [subs[0], subs[-1]] if fleet_wide else [subs[0]]
                for s in watched:
                    if not await s.wait_for({mid}, 10):
                        raise RuntimeError(f"{mid} never arrived")
                out.same.append(subs[0].arrived[mid] - t)
                if fleet_wide:
                    out.other.append(subs[-1].arrived[mid] - t)
        finally:
            assert conn.transport is not None
            conn.transport.close()
            for s in subs:
                await s.close()
    return out


def start_fleet(root: Path, **settings: str) -> list[Daemon]:
    out = []
    for i in range(1, DAEMONS + 1):
        proc, url, token = start_daemon(root / f"m{i}", TELEPTY_MACHINE_ID=f"m{i}",
                                        TELEPTY_BUS_SUBSCRIBER_QUEUE="1000000", **settings)
        out.append(Daemon(proc, url, token))
    return out


def stop_fleet(daemons: list[Daemon]) -> None:
    for d in daemons:
        d.proc.terminate()
    for d in daemons:
        try:
            d.proc.wait(15)
        except subprocess.TimeoutExpired:
            d.proc.kill()


def ms(v: float) -> str:
    return f"{v * 1000:.1f}"


def row(name: str, r: Result) -> str:
    other = f"{ms(pct(r.other, 50))} / {ms(pct(r.other, 95))}" if r.other else "n/a (own bus only)"
    return (f"| {name} | {r.accepted / r.seconds:,.0f} | {ms(pct(r.under_load, 50))} / "
            f"{ms(pct(r.under_load, 95))} | {ms(pct(r.same, 50))} / {ms(pct(r.same, 95))} | {other} |")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="events per publisher (default 3000)")
    ap.add_argument("--m", type=int, default=200, help="events in the one-at-a-time rows (default 200)")
    ap.add_argument("--publisher", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publisher:
        url, token, n, tag = args.publisher
        await publisher_main(url, token, int(n), tag)
        return

    tmp = Path(tempfile.mkdtemp(prefix="telepty-bench-fleet-"))
    results: dict[str, Result] = {}
    load_before = os.getloadavg()
    try:
        daemons = start_fleet(tmp / "sqlite")
        try:
            results["SQLite (3 separate buses)"] = await measure(daemons, args.n, args.m, fleet_wide=False)
        finally:
            stop_fleet(daemons)
        server = NatsServer(tmp / "nats").start()
        try:
            daemons = start_fleet(tmp / "nats-homes", **server.env())
            try:
                assert server.proc is not None
                results["NATS JetStream (1 fleet stream)"] = await measure(
                    daemons, args.n, args.m, fleet_wide=True, server_pid=server.proc.pid)
            finally:
                stop_fleet(daemons)
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    print(f"fleet: {DAEMONS} daemons, {PUBLISHERS} publisher processes × {args.n} events "
          f"(one keep-alive connection, one request in flight each), one subscriber per daemon; "
          f"one-at-a-time rows m={args.m}")
    print(f"machine: {os.cpu_count()} CPUs (daemons, publishers, subscribers and nats-server share "
          f"them); load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    for name, r in results.items():
        cpu = ", ".join(f"{k} {v * 1e6 / max(r.accepted, 1):.0f}" for k, v in r.cpu.items())
        print(f"{name}: {r.accepted} accepted of {PUBLISHERS * args.n}; arrivals missing: {r.missing}; "
              f"CPU µs per accepted event: {cpu}")
    print()
    print("| bus | accepted events/s | publish → subscriber under load, p50 / p95 ms | "
          "one at a time, same daemon, p50 / p95 ms | one at a time, another daemon, p50 / p95 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(row(name, r))


if __name__ == "__main__":
    asyncio.run(main())
