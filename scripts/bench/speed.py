#!/usr/bin/env python3
"""How fast a prompt goes when the way is clear, with the production defaults.

A real daemon (quiet window 2000 ms, retry schedule 30/180/600 s, the default
profile's 300 ms settle delay) and a program in a real tmux pane that logs, with wall
times, when a paste reached it, when each line was submitted and when it stopped
printing (tests/programs/fake_agent.py). Rows:

  idle pane          request → pasted / submitted, into a pane that printed nothing for
                     longer than the quiet window (target: submitted ≤ settle + 50 ms)
  back to back       N prompts accepted at once into an idle pane: first request → last
                     submission (target: ≤ N × (settle + 50 ms))
  busy → idle        the pane prints until told to stop; one prompt waits for it: end of
                     its output → pasted (target: ≤ quiet window + 300 ms)
  daemon RSS         after all of it

Then, in the same run, the bus: ``scripts/bench/bus.py`` (events/s with 4 clients and
2 processes × 2 clients, publish → subscriber p50/p95, fan-out to 100 subscribers, CPU
per event, RSS, durability across kill -9), side by side with ``--upstream URL`` when
given (e.g. the Node.js telepty, started by hand).

Run: .venv/bin/python scripts/bench/speed.py [--idle 10] [--burst 200] [--busy 5]
         [--no-bus] [--upstream http://127.0.0.1:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from benchlib import pct, start_daemon

ROOT = Path(__file__).resolve().parents[2]
FAKE_AGENT = ROOT / "tests" / "programs" / "fake_agent.py"
SETTLE_MS = 300  # the default profile's
QUIET_MS = 2000  # the production default


class Pane:
    """The fake agent in its own tmux window, and its log."""

    def __init__(self, sock: str, tmp: Path, name: str, *, busy: bool) -> None:
        self.sock, self.name = sock, name
        self.out, self.stop = tmp / f"{name}.jsonl", tmp / f"{name}.stop"
        argv = [sys.executable, str(FAKE_AGENT), "--out", str(self.out), "--log-pastes"]
        if busy:
            argv += ["--busy-until", str(self.stop)]
        self.pane = subprocess.run(
            ["tmux", "-S", sock, "new-window", "-d", "-P", "-F", "#{pane_id}", "-n", name, shlex.join(argv)],
            check=True, capture_output=True, text=True).stdout.strip()

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        data = self.out.read_text()
        return [json.loads(line) for line in data[: data.rfind("\n") + 1].splitlines() if line]

    def events(self, name: str) -> list[float]:
        return [float(r["t"]) for r in self.records() if r.get("event") == name]

    def submitted(self) -> list[float]:
        return [float(r["t"]) for r in self.records() if "text" in r]


def tmux(sock: str, *args: str) -> None:
    subprocess.run(["tmux", "-S", sock, *args], check=False, capture_output=True)


async def until(pred: Any, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def quiet_for(http: aiohttp.ClientSession, url: str, sid: str, ms: int) -> None:
    """Until the daemon has seen the pane print nothing for ``ms``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with http.get(f"{url}/api/sessions/{sid}/explain") as resp:
            body = await resp.json()
        if resp.status == 200 and body.get("output", {}).get("quiet_for_ms", 0) >= ms:
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"{sid} never went quiet")


async def register(http: aiohttp.ClientSession, url: str, pane: Pane) -> None:
    async with http.post(f"{url}/api/sessions/register", json={
            "type": "pane", "session_id": pane.name, "tmux_pane": pane.pane, "tmux_socket": pane.sock,
            "command": "fake_agent"}) as resp:
        if resp.status != 201:
            raise SystemExit(await resp.text())


async def inject(http: aiohttp.ClientSession, url: str, sid: str, prompt: str) -> str:
    async with http.post(f"{url}/api/sessions/{sid}/inject", json={"prompt": prompt}) as resp:
        body = await resp.json()
        if resp.status != 202:
            raise SystemExit(f"inject: {resp.status} {body}")
        return str(body["delivery_id"])


async def final(http: aiohttp.ClientSession, url: str, did: str, limit_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        async with http.get(f"{url}/api/deliveries/{did}") as resp:
            body = await resp.json()
        if body["status"] in ("delivered", "failed", "cancelled"):
            return dict(body)
        await asyncio.sleep(0.02)
    raise SystemExit(f"{did} not final after {limit_s}s")


async def idle_pane(http: aiohttp.ClientSession, url: str, pane: Pane,
                    n: int) -> tuple[list[float], list[float]]:
    pasted, submitted = [], []
    for i in range(n):
        await quiet_for(http, url, pane.name, QUIET_MS + 500)
        before = len(pane.submitted())
        t0 = time.time()
        did = await inject(http, url, pane.name, f"idle prompt {i}")
        await until(lambda b=before: len(pane.submitted()) > b, 30, "the submission")
        rec = await final(http, url, did, 30)
        if rec["status"] != "delivered":
            raise SystemExit(f"not delivered: {rec}")
        pasted.append(pane.events("paste")[-1] - t0)
        submitted.append(pane.submitted()[-1] - t0)
    return pasted, submitted


async def back_to_back(http: aiohttp.ClientSession, url: str, pane: Pane, n: int) -> tuple[float, int]:
    await quiet_for(http, url, pane.name, QUIET_MS + 500)
    before = len(pane.submitted())
    t0 = time.time()
    ids = [await inject(http, url, pane.name, f"burst prompt {i}") for i in range(n)]
    await until(lambda: len(pane.submitted()) >= before + n, n * 3 + 60, "the burst")
    total = pane.submitted()[-1] - t0
    delivered = sum([(await final(http, url, d, 60))["status"] == "delivered" for d in ids])
    return total, delivered


async def busy_then_idle(http: aiohttp.ClientSession, url: str, sock: str, tmp: Path,
                         n: int) -> list[float]:
    out = []
    for i in range(n):
        pane = Pane(sock, tmp, f"busy{i}", busy=True)
        await register(http, url, pane)
        did = await inject(http, url, pane.name, "after the work")
        await asyncio.sleep(1.0)  # let it be busy for a while (part of the scenario)
        pane.stop.touch()
        await until(lambda p=pane: bool(p.events("paste")), 60, "the paste")
        rec = await final(http, url, did, 60)
        if rec["status"] != "delivered":
            raise SystemExit(f"not delivered: {rec}")
        out.append(pane.events("paste")[0] - pane.events("busy_ended")[0])
    return out


async def main() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=10, help="samples into an idle pane")
    ap.add_argument("--burst", type=int, default=200, help="prompts accepted at once")
    ap.add_argument("--busy", type=int, default=5, help="busy → idle samples")
    ap.add_argument("--no-bus", action="store_true", help="skip the bus rows")
    ap.add_argument("--upstream", help="also measure this already-running bus (scripts/bench/bus.py)")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        raise SystemExit("tmux is required")
    tmp = Path(tempfile.mkdtemp(prefix="telepty-speed-"))
    sock = str(tmp / "tmux.sock")
    tmux(sock, "new-session", "-d", "-s", "bench", "-x", "160", "-y", "40", "sleep 100000")
    proc, url, token = start_daemon(tmp / "home")  # production defaults throughout
    rows: list[tuple[str, str, str]] = []
    try:
        async with aiohttp.ClientSession(headers={"x-telepty-token": token}) as http:
            idle = Pane(sock, tmp, "idle", busy=False)
            await register(http, url, idle)
            pasted, submitted = await idle_pane(http, url, idle, args.idle)
            rows.append(("idle pane: request → pasted, p50 / p95",
                         f"{pct(pasted, 50) * 1000:.0f} / {pct(pasted, 95) * 1000:.0f} ms", ""))
            rows.append(("idle pane: request → submitted, p50 / p95",
                         f"{pct(submitted, 50) * 1000:.0f} / {pct(submitted, 95) * 1000:.0f} ms",
                         f"≤ {SETTLE_MS + 50} ms"))
            burst = Pane(sock, tmp, "burst", busy=False)
            await register(http, url, burst)
            total, delivered = await back_to_back(http, url, burst, args.burst)
            rows.append((f"{args.burst} back to back: first request → last submitted",
                         f"{total:.1f} s ({total / args.burst * 1000:.0f} ms each, {delivered} delivered)",
                         f"≤ {args.burst * (SETTLE_MS + 50) / 1000:.0f} s"))
            busy = await busy_then_idle(http, url, sock, tmp, args.busy)
            rows.append(("busy → idle: output ends → pasted, p50 / max",
                         f"{pct(busy, 50) * 1000:.0f} / {max(busy) * 1000:.0f} ms",
                         f"≤ {QUIET_MS + 300} ms"))
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
            rows.append(("daemon RSS after the run", f"{rss:.1f} MB", "< 64 MB"))
    finally:
        proc.terminate()
        proc.wait(10)
        tmux(sock, "kill-server")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"defaults: quiet {QUIET_MS} ms, retry 30/180/600 s, default profile (settle {SETTLE_MS} ms)\n")
    print(f"| {'measurement':52} | {'result':40} | {'target':10} |")
    print(f"|{'-' * 54}|{'-' * 42}|{'-' * 12}|")
    for name, value, target in rows:
        print(f"| {name:52} | {value:40} | {target:10} |")
    return args


def bus_rows(upstream: str | None) -> None:
    """The bus half of the run, by its own bench (which starts and stops its daemon)."""
    bus = [sys.executable, str(Path(__file__).with_name("bus.py"))]
    if upstream:
        bus += ["--upstream", upstream]
    print(flush=True)
    subprocess.run(bus, check=False)


if __name__ == "__main__":
    parsed = asyncio.run(main())
    if not parsed.no_bus:
        bus_rows(parsed.upstream)
