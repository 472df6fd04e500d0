#!/usr/bin/env python3
"""Bus throughput and fan-out latency against a real daemon process.

Rows:
  HTTP publish, sequential     one client, one POST /api/bus/publish at a time
  HTTP publish, C concurrent   C requests in flight on one connection pool
  WS publish, pipelined        one socket (receive=0), every event sent, then every ack read
  fan-out to K subscribers     K live sockets; one event at a time is published over a socket
                               and the time from send to arrival is measured at every
                               subscriber (p50/p95 over all arrivals)

Every event is appended to SQLite before anyone sees it, so these numbers include the
durable log. Loopback only; bounded counts; the daemon is started and stopped here.

Run: .venv/bin/python scripts/bench/bus.py [--n 2000] [--m 200] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from benchlib import pct, start_daemon


async def http_sequential(http: aiohttp.ClientSession, url: str, n: int) -> tuple[float, list[float]]:
    lat = []
    t_start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        async with http.post(f"{url}/api/bus/publish", json={"kind": "bench.http", "payload": {"i": i}}) as r:
            if r.status != 202:
                raise RuntimeError(await r.text())
            await r.read()
        lat.append(time.perf_counter() - t)
    return n / (time.perf_counter() - t_start), lat


async def http_concurrent(
    http: aiohttp.ClientSession, url: str, n: int, concurrency: int
) -> tuple[float, list[float]]:
    lat: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t = time.perf_counter()
            async with http.post(f"{url}/api/bus/publish",
                                 json={"kind": "bench.http", "payload": {"i": i}}) as r:
                if r.status != 202:
                    raise RuntimeError(await r.text())
                await r.read()
            lat.append(time.perf_counter() - t)

    t_start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t_start), lat


async def ws_pipelined(http: aiohttp.ClientSession, ws_url: str, n: int) -> tuple[float, list[float]]:
    async with http.ws_connect(ws_url + "?receive=0", max_msg_size=0) as ws:
        sent_at: dict[str, float] = {}
        lat: list[float] = []

        async def read_acks() -> None:
            got = 0
            async for msg in ws:
                frame = orjson.loads(msg.data)
                if frame.get("kind") != "bus.ack":
                    raise RuntimeError(frame)
                lat.append(time.perf_counter() - sent_at[frame["message_id"]])
                got += 1
                if got == n:
                    return

        reader = asyncio.create_task(read_acks())
        t_start = time.perf_counter()
        for i in range(n):
            mid = f"bench-ws-{i}"
            sent_at[mid] = time.perf_counter()
            frame = {"kind": "bench.ws", "message_id": mid, "payload": {"i": i}}
            await ws.send_str(orjson.dumps(frame).decode())
        await reader
        return n / (time.perf_counter() - t_start), lat


async def fan_out(
    http: aiohttp.ClientSession, ws_url: str, subscribers: int, m: int
) -> tuple[float, list[float]]:
    kind = f"bench.fan{subscribers}"
    lat: list[float] = []
    arrivals = 0
    done = asyncio.Event()
    socks = [await http.ws_connect(f"{ws_url}?kinds={kind}", max_msg_size=0) for _ in range(subscribers)]

    async def read(ws: aiohttp.ClientWebSocketResponse, ready: asyncio.Event) -> None:
        nonlocal arrivals
        async for msg in ws:
            now = time.perf_counter()
            frame = orjson.loads(msg.data)
            if frame.get("kind") == "bus.live":
                ready.set()
                continue
            lat.append(now - frame["payload"]["t0"])
            arrivals += 1
            if arrivals == m * subscribers:
                done.set()

    readies = [asyncio.Event() for _ in socks]
    readers = [asyncio.create_task(read(ws, r)) for ws, r in zip(socks, readies, strict=True)]
    for r in readies:
        await r.wait()
    async with http.ws_connect(ws_url + "?receive=0") as pub:
        t_start = time.perf_counter()
        for i in range(m):
            frame = {"kind": kind, "payload": {"i": i, "t0": time.perf_counter()}}
            await pub.send_str(orjson.dumps(frame).decode())
            await pub.receive()  # the ack: one event in flight at a time
        await asyncio.wait_for(done.wait(), 60)
        elapsed = time.perf_counter() - t_start
    for ws in socks:
        await ws.close()
    for t in readers:
        t.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return m * subscribers / elapsed, lat


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="events per publish row")
    ap.add_argument("--m", type=int, default=200, help="events per fan-out row")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="telepty-bench-bus-"))
    proc, url, token = start_daemon(tmp / "home", TELEPTY_MACHINE_ID="bench",
                                     TELEPTY_BUS_SUBSCRIBER_QUEUE="100000")
    ws_url = "ws" + url[len("http"):] + "/api/bus"
    rows: list[tuple[str, float, list[float]]] = []
    try:
        # No connection limit: the fan-out rows hold 50 sockets open at once; HTTP
        # concurrency is bounded by the number of workers instead.
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers={"x-telepty-token": token}, connector=conn) as http:
            await http_sequential(http, url, 50)  # warm up
            rows.append(("HTTP publish, sequential", *await http_sequential(http, url, args.n)))
            rows.append((f"HTTP publish, {args.concurrency} concurrent",
                         *await http_concurrent(http, url, args.n, args.concurrency)))
            rows.append(("WS publish, 1 socket pipelined", *await ws_pipelined(http, ws_url, args.n)))
            for k in (1, 10, 50):
                rate, lat = await fan_out(http, ws_url, k, args.m)
                rows.append((f"fan-out to {k} subscriber{'s' if k > 1 else ''}", rate, lat))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"bus: publish n={args.n}, fan-out m={args.m} events per row; durable log (SQLite WAL) included")
    print("publish rows: latency = request → receipt/ack; fan-out rows: send → arrival at each subscriber,")
    print("events/s = deliveries to subscribers per second, one event in flight at a time;")
    print("the pipelined row sends all n frames at once, so its latency is mostly queueing\n")
    print(f"| {'measurement':32} | {'events/s':>9} | {'p50 ms':>7} | {'p95 ms':>7} |")
    print(f"|{'-' * 34}|{'-' * 11}|{'-' * 9}|{'-' * 9}|")
    for name, rate, lat in rows:
        print(f"| {name:32} | {rate:9.0f} | {pct(lat, 50) * 1000:7.2f} | {pct(lat, 95) * 1000:7.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
