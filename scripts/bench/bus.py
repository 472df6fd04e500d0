#!/usr/bin/env python3
"""Bus throughput, latency, CPU and memory against a real daemon, optionally side by side
with another already-running bus (``--upstream URL``, e.g. the Node.js telepty) under the
very same client and load.

Rows (each measured ``--repeat`` times; the median run is printed):
  HTTP publish, 4 clients        4 keep-alive connections in this process, one request in
                                 flight on each; events/s = accepted (2xx) / wall time
  HTTP publish, 2 proc × 2       two client processes with 2 connections each, started together
  publish → subscriber           one WebSocket subscriber; one event at a time is published over
                                 HTTP and timed from just before the request to its arrival
  fan-out to 100 subscribers     100 WebSocket subscribers; one event at a time, the next only
                                 when all 100 have it; latency = publish → arrival, every arrival
  daemon CPU per event           the daemon process's user+system CPU over a publish row / accepted
  client CPU per event           this process's CPU over a 4-client row / accepted
  daemon RSS                     resident memory after all rows, and its peak (VmHWM)

Each publish row runs with two clients (``--client``): ``asyncio``, a bare HTTP/1.1
keep-alive client on an asyncio loop, and ``lean``, the same requests from one thread
driving non-blocking sockets with ``epoll``, as wrk or any C load generator would. Both
are fair (one request in flight per connection, the answer read before the next is
sent); they differ in what the client itself costs, and on a 2-core machine the
client's CPU is CPU the daemon does not get. An HTTP library's own per-request cost
would otherwise be most of what is measured. Both targets get byte-identical requests
(a JSON event without ``message_id``: the bus assigns one). Ours logs every accepted
event durably before it answers; after the rows the bench counts what our log holds,
kills our daemon with SIGKILL, restarts it and counts again.

Loopback only; bounded counts; our daemon is started and stopped here, upstream's is not.

``--ceiling`` measures the 4-client rows against two servers that answer every POST
with a 202 and do nothing else (a bare asyncio protocol, and an aiohttp route): the
limit the HTTP layer itself sets on this machine, with the same clients.

Run:
  .venv/bin/python scripts/bench/bus.py [--n 20000] [--m 200] [--repeat 3] [--client both]
      [--upstream http://127.0.0.1:PORT [--upstream-token T] [--upstream-pid PID]]
  .venv/bin/python scripts/bench/bus.py --ceiling [--n 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import aiohttp.web
import orjson
import psutil
from benchlib import pct, start_daemon

PUBLISH_PATH = "/api/bus/publish"
FAN_KIND = "bench.fan"
LAT_KIND = "bench.lat"


# -- a bare keep-alive HTTP client -------------------------------------------------------


class KeepAlive(asyncio.Protocol):
    """One HTTP/1.1 connection, one request in flight: what a publisher does, and cheap
    enough that the daemon, not the client, is what the numbers measure."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter.set_exception(RuntimeError(f"response without Content-Length: {head[:200]!r}"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17: stop if stop > 0 else len(head)])
        total = end + 4 + length
        if len(self.buf) < total:
            return
        body = bytes(self.buf[end + 4: total])
        del self.buf[:total]
        waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def connect(url: str) -> KeepAlive:
    parts = urlsplit(url)
    _, proto = await asyncio.get_running_loop().create_connection(
        KeepAlive, parts.hostname, parts.port
    )
    return proto


def publish_request(url: str, token: str, event: dict[str, object]) -> bytes:
    parts = urlsplit(url)
    body = orjson.dumps(event)
    head = (
        f"POST {PUBLISH_PATH} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        f"Content-Type: application/json\r\nx-telepty-token: {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def publish_load(url: str, token: str, n: int, clients: int, tag: str,
                       go: Callable[[], Awaitable[None]] | None = None) -> tuple[int, float, list[float]]:
    """``n`` events over ``clients`` connections; returns (accepted, seconds, latencies)."""
    conns = [await connect(url) for _ in range(clients)]
    # Requests built before the clock starts: the client's cost stays out of the number.
    reqs = [publish_request(url, token, {"kind": "bench.http", "source": f"bench:{tag}",
                                         "payload": {"i": i}}) for i in range(n)]
    lat: list[float] = []
    accepted = 0
    it = iter(reqs)

    async def worker(conn: KeepAlive) -> None:
        nonlocal accepted
        for req in it:
            t = time.perf_counter()
            status, body = await conn.request(req)
            lat.append(time.perf_counter() - t)
            if not 200 <= status < 300:
                raise RuntimeError(f"publish refused: {status} {body[:200]!r}")
            accepted += 1

    if go is not None:
        await go()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return accepted, elapsed, lat


def lean_publish_load(url: str, token: str, n: int, clients: int, tag: str,
                      go: Callable[[], None] | None = None) -> tuple[int, float, list[float]]:
    """``publish_load`` without an event loop: one thread, blocking-free sockets and
    ``epoll``, one request in flight per connection — what wrk or any C load generator
    does. About a third of the asyncio client's CPU per request, which matters on two
    cores: every microsecond the client spends is one the daemon cannot."""
    parts = urlsplit(url)
    socks = [socket.create_connection((parts.hostname, parts.port)) for _ in range(clients)]
    reqs = [publish_request(url, token, {"kind": "bench.http", "source": f"bench:{tag}",
                                         "payload": {"i": i}}) for i in range(n)]
    poller = select.epoll()
    by_fd: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}
    started: dict[int, float] = {}
    for sock in socks:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        poller.register(sock.fileno(), select.EPOLLIN)
        by_fd[sock.fileno()] = sock
        pending[sock.fileno()] = b""
    lat: list[float] = []
    accepted = sent = 0

    def send(fd: int) -> None:
        nonlocal sent
        started[fd] = time.perf_counter()
        by_fd[fd].sendall(reqs[sent])  # a few hundred bytes: the socket buffer takes it whole
        sent += 1

    if go is not None:
        go()
    t0 = time.perf_counter()
    for fd in by_fd:
        if sent < n:
            send(fd)
    in_flight = sent
    while in_flight:
        for fd, _ in poller.poll():
            buf = pending[fd] + by_fd[fd].recv(65536)
            if not buf:
                raise ConnectionError("the server closed a publish connection")
            while (end := buf.find(b"\r\n\r\n")) >= 0:
                head = buf[:end].lower()
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
                stop = head.find(b"\r\n", at + 2)
                total = end + 4 + int(head[at + 17: stop if stop > 0 else len(head)])
                if len(buf) < total:
                    break
                if not head.startswith(b"http/1.1 2"):
                    raise RuntimeError(f"publish refused: {buf[:300]!r}")
                lat.append(time.perf_counter() - started[fd])
                accepted += 1
                in_flight -= 1
                buf = buf[total:]
                if sent < n:
                    send(fd)
                    in_flight += 1
            pending[fd] = buf
    elapsed = time.perf_counter() - t0
    poller.close()
    for sock in socks:
        sock.close()
    return accepted, elapsed, lat


async def worker_main(url: str, token: str, n: int, clients: int, tag: str, client: str) -> None:
    """A client process of the 2 × 2 rows: connects, says ready, waits for go on stdin."""
    loop = asyncio.get_running_loop()

    async def go() -> None:
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)

    if client == "lean":
        def go_now() -> None:
            print("ready", flush=True)
            sys.stdin.readline()
        accepted, elapsed, lat = lean_publish_load(url, token, n, clients, tag, go_now)
    else:
        accepted, elapsed, lat = await publish_load(url, token, n, clients, tag, go)
    print(orjson.dumps({"accepted": accepted, "elapsed": elapsed, "lat": lat}).decode(), flush=True)


async def multi_process_load(url: str, token: str, n: int, procs: int, clients: int,
                             client: str) -> tuple[int, float, list[float]]:
    """``procs`` client processes × ``clients`` connections, ``n`` events in all."""
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", url, token, str(n // procs), str(clients), f"p{i}",
            client,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for i in range(procs)
    ]
    for w in workers:
        assert w.stdout is not None
        if (await w.stdout.readline()).strip() != b"ready":
            raise RuntimeError("a client process did not start")
    t0 = time.perf_counter()
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(b"go\n")
        await w.stdin.drain()
    outs = [orjson.loads((await w.communicate())[0].splitlines()[-1]) for w in workers]
    elapsed = time.perf_counter() - t0
    return sum(o["accepted"] for o in outs), elapsed, [x for o in outs for x in o["lat"]]


# -- subscribers -------------------------------------------------------------------------


class Subscribers:
    """K WebSocket subscribers; each arrival of a timed event records publish → arrival."""

    def __init__(self, http: aiohttp.ClientSession, ws_url: str, k: int, kind: str) -> None:
        self.http, self.ws_url, self.k, self.kind = http, ws_url, k, kind
        self.socks: list[aiohttp.ClientWebSocketResponse] = []
        self.readers: list[asyncio.Task[None]] = []
        self.lat: list[float] = []
        self.arrived: dict[int, int] = {}
        self.probed: set[int] = set()  # sockets that have seen a probe (i < 0)
        self.changed = asyncio.Event()

    async def open(self) -> None:
        # ``kinds`` is ours; a bus without it sends everything, and the reader filters.
        for _ in range(self.k):
            ws = await self.http.ws_connect(f"{self.ws_url}?kinds={self.kind}", max_msg_size=0)
            self.socks.append(ws)
            self.readers.append(asyncio.create_task(self._read(ws, len(self.socks) - 1)))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, index: int) -> None:
        async for msg in ws:
            now = time.perf_counter()
            frame = orjson.loads(msg.data)
            if frame.get("kind") != self.kind:
                continue  # control frames (bus.live) and other traffic
            payload = frame["payload"]
            if payload.get("t0") is not None:
                self.lat.append(now - payload["t0"])
            i = payload["i"]
            if i < 0:
                self.probed.add(index)
            self.arrived[i] = self.arrived.get(i, 0) + 1
            self.changed.set()

    async def wait_all(self, i: int) -> None:
        async with asyncio.timeout(30):
            while self.arrived.get(i, 0) < self.k:
                self.changed.clear()
                await self.changed.wait()

    async def probe(self, conn: KeepAlive, url: str, token: str) -> int:
        """Publish probes until every socket has seen one: a socket that is still
        setting up may miss the first (and a bus may not say when it is live)."""
        sent = 0
        while len(self.probed) < self.k:
            sent += 1
            status, body = await conn.request(
                publish_request(url, token, {"kind": self.kind, "payload": {"i": -sent}}))
            if not 200 <= status < 300:
                raise RuntimeError(f"publish refused: {status} {body[:200]!r}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    while len(self.probed) < self.k:
                        self.changed.clear()
                        await self.changed.wait()
            if sent > 60:
                raise RuntimeError("subscribers never saw a probe")
        return sent

    async def close(self) -> None:
        for ws in self.socks:
            await ws.close()
        for t in self.readers:
            t.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def fan_out(http: aiohttp.ClientSession, url: str, token: str, k: int, m: int,
                  kind: str) -> tuple[list[float], int]:
    """One event at a time to ``k`` subscribers; the next once every subscriber has it.
    Returns the latencies and how many events were published in all."""
    subs = Subscribers(http, url.replace("http", "ws", 1) + "/api/bus", k, kind)
    await subs.open()
    conn = await connect(url)
    try:
        probes = await subs.probe(conn, url, token)
        for i in range(m):
            req_head = {"kind": kind, "payload": {"i": i, "t0": time.perf_counter()}}
            status, body = await conn.request(publish_request(url, token, req_head))
            if not 200 <= status < 300:
                raise RuntimeError(f"publish refused: {status} {body[:200]!r}")
            await subs.wait_all(i)
    finally:
        assert conn.transport is not None
        conn.transport.close()
        await subs.close()
    return subs.lat, probes + m


# -- one target ---------------------------------------------------------------------------


def listening_pid(url: str) -> int | None:
    port = urlsplit(url).port
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    return None


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def peak_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Load:
    """The runs of one publish row: events/s, and CPU per accepted event of the daemon
    and (for the single-process rows) of the client."""

    rates: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    lat: list[list[float]] = field(default_factory=list)


@dataclass
class Result:
    name: str
    loads: dict[str, Load] = field(default_factory=dict)  # "4 asyncio", "2×2 lean", ...
    pubsub: list[list[float]] = field(default_factory=list)
    fan: list[list[float]] = field(default_factory=list)
    accepted: int = 0
    rss: int = 0
    rss_peak: int = 0


async def one_load(url: str, token: str, n: int, shape: str, client: str) -> tuple[int, float, list[float]]:
    if shape == "2×2":
        return await multi_process_load(url, token, n, 2, 2, client)
    if client == "lean":
        return await asyncio.to_thread(lean_publish_load, url, token, n, 4, "c4")
    return await publish_load(url, token, n, 4, "c4")


async def measure(name: str, url: str, token: str, pid: int, args: argparse.Namespace) -> Result:
    proc = psutil.Process(pid)
    me = psutil.Process()
    res = Result(name)
    clients = ("asyncio", "lean") if args.client == "both" else (args.client,)
    async with aiohttp.ClientSession(headers={"x-telepty-token": token},
                                     connector=aiohttp.TCPConnector(limit=0)) as http:
        await publish_load(url, token, 500, 4, "warm")
        res.accepted += 500
        for _ in range(args.repeat):
            for shape in ("4", "2×2"):
                for client in clients:
                    load = res.loads.setdefault(f"{shape} {client}", Load())
                    c0, m0 = cpu_seconds(proc), cpu_seconds(me)
                    acc, secs, lat = await one_load(url, token, args.n, shape, client)
                    load.cpu.append((cpu_seconds(proc) - c0) / acc)
                    if shape == "4":
                        load.client_cpu.append((cpu_seconds(me) - m0) / acc)
                    load.rates.append(acc / secs)
                    load.lat.append(lat)
                    res.accepted += acc
            for runs, k, kind in ((res.pubsub, 1, LAT_KIND), (res.fan, args.subscribers, FAN_KIND)):
                lat, published = await fan_out(http, url, token, k, args.m, kind)
                runs.append(lat)
                res.accepted += published
    res.rss = proc.memory_info().rss
    res.rss_peak = peak_rss(pid)
    return res


async def count_logged(url: str, token: str) -> int:
    async with aiohttp.ClientSession(headers={"x-telepty-token": token}) as http:
        async with http.get(f"{url}/api/bus/events?limit=1") as r:
            return int((await r.json())["retained"])


# -- the HTTP layer alone (--ceiling) -------------------------------------------------------

CEILING_ANSWER = orjson.dumps({"ok": True, "seq": 1, "message_id": "bench.http-0", "kind": "bench.http",
                               "duplicate": False})


class BareAnswer(asyncio.Protocol):
    """Frames a request by its Content-Length and answers a fixed 202: asyncio and the
    sockets, nothing else."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buf = transport, bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            stop = head.find(b"\r\n", at + 2)
            total = end + 4 + int(head[at + 17: stop if stop > 0 else len(head)])
            if len(self.buf) < total:
                return
            del self.buf[:total]
            self.transport.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(CEILING_ANSWER), CEILING_ANSWER))


async def serve_ceiling(kind: str) -> None:
    """A server for ``--ceiling``: prints its port, serves until killed."""
    if kind == "bare":
        server = await asyncio.get_running_loop().create_server(BareAnswer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    else:
        async def publish(request: aiohttp.web.Request) -> aiohttp.web.Response:
            await request.read()
            return aiohttp.web.Response(body=CEILING_ANSWER, status=202, content_type="application/json")

        app = aiohttp.web.Application()
        app.router.add_post(PUBLISH_PATH, publish)
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await asyncio.Event().wait()


async def ceiling(args: argparse.Namespace) -> None:
    """The 4-client publish rows against servers that do no bus work at all: what the
    HTTP layer alone costs and allows, measured the same way as the daemon."""
    clients = ("asyncio", "lean") if args.client == "both" else (args.client,)
    rows: dict[str, dict[str, float]] = {}
    for kind in ("bare", "aiohttp"):
        server = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", kind, stdout=asyncio.subprocess.PIPE)
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(await server.stdout.readline())}"
        proc = psutil.Process(server.pid)
        try:
            await publish_load(url, "", 500, 4, "warm")
            for client in clients:
                load = Load()
                for _ in range(args.repeat):
                    c0 = cpu_seconds(proc)
                    acc, secs, _ = await one_load(url, "", args.n, "4", client)
                    load.cpu.append((cpu_seconds(proc) - c0) / acc)
                    load.rates.append(acc / secs)
                rate, cpu = statistics.median(load.rates), statistics.median(load.cpu) * 1e6
                rows.setdefault(f"events/s, 4 clients, {client} client", {})[kind] = rate
                rows.setdefault(f"server CPU µs/event, {client} client", {})[kind] = cpu
        finally:
            server.kill()
            await server.wait()
    print(f"HTTP layer alone: a 202 for every POST, no bus; {args.repeat} run(s), median shown; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"| {'measurement':40} | {'bare asyncio server':>19} | {'aiohttp route':>13} |")
    print(f"|{'-' * 42}|{'-' * 21}|{'-' * 15}|")
    for label, values in rows.items():
        print(f"| {label:40} | {fmt(values['bare']):>19} | {fmt(values['aiohttp']):>13} |")


# -- report -------------------------------------------------------------------------------


def median_run(runs: list[list[float]], p: float) -> float:
    return statistics.median(pct(r, p) for r in runs)


def row_values(r: Result) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, load in r.loads.items():
        shape, client = key.split()
        label = "4 clients" if shape == "4" else "2 processes × 2 clients"
        out[f"events/s, {label}, {client} client"] = statistics.median(load.rates)
    for key, load in r.loads.items():
        out[f"daemon CPU µs/event, {key} client"] = statistics.median(load.cpu) * 1e6
        if load.client_cpu:
            out[f"client CPU µs/event, {key} client"] = statistics.median(load.client_cpu) * 1e6
    first = r.loads.get("4 asyncio") or next(iter(r.loads.values()))
    out["publish (4 clients) p50 ms"] = median_run(first.lat, 50) * 1e3
    out.update({
        "publish → subscriber p50 ms": median_run(r.pubsub, 50) * 1e3,
        "publish → subscriber p95 ms": median_run(r.pubsub, 95) * 1e3,
        "fan-out to {k} subscribers p50 ms": median_run(r.fan, 50) * 1e3,
        "fan-out to {k} subscribers p95 ms": median_run(r.fan, 95) * 1e3,
        "daemon RSS MB (after)": r.rss / 2**20,
        "daemon RSS MB (peak)": r.rss_peak / 2**20,
    })
    return out


def print_table(ours: Result, upstream: Result | None, k: int) -> None:
    a = row_values(ours)
    b = row_values(upstream) if upstream else None
    head = f"| {'measurement':50} | {'telepty':>9} |"
    rule = f"|{'-' * 52}|{'-' * 11}|"
    if b is not None:
        head += f" {'upstream':>9} | {'ours/upstream':>13} |"
        rule += f"{'-' * 11}|{'-' * 15}|"
    print(head)
    print(rule)
    for key, value in a.items():
        label = key.replace("{k}", str(k))
        line = f"| {label:50} | {fmt(value):>9} |"
        if b is not None:
            ratio = value / b[key] if b[key] else float("nan")
            line += f" {fmt(b[key]):>9} | {ratio:13.2f} |"
        print(line)


def fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="events per publish row (default 20000)")
    ap.add_argument("--m", type=int, default=200, help="events per latency / fan-out row")
    ap.add_argument("--subscribers", type=int, default=100, help="sockets in the fan-out row")
    ap.add_argument("--repeat", type=int, default=3, help="runs of every row; the median is shown")
    ap.add_argument("--client", choices=("asyncio", "lean", "both"), default="both",
                    help="publish client(s): asyncio (an event loop, futures) and/or lean (epoll in "
                         "one thread, as a C load generator would); default both")
    ap.add_argument("--upstream", help="URL of an already-running bus to measure the same way")
    ap.add_argument("--upstream-token", default="", help="its token, if it wants one")
    ap.add_argument("--upstream-pid", type=int, help="its pid (default: whoever listens on its port)")
    ap.add_argument("--ceiling", action="store_true",
                    help="instead: the 4-client rows against a bare asyncio server and an aiohttp "
                         "route that answer 202 and do nothing else (the HTTP layer's own limit)")
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--serve", choices=("bare", "aiohttp"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        url, token, n, clients, tag, client = args.worker
        await worker_main(url, token, int(n), int(clients), tag, client)
        return
    if args.serve:
        await serve_ceiling(args.serve)
        return
    if args.ceiling:
        await ceiling(args)
        return

    load_before = os.getloadavg()
    upstream = None
    if args.upstream:
        up_pid = args.upstream_pid or listening_pid(args.upstream)
        if up_pid is None:
            raise SystemExit(f"no process listens on {args.upstream}; pass --upstream-pid")
        upstream = await measure("upstream", args.upstream.rstrip("/"), args.upstream_token, up_pid, args)

    tmp = Path(tempfile.mkdtemp(prefix="telepty-bench-bus-"))
    settings = {"TELEPTY_MACHINE_ID": "bench", "TELEPTY_BUS_SUBSCRIBER_QUEUE": "100000",
                "TELEPTY_BUS_RETENTION_COUNT": "0"}
    proc, url, token = start_daemon(tmp / "home", **settings)
    try:
        ours = await measure("telepty", url, token, proc.pid, args)
        logged = await count_logged(url, token)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc, url, token = start_daemon(tmp / "home", **settings)
        after_kill = await count_logged(url, token)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    load_after = os.getloadavg()
    print(f"bus: {args.repeat} run(s) of each row, median shown; publish rows n={args.n} events, "
          f"latency rows m={args.m} events, fan-out to {args.subscribers} subscribers")
    print("clients: bare HTTP/1.1 keep-alive, one request in flight per connection, driven by an "
          "asyncio loop or by a lean epoll loop; subscribers: aiohttp WebSockets")
    print(f"machine: {os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after (other work on the machine moves these numbers)")
    print(f"telepty durability: {ours.accepted} accepted (2xx), {logged} in the log, "
          f"{after_kill} in the log after kill -9 + restart")
    if upstream is not None:
        print(f"upstream: {upstream.accepted} accepted (2xx), no durable log to count")
    print()
    print_table(ours, upstream, args.subscribers)


if __name__ == "__main__":
    asyncio.run(main())
