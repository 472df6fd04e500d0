#!/usr/bin/env python3
"""Load: N registered sessions with lifecycle events on, plus a steady injection stream.

A real daemon process (ephemeral loopback port, private TELEPTY_HOME) with
``session_health`` every --health-interval seconds, ``session.idle`` after
--idle-seconds, and the liveness loop (pids and panes, every 2 s) running. Then:

  1. idle, no sessions          baseline RSS / CPU / threads / fds
  2. register N sessions         a mix (--kinds, weights):
       spawned  POST /api/sessions/spawn running ``cat``: a PTY the daemon owns
       wrapped  in-process fake wrappers on WS /api/wrap speaking the wrapper protocol
                (telepty/sessions/wrapper_link.py): hello, a heartbeat every second,
                answering quiet/paste/write and echoing what is pasted, as a PTY would.
                Their pid is one ``sleep`` started for them: alive, so the liveness loop
                keeps them, and a one-process tree, as a wrapped agent's own would be
                small (not this bench's, which holds the daemon and its 200 PTYs).
       pane     panes of a private tmux server, each running ``cat``, registered with
                POST /api/sessions/register (liveness probes them through tmux).
  3. idle, N sessions            --idle-window seconds: health events, liveness,
                                 wrapper heartbeats only
  4. load                        --duration seconds of injections at --rate per second,
                                 open loop, round-robin over every session (all three
                                 kinds take prompts), force (no quiet guard), settle
                                 --settle-ms, each one ``wait: true``: the latency is
                                 request → final record (delivered / failed)

Measured with psutil on the daemon's pid (RSS; CPU = cpu_times delta / wall, in % of
one core; threads; fds), the bus by a live WS subscriber (events per kind per second),
and loop responsiveness by GET /api/health every 100 ms. Every process this starts (the
daemon and so its PTY children, the tmux server) is stopped on the way out, Ctrl-C and
SIGTERM included. Exits 1 when an injection did not end delivered, fewer than N
sessions were running, a session.idle repeated a period already announced (it is an
edge: once per quiet period), or the daemon died.

Run: .venv/bin/python scripts/bench/sessions.py [--sessions 500] [--duration 30] [--rate 20]
        [--kinds spawned=2,wrapped=2,pane=1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
from benchlib import pct, start_daemon

KINDS = ("spawned", "wrapped", "pane")
LIVENESS_INTERVAL_S = 2.0  # Config.liveness_interval: not settable from the environment
SAMPLE_S = 0.2
PROBE_S = 0.1
WRAPPER_HEARTBEAT_S = 1.0
REGISTER_CONCURRENCY = 16
PANES_PER_TMUX_CALL = 50
WAIT_TIMEOUT_S = 60.0
MB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[sessions bench] {msg}", file=sys.stderr, flush=True)


# -- the mix -------------------------------------------------------------------------


def parse_kinds(text: str, n: int) -> dict[str, int]:
    """``spawned=2,wrapped=2,pane=1`` → counts summing to ``n`` (largest remainder)."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise SystemExit(f"--kinds: unknown kind {name!r} (use {', '.join(KINDS)})")
        try:
            weights[name] = float(value) if value.strip() else 1.0
        except ValueError:
            raise SystemExit(f"--kinds: {part!r} is not kind=weight") from None
        if weights[name] < 0:
            raise SystemExit("--kinds: weights must not be negative")
    total = sum(weights.values())
    if total <= 0:
        raise SystemExit("--kinds: at least one kind needs a positive weight")
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    return {k: counts.get(k, 0) for k in KINDS}


def interleave(counts: dict[str, int]) -> list[tuple[str, str]]:
    """(kind, session id) in a mixed order, so registration and rotation mix the kinds."""
    queues = {k: [f"bench-{k}-{i:04d}" for i in range(c)] for k, c in counts.items()}
    total = sum(counts.values())
    out: list[tuple[str, str]] = []
    taken = dict.fromkeys(counts, 0)
    for step in range(total):
        # the kind furthest behind its share goes next
        kind = max((k for k in counts if taken[k] < counts[k]),
                   key=lambda k: counts[k] * (step + 1) / total - taken[k])
        out.append((kind, queues[kind][taken[kind]]))
        taken[kind] += 1
    return out


# -- processes this bench owns ---------------------------------------------------------


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"TMUX", "TMUX_PANE"}}


@dataclass
class Owned:
    """Everything started here, stopped by ``cleanup`` whatever happened."""

    tmp: Path
    daemon: subprocess.Popen[bytes] | None = None
    tmux_sock: Path | None = None
    tmux_pid: int | None = None
    wrapped_child: subprocess.Popen[bytes] | None = None

    def child_for_wrappers(self) -> int:
        """The pid the fake wrappers report as their child's."""
        if self.wrapped_child is None:
            self.wrapped_child = subprocess.Popen(["sleep", "86400"], stdin=subprocess.DEVNULL)
        return self.wrapped_child.pid

    def tmux(self, *args: str) -> str:
        assert self.tmux_sock is not None
        out = subprocess.run(["tmux", "-S", str(self.tmux_sock), "-f", "/dev/null", *args],
                             env=_clean_env(), capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip()

    def start_panes(self, n: int) -> list[str]:
        """A private tmux server with ``n`` panes running ``cat`` (one window each)."""
        self.tmux_sock = self.tmp / "tmux.sock"
        self.tmux("new-session", "-d", "-s", "bench", "-x", "120", "-y", "40", "cat")
        self.tmux_pid = int(self.tmux("display-message", "-p", "#{pid}"))
        left = n - 1
        while left > 0:
            batch = min(left, PANES_PER_TMUX_CALL)
            argv: list[str] = []
            for i in range(batch):
                argv += ([";"] if i else []) + ["new-window", "-d", "-t", "bench", "cat"]
            self.tmux(*argv)
            left -= batch
        panes = self.tmux("list-panes", "-s", "-t", "bench", "-F", "#{pane_id}").split()
        if len(panes) != n:
            raise RuntimeError(f"wanted {n} panes, tmux has {len(panes)}")
        return panes

    def cleanup(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(20)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(5)
        if self.tmux_sock is not None:
            with contextlib.suppress(Exception):
                self.tmux("kill-server")
            if self.tmux_pid is not None:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(self.tmux_pid).kill()
        if self.wrapped_child is not None:
            self.wrapped_child.kill()
            self.wrapped_child.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- the daemon, from outside ------------------------------------------------------------


@dataclass
class Sample:
    t: float
    rss: int
    threads: int
    fds: int


class DaemonWatch:
    """psutil on the daemon's pid: a sample every SAMPLE_S, CPU over marked windows."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.samples: list[Sample] = []

    def sample(self) -> Sample:
        with self.proc.oneshot():
            s = Sample(time.monotonic(), self.proc.memory_info().rss, self.proc.num_threads(),
                       self.proc.num_fds())
        self.samples.append(s)
        return s

    def cpu_s(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    async def run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.sample()
            await asyncio.sleep(SAMPLE_S)

    def peak(self, t0: float, t1: float) -> Sample:
        inside = [s for s in self.samples if t0 <= s.t <= t1] or self.samples[-1:]
        return max(inside, key=lambda s: s.rss)

    def children(self) -> int:
        try:
            return len(self.proc.children())
        except psutil.Error:
            return 0


class Window:
    """CPU of the daemon and of this process over one stretch of wall time."""

    def __init__(self, watch: DaemonWatch) -> None:
        self.watch = watch
        self.me = psutil.Process()
        self.t0 = time.monotonic()
        self.d0 = watch.cpu_s()
        m = self.me.cpu_times()
        self.m0 = m.user + m.system
        self.t1 = self.t0
        self.daemon_pct = self.bench_pct = 0.0

    def close(self) -> Window:
        self.t1 = time.monotonic()
        wall = max(self.t1 - self.t0, 1e-9)
        self.daemon_pct = 100 * (self.watch.cpu_s() - self.d0) / wall
        m = self.me.cpu_times()
        self.bench_pct = 100 * (m.user + m.system - self.m0) / wall
        return self

    @property
    def wall(self) -> float:
        return self.t1 - self.t0


class BusCount:
    """A live subscriber on WS /api/bus, counting events by kind with arrival times."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.idle_by_session: Counter[str] = Counter()  # session.idle events per session
        self.live = asyncio.Event()
        self.closed_early: str | None = None

    async def run(self, http: aiohttp.ClientSession, ws_url: str) -> None:
        async with http.ws_connect(ws_url + "/api/bus", max_msg_size=0) as ws:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                frame = orjson.loads(msg.data)
                kind = frame.get("kind", "?")
                if kind == "bus.live":
                    self.live.set()
                elif kind == "bus.error":
                    self.closed_early = str(frame.get("error"))
                else:
                    self.arrivals.append((time.monotonic(), kind))
                    if kind == "session.idle":
                        self.idle_by_session[str(frame.get("session_id"))] += 1
        if self.closed_early is None:
            self.closed_early = f"closed ({ws.close_code})"

    def window(self, t0: float, t1: float) -> Counter[str]:
        return Counter(k for t, k in self.arrivals if t0 <= t <= t1)


class Probe:
    """GET /api/health every PROBE_S: how long the daemon's loop takes to answer."""

    def __init__(self) -> None:
        self.lat: list[tuple[float, float]] = []
        self.errors = 0

    async def run(self, http: aiohttp.ClientSession, url: str) -> None:
        while True:
            t = time.perf_counter()
            try:
                async with http.get(url + "/api/health") as r:
                    await r.read()
                self.lat.append((time.monotonic(), time.perf_counter() - t))
            except aiohttp.ClientError:
                self.errors += 1
            await asyncio.sleep(PROBE_S)

    def window(self, t0: float, t1: float) -> list[float]:
        return [v for t, v in self.lat if t0 <= t <= t1]


# -- wrapped sessions: the wrapper's end of WS /api/wrap ------------------------------------


class FakeWrapper:
    """What ``telepty wrap`` does on its socket, minus the child: hello, heartbeats every
    second, and answers to quiet (always quiet), paste and write (echoed back as output,
    the way a PTY echoes what is typed)."""

    def __init__(self, session_id: str, cwd: str, pid: int) -> None:
        self.session_id = session_id
        self.cwd = cwd
        self.pid = pid
        self.bytes_out = 0
        self.pastes = 0
        self.last_output = time.monotonic()
        self.welcomed = asyncio.Event()
        self.error: str | None = None

    async def run(self, http: aiohttp.ClientSession, ws_url: str) -> None:
        try:
            async with http.ws_connect(ws_url + "/api/wrap", max_msg_size=0) as ws:
                await ws.send_json({
                    "type": "hello", "session_id": self.session_id, "command": "bench-agent",
                    "cwd": self.cwd, "pid": self.pid, "replace": False, "cols": 120, "rows": 40,
                })
                first = await ws.receive(timeout=30)
                reply = orjson.loads(first.data) if first.type is aiohttp.WSMsgType.TEXT else {}
                if reply.get("type") != "welcome":
                    self.error = f"not welcomed: {reply or first.type}"
                    return
                self.welcomed.set()
                beat = asyncio.create_task(self._heartbeats(ws))
                try:
                    async for msg in ws:
                        if msg.type is aiohttp.WSMsgType.TEXT:
                            await self._answer(ws, orjson.loads(msg.data))
                finally:
                    beat.cancel()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.welcomed.set()  # whoever waits learns the outcome from .error

    async def _output(self, ws: aiohttp.ClientWebSocketResponse, data: bytes) -> None:
        if data:
            await ws.send_bytes(data)
            self.bytes_out += len(data)
            self.last_output = time.monotonic()

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse, msg: dict[str, Any]) -> None:
        kind, rid = msg.get("type"), msg.get("id")
        if kind == "quiet":
            quiet_s = float(msg.get("quiet_ms", 0)) / 1000
            body: dict[str, Any] = {"ok": True, "quiet": time.monotonic() - self.last_output >= quiet_s}
        elif kind == "paste":
            self.pastes += 1
            await self._output(ws, base64.b64decode(msg.get("data", "")))
            if not msg.get("no_enter"):
                await self._output(ws, b"\r\n")
            body = {"ok": True, "bracketed": False}
        elif kind == "write":
            data = base64.b64decode(msg.get("data", ""))
            await self._output(ws, b"\r\n" if data in (b"\r", b"\n") else data)
            body = {"ok": True}
        elif rid is not None:
            body = {"ok": False, "error": "unknown_request"}
        else:
            return  # detach / renamed: nothing to answer
        await ws.send_json({"type": "result", "id": rid, **body})

    async def _heartbeats(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # spread the beats over the period, as independent wrappers would be
        await asyncio.sleep(WRAPPER_HEARTBEAT_S * (hash(self.session_id) % 1000) / 1000)
        while not ws.closed:
            await ws.send_json({
                "type": "heartbeat", "bytes_out": self.bytes_out, "bytes_mirrored": self.bytes_out,
                "bytes_in": 0, "idle_ms": int((time.monotonic() - self.last_output) * 1000),
                "bracketed_paste": False,
            })
            await asyncio.sleep(WRAPPER_HEARTBEAT_S)


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Injection:
    kind: str
    latency: float
    outcome: str  # delivered | failed (reason) | pending | error (...)


@dataclass
class Report:
    args: dict[str, Any]
    mix: dict[str, int]
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    registration: dict[str, Any] = field(default_factory=dict)
    injections: list[Injection] = field(default_factory=list)
    list_sessions_ms: list[float] = field(default_factory=list)
    idle_events: dict[str, int] = field(default_factory=dict)  # session.idle: total, sessions, repeats
    loadavg: list[float] = field(default_factory=list)  # 1-minute load: at start, end of load
    problems: list[str] = field(default_factory=list)


async def _gather_limited(n: int, jobs: list[Callable[[], Any]]) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(job: Callable[[], Any]) -> Any:
        async with sem:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs))


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(url, json=body) as r:
        return r.status, await r.json(content_type=None)


async def _sessions(http: aiohttp.ClientSession, url: str) -> tuple[float, list[dict[str, Any]]]:
    t = time.perf_counter()
    async with http.get(url + "/api/sessions") as r:
        body = await r.json()
    return time.perf_counter() - t, body


def _running(sessions: list[dict[str, Any]]) -> int:
    return sum(1 for s in sessions if s.get("state") == "running")


def _last_seq(body: dict[str, Any]) -> int:
    return int(body.get("last_seq") or 0)


async def _bus_last_seq(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/api/bus/events", params={"since": str(2**62), "limit": "1"}) as r:
        return _last_seq(await r.json())


def _phase(watch: DaemonWatch, win: Window, bus: BusCount, probe: Probe, seq: tuple[int, int],
           **extra: Any) -> dict[str, Any]:
    peak = watch.peak(win.t0, win.t1)
    end = watch.sample()
    kinds = bus.window(win.t0, win.t1)
    lag = probe.window(win.t0, win.t1)
    return {
        "wall_s": round(win.wall, 2),
        "cpu_pct": round(win.daemon_pct, 1),
        "bench_cpu_pct": round(win.bench_pct, 1),
        "rss_peak_mb": round(peak.rss / MB, 1),
        "rss_end_mb": round(end.rss / MB, 1),
        "threads": end.threads,
        "fds": end.fds,
        "bus_events_per_s": round((seq[1] - seq[0]) / max(win.wall, 1e-9), 1),
        "bus_seen_by_kind": dict(kinds.most_common()),
        "health_p50_ms": round(pct(lag, 50) * 1000, 2) if lag else None,
        "health_p99_ms": round(pct(lag, 99) * 1000, 2) if lag else None,
        "health_max_ms": round(max(lag) * 1000, 2) if lag else None,
        **extra,
    }


async def measure(args: argparse.Namespace, owned: Owned, mix: dict[str, int], panes: list[str],
                  url: str, token: str) -> Report:
    assert owned.daemon is not None
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    report = Report(args=vars(args), mix=mix, loadavg=[os.getloadavg()[0]])
    ws_url = "ws" + url[len("http"):]
    watch = DaemonWatch(owned.daemon.pid)
    bus, probe = BusCount(), Probe()
    background: list[asyncio.Task[Any]] = []
    wrappers: list[FakeWrapper] = []
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=WAIT_TIMEOUT_S + 30)
    async with aiohttp.ClientSession(headers={"x-telepty-token": token}, connector=conn,
                                     timeout=timeout) as http:
        try:
            background += [asyncio.create_task(watch.run()), asyncio.create_task(probe.run(http, url)),
                           asyncio.create_task(bus.run(http, ws_url))]
            await asyncio.wait_for(bus.live.wait(), 10)

            # 1. idle, nothing registered
            await asyncio.sleep(1.0)  # past start-up work (idle-history restore, first queries)
            rss_empty = watch.sample().rss
            s0, win = await _bus_last_seq(http, url), Window(watch)
            await asyncio.sleep(args.idle_window)
            win.close()
            report.phases["idle, 0 sessions"] = _phase(
                watch, win, bus, probe, (s0, await _bus_last_seq(http, url)))
            report.phases["idle, 0 sessions"]["rss_start_mb"] = round(rss_empty / MB, 1)

            # 2. register
            order = interleave(mix)
            pane_of = dict(zip((sid for k, sid in order if k == "pane"), panes, strict=True))
            cwd = str(owned.tmp)
            log(f"registering {len(order)} sessions: {mix}")

            async def register(kind: str, sid: str) -> str | None:
                if kind == "spawned":
                    st, body = await _post(http, url + "/api/sessions/spawn",
                                           {"session_id": sid, "command": "cat", "cwd": cwd})
                elif kind == "pane":
                    st, body = await _post(http, url + "/api/sessions/register", {
                        "type": "pane", "session_id": sid, "tmux_pane": pane_of[sid],
                        "tmux_socket": str(owned.tmux_sock), "command": "cat", "cwd": cwd})
                else:
                    w = FakeWrapper(sid, cwd, owned.child_for_wrappers())
                    wrappers.append(w)
                    background.append(asyncio.create_task(w.run(http, ws_url)))
                    await w.welcomed.wait()
                    return None if w.error is None else f"{sid}: {w.error}"
                return None if st == 201 else f"{sid}: {st} {body}"

            win = Window(watch)
            errors = await _gather_limited(
                REGISTER_CONCURRENCY, [lambda k=k, s=s: register(k, s) for k, s in order])
            win.close()
            errors = [e for e in errors if e]
            report.problems += [f"registration failed: {e}" for e in errors[:10]]
            took, listed = await _sessions(http, url)
            report.list_sessions_ms.append(took * 1000)
            rss_registered = watch.sample().rss
            report.registration = {
                "wall_s": round(win.wall, 2), "per_s": round(len(order) / max(win.wall, 1e-9), 1),
                "errors": len(errors), "listed": len(listed), "running": _running(listed),
                "rss_mb": round(rss_registered / MB, 1), "daemon_children": watch.children(),
            }
            log(f"registered: {report.registration}")

            # 3. idle with N sessions: health, idle watch, liveness, wrapper heartbeats
            s0, win = await _bus_last_seq(http, url), Window(watch)
            await asyncio.sleep(args.idle_window)
            win.close()
            for _ in range(4):
                took, listed = await _sessions(http, url)
                report.list_sessions_ms.append(took * 1000)
            rss_n = watch.sample().rss
            report.phases[f"idle, {len(order)} sessions"] = _phase(
                watch, win, bus, probe, (s0, await _bus_last_seq(http, url)),
                running=_running(listed),
                per_session_kb=round((rss_n - rss_empty) / max(len(order), 1) / 1024, 1))

            # 4. load: open-loop injections, round-robin over every session
            log(f"load: {args.rate}/s for {args.duration}s")
            kind_of = dict((sid, k) for k, sid in order)
            targets = itertools.cycle([sid for _, sid in order])
            prompt_pad = "x" * max(0, args.size - 24)

            async def inject(i: int, sid: str) -> None:
                t = time.perf_counter()
                try:
                    st, body = await _post(http, f"{url}/api/sessions/{sid}/inject", {
                        "prompt": f"bench {i:06d} {prompt_pad}", "force": True, "wait": True,
                        "timeout": WAIT_TIMEOUT_S})
                    status = body.get("status") if isinstance(body, dict) else None
                    if st == 200 and status == "delivered":
                        outcome = "delivered"
                    elif status in ("failed", "cancelled"):
                        outcome = f"{status} ({body.get('reason')})"
                    elif st == 202:
                        outcome = f"pending ({status})"
                    else:
                        outcome = f"error ({st} {body.get('error') if isinstance(body, dict) else body})"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = f"error ({type(exc).__name__})"
                report.injections.append(Injection(kind_of[sid], time.perf_counter() - t, outcome))

            s0, win = await _bus_last_seq(http, url), Window(watch)
            n_inject = round(args.rate * args.duration)
            inflight: list[asyncio.Task[None]] = []
            start = time.monotonic()
            for i in range(n_inject):
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                inflight.append(asyncio.create_task(inject(i, next(targets))))
            await asyncio.sleep(max(0.0, start + args.duration - time.monotonic()))
            win.close()
            report.loadavg.append(os.getloadavg()[0])
            load = report.phases["load"] = _phase(
                watch, win, bus, probe, (s0, await _bus_last_seq(http, url)),
                inflight_at_end=sum(1 for t in inflight if not t.done()))
            await asyncio.gather(*inflight)
            load["drain_s"] = round(time.monotonic() - win.t1, 2)
            load["rss_after_drain_mb"] = round(watch.sample().rss / MB, 1)
            took, listed = await _sessions(http, url)
            report.list_sessions_ms.append(took * 1000)
            load["running"] = _running(listed)

            # session.idle is an edge: once per quiet period. A session gets a new period
            # only from new activity, and here the only activity is our injections.
            injected = Counter(sid for sid in itertools.islice(
                itertools.cycle([sid for _, sid in order]), n_inject))
            repeats = sum(max(0, n - injected[sid] - 1) for sid, n in bus.idle_by_session.items())
            report.idle_events = {"total": sum(bus.idle_by_session.values()),
                                  "sessions": len(bus.idle_by_session), "repeats": repeats}
            if repeats:
                report.problems.append(f"{repeats} session.idle events repeated a period already announced")

            # whatever went wrong, in one list
            for when, running in (("registering", report.registration["running"]),
                                  ("the load", load["running"])):
                if running < len(order):
                    report.problems.append(f"only {running} of {len(order)} sessions running after {when}")
            bad = Counter(j.outcome for j in report.injections if j.outcome != "delivered")
            report.problems += [f"{n} injections {o}" for o, n in bad.items()]
            report.problems += [f"wrapper {w.session_id}: {w.error}" for w in wrappers if w.error][:10]
            if bus.closed_early is not None:
                report.problems.append(f"bus subscriber cut off: {bus.closed_early}")
            if probe.errors:
                report.problems.append(f"{probe.errors} /api/health probes failed")
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
    if owned.daemon.poll() is not None:
        report.problems.append(f"the daemon exited with {owned.daemon.returncode}")
    return report


# -- output ------------------------------------------------------------------------------------


def to_json(r: Report) -> dict[str, Any]:
    delivered = [j for j in r.injections if j.outcome == "delivered"]
    lat = [j.latency for j in delivered]

    def stats(xs: list[float]) -> dict[str, float | None]:
        return {f"p{p}_ms": round(pct(xs, p) * 1000, 2) if xs else None for p in (50, 95, 99)}

    per_kind = {k: {"sent": sum(1 for j in r.injections if j.kind == k),
                    "delivered": sum(1 for j in delivered if j.kind == k),
                    **stats([j.latency for j in delivered if j.kind == k])}
                for k in KINDS if r.mix.get(k)}
    return {
        "ok": not r.problems,
        "problems": r.problems,
        "config": {k: r.args[k] for k in ("sessions", "duration", "rate", "kinds", "health_interval",
                                          "idle_seconds", "idle_window", "settle_ms", "size")}
                  | {"liveness_interval": LIVENESS_INTERVAL_S},
        "mix": r.mix,
        "machine": {"cpus": os.cpu_count(), "loadavg_1m": r.loadavg},
        "workdir": r.args["workdir"],
        "registration": r.registration,
        "phases": r.phases,
        "idle_events": r.idle_events,
        "list_sessions_ms": {"p50": round(pct(r.list_sessions_ms, 50), 2),
                             "max": round(max(r.list_sessions_ms), 2)} if r.list_sessions_ms else {},
        "injections": {
            "sent": len(r.injections), "delivered": len(delivered),
            "failed": len(r.injections) - len(delivered),
            "outcomes": dict(Counter(j.outcome for j in r.injections).most_common()),
            **stats(lat), "by_kind": per_kind,
        },
    }


def render(j: dict[str, Any]) -> str:
    c, mix, reg, inj = j["config"], j["mix"], j["registration"], j["injections"]
    phases = j["phases"]
    p0, pn, pl = (phases[k] for k in phases)
    n = c["sessions"]
    mix_text = ", ".join(f"{mix[k]} {label}" for k, label in (
        ("spawned", "spawned PTYs running cat"),
        ("wrapped", "wrapped (in-process fake wrappers, 1 s heartbeats, a sleep as their child)"),
        ("pane", "tmux panes running cat (one private server)")) if mix.get(k))
    rounds = pn["bus_seen_by_kind"].get("session_health", 0) / max(pn["running"], 1)
    load_avg = " → ".join(f"{x:.2f}" for x in j["machine"]["loadavg_1m"])
    rows: list[tuple[str, str]] = [
        ("sessions", f"{n}: {mix_text}"),
        ("machine", f"{j['machine']['cpus']} CPUs; 1-min load average {load_avg} (start → end of load)"),
        ("lifecycle settings", f"session_health every {c['health_interval']:g} s, idle after "
                               f"{c['idle_seconds']:g} s, liveness every {c['liveness_interval']:g} s"),
        ("registration", f"{reg['wall_s']:.1f} s ({reg['per_s']:.0f}/s), {reg['errors']} errors; "
                         f"GET /api/sessions lists {reg['listed']}, {reg['running']} running"),
        ("daemon RSS: idle, 0 sessions", f"{p0['rss_start_mb']:.1f} MB"),
        (f"daemon RSS: after registering {n}", f"{reg['rss_mb']:.1f} MB"),
        (f"daemon RSS: idle with {n}", f"{pn['rss_end_mb']:.1f} MB ({pn['per_session_kb']:.0f} KB/session)"),
        ("daemon RSS: load peak / end / drained",
         f"{pl['rss_peak_mb']:.1f} / {pl['rss_end_mb']:.1f} / {pl['rss_after_drain_mb']:.1f} MB"),
        ("daemon CPU: idle, 0 sessions", f"{p0['cpu_pct']:.1f} % of one core"),
        (f"daemon CPU: idle with {n}", f"{pn['cpu_pct']:.1f} %  (health, idle watch, liveness, heartbeats)"),
        (f"daemon CPU: load, {c['rate']:g} inj/s", f"{pl['cpu_pct']:.1f} %"),
        ("daemon threads / fds (0 / N / load)",
         f"{p0['threads']} / {pn['threads']} / {pl['threads']} threads; "
         f"{p0['fds']} / {pn['fds']} / {pl['fds']} fds; {reg['daemon_children']} child processes"),
        (f"bus events/s: idle with {n}",
         f"{pn['bus_events_per_s']:.0f}  (session_health: {rounds:.1f} rounds of {pn['running']} in "
         f"{pn['wall_s']:.1f} s, one every {c['health_interval']:g} s expected)"),
        ("bus events/s: load", f"{pl['bus_events_per_s']:.0f}  ("
         + ", ".join(f"{k} {v / max(pl['wall_s'], 1e-9):.0f}" for k, v in
                     list(pl["bus_seen_by_kind"].items())[:4]) + ")"),
        ("session.idle events (whole run)",
         f"{j['idle_events']['total']} for {j['idle_events']['sessions']} sessions; "
         f"{j['idle_events']['repeats']} repeated an announced period"),
        ("injections sent / delivered / failed",
         f"{inj['sent']} / {inj['delivered']} / {inj['failed']}"),
        ("inject → delivered p50 / p95 / p99", _ms3(inj)),
        *((f"  {k}", f"{_ms3(v)}  (n={v['delivered']})") for k, v in inj["by_kind"].items()),
        ("GET /api/health p50 / p99 / max: idle N",
         f"{pn['health_p50_ms']} / {pn['health_p99_ms']} / {pn['health_max_ms']} ms"),
        ("GET /api/health p50 / p99 / max: load",
         f"{pl['health_p50_ms']} / {pl['health_p99_ms']} / {pl['health_max_ms']} ms"),
        (f"GET /api/sessions ({n}) p50 / max", f"{j['list_sessions_ms'].get('p50', 0):.1f} / "
                                              f"{j['list_sessions_ms'].get('max', 0):.1f} ms"),
        ("bench process CPU (idle N / load)", f"{pn['bench_cpu_pct']:.0f} / {pl['bench_cpu_pct']:.0f} %"),
    ]
    width = max(len(a) for a, _ in rows)
    lines = [
        f"{n} sessions, {c['duration']:g} s of injections at {c['rate']:g}/s "
        f"(force, settle {c['settle_ms']} ms, {c['size']}-byte prompts), idle windows "
        f"{c['idle_window']:g} s; CPU in % of one core\n",
        f"| {'measurement':{width}} | value |",
        f"|{'-' * (width + 2)}|-------|",
        *(f"| {a:{width}} | {b} |" for a, b in rows),
    ]
    if j["problems"]:
        lines += ["", "PROBLEMS:", *(f"  - {p}" for p in j["problems"])]
    return "\n".join(lines)


def _ms3(d: dict[str, Any]) -> str:
    vals = [d.get(f"p{p}_ms") for p in (50, 95, 99)]
    return " / ".join("-" if v is None else f"{v:.1f}" for v in vals) + " ms"


# -- entry ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of injections")
    ap.add_argument("--rate", type=float, default=20.0, help="injections per second")
    ap.add_argument("--kinds", default="spawned=2,wrapped=2,pane=1",
                    help="session mix as kind=weight (spawned, wrapped, pane)")
    ap.add_argument("--health-interval", type=float, default=1.0,
                    help="TELEPTY_HEALTH_INTERVAL (production default 10)")
    ap.add_argument("--idle-seconds", type=float, default=5.0,
                    help="TELEPTY_IDLE_SECONDS (production default 60)")
    ap.add_argument("--idle-window", type=float, default=10.0,
                    help="seconds measured idle, before and after registering")
    ap.add_argument("--settle-ms", type=int, default=20, help="TELEPTY_SETTLE_MS")
    ap.add_argument("--size", type=int, default=64, help="prompt size in bytes")
    ap.add_argument("--json", action="store_true", help="JSON report on stdout (the table goes to stderr)")
    args = ap.parse_args()
    if args.sessions < 1 or args.rate <= 0 or args.duration <= 0:
        raise SystemExit("--sessions, --rate and --duration must be positive")
    mix = parse_kinds(args.kinds, args.sessions)
    if mix["pane"] and not shutil.which("tmux"):
        raise SystemExit("tmux is required for pane sessions (or leave them out of --kinds)")

    owned = Owned(Path(tempfile.mkdtemp(prefix="telepty-bench-sessions-")))
    args.workdir = str(owned.tmp)  # reported, so a caller can check nothing is left in it
    try:
        panes = owned.start_panes(mix["pane"]) if mix["pane"] else []
        owned.daemon, url, token = start_daemon(
            owned.tmp / "home", TELEPTY_MACHINE_ID="bench",
            TELEPTY_HEALTH_INTERVAL=str(args.health_interval),
            TELEPTY_IDLE_SECONDS=str(args.idle_seconds), TELEPTY_SETTLE_MS=str(args.settle_ms),
            TELEPTY_BUS_SUBSCRIBER_QUEUE="100000")
        report = asyncio.run(measure(args, owned, mix, panes, url, token))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; stopping everything started")
        return 130
    except Exception:
        # Ctrl-C in a terminal reaches the daemon too (same process group), and it may
        # be gone before we see the interrupt: say so instead of a connection traceback.
        if owned.daemon is None or owned.daemon.poll() is None:
            raise
        log(f"the daemon stopped mid-run (exit {owned.daemon.returncode}); stopping everything started")
        return 130 if owned.daemon.returncode in (0, -signal.SIGINT) else 1
    finally:
        owned.cleanup()
    out = to_json(report)
    table = render(out)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(out, indent=2))
    else:
        print(table)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
