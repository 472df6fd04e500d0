#!/usr/bin/env python3
"""How much latency does ``telepty wrap`` add between a program and the person's screen?

The same child runs in a bare PTY and under ``telepty wrap`` in a PTY this script
drives (playing the terminal). Two measurements, each over ``--samples`` markers:

- output: the child prints ``M<i>:<CLOCK_MONOTONIC ns>`` lines; latency is the time
  from the child's write to this script reading the line from its terminal;
- keystroke echo: this script types ``K<i>`` into ``cat`` and times the echo — the
  round trip a person feels on every key (through the wrapper twice when wrapped).

Wrapped runs are measured with no daemon (mirroring off: the link only retries) and
with a daemon (every chunk also mirrored over the WebSocket). The wrapper's RSS is
read at the end of each wrapped run.

    .venv/bin/python scripts/bench/wrap_latency.py [--samples 300]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from ptyprocess import PtyProcess

CHILD = r"""
import os, random, sys, time
n = int(sys.argv[1])
time.sleep(float(sys.argv[2]))
for i in range(n):
    os.write(1, b"M%d:%d\n" % (i, time.monotonic_ns()))
    time.sleep(random.uniform(0.003, 0.008))
"""
WARMUP = 20


@dataclass
class Result:
    name: str
    samples_ms: list[float]
    rss_mib: float | None = None

    def row(self) -> list[str]:
        s = sorted(self.samples_ms)

        def pct(p: float) -> float:
            return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]

        rss = f"{self.rss_mib:.1f}" if self.rss_mib is not None else "-"
        return [self.name, str(len(s)), f"{pct(50):.3f}", f"{pct(95):.3f}", f"{pct(99):.3f}",
                f"{max(s):.3f}", f"{statistics.fmean(s):.3f}", rss]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrap_argv(*cmd: str) -> list[str]:
    return [sys.executable, "-m", "telepty", "wrap", "--", *cmd]


def spawn(argv: list[str], env: dict[str, str]) -> PtyProcess:
    return PtyProcess.spawn(argv, env=env, dimensions=(40, 120))


def read_lines(proc: PtyProcess, want: int, deadline_s: float) -> Iterator[tuple[int, bytes]]:
    """(arrival ns, line) for each complete line from the terminal."""
    buf = b""
    seen = 0
    end = time.monotonic() + deadline_s
    while seen < want and time.monotonic() < end:
        r, _, _ = select.select([proc.fd], [], [], 0.5)
        if not r:
            continue
        try:
            data = os.read(proc.fd, 65536)
        except OSError:
            return
        now = time.monotonic_ns()
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            seen += 1
            yield now, line.strip(b"\r")


def measure_output(name: str, argv_prefix: list[str], env: dict[str, str], samples: int) -> Result:
    total = samples + WARMUP
    proc = spawn([*argv_prefix, sys.executable, "-c", CHILD, str(total), "1.0"], env)
    wrapper = psutil.Process(proc.pid) if argv_prefix else None
    lat: list[float] = []
    for arrived, line in read_lines(proc, total, 60):
        if not line.startswith(b"M") or b":" not in line:
            continue
        idx, _, stamp = line[1:].partition(b":")
        if int(idx) >= WARMUP:
            lat.append((arrived - int(stamp)) / 1e6)
    rss = wrapper.memory_info().rss / 2**20 if wrapper is not None and wrapper.is_running() else None
    finish(proc)
    return Result(name, lat, rss)


def measure_echo(name: str, argv_prefix: list[str], env: dict[str, str], samples: int) -> Result:
    proc = spawn([*argv_prefix, "cat"], env)
    wrapper = psutil.Process(proc.pid) if argv_prefix else None
    time.sleep(1.0)  # let the wrapper reach raw mode before the first key (a benchmark, not a test)
    drain(proc)
    lat: list[float] = []
    for i in range(samples + WARMUP):
        marker = b"K%d" % i
        sent = time.monotonic_ns()
        os.write(proc.fd, marker + b"\r")
        buf = b""
        end = time.monotonic() + 5
        while marker not in buf and time.monotonic() < end:
            r, _, _ = select.select([proc.fd], [], [], 0.5)
            if r:
                buf += os.read(proc.fd, 65536)
        got = time.monotonic_ns()
        if i >= WARMUP and marker in buf:
            lat.append((got - sent) / 1e6)
        time.sleep(0.002)
        drain(proc)
    rss = wrapper.memory_info().rss / 2**20 if wrapper is not None and wrapper.is_running() else None
    finish(proc)
    return Result(name, lat, rss)


def drain(proc: PtyProcess) -> None:
    while select.select([proc.fd], [], [], 0.01)[0]:
        try:
            if not os.read(proc.fd, 65536):
                return
        except OSError:
            return


def finish(proc: PtyProcess) -> None:
    if proc.isalive():
        proc.kill(signal.SIGTERM)
    drain(proc)
    try:
        proc.wait()
    except Exception:
        pass
    proc.close(force=True)


@contextmanager
def daemon(home: Path, env: dict[str, str]) -> Iterator[None]:
    log = open(home / "daemon.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "telepty", "daemon", "--port", "0"], env=env,
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                if json.loads((home / "daemon.json").read_text()).get("pid") == proc.pid:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        else:
            raise SystemExit("daemon did not start")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=300)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="telepty-bench-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TELEPTY_", "TMUX"))}
    env = {**base, "TELEPTY_HOME": str(tmp), "TELEPTY_PORT": str(closed_port()), "TERM": "xterm-256color"}
    results: list[Result] = []
    try:
        results.append(measure_output("output, bare pty", [], env, args.samples))
        results.append(measure_output("output, wrap (no daemon)", wrap_argv(), env, args.samples))
        with daemon(tmp, env):
            results.append(measure_output("output, wrap (daemon, mirroring)", wrap_argv(), env,
                                          args.samples))
            results.append(measure_echo("key echo, wrap cat (daemon)", wrap_argv(), env, args.samples))
        results.append(measure_echo("key echo, bare pty cat", [], env, args.samples))
        results.append(measure_echo("key echo, wrap cat (no daemon)", wrap_argv(), env, args.samples))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    headers = ["scenario", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "mean ms", "wrapper RSS MiB"]
    rows = [headers, *(r.row() for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    for j, row in enumerate(rows):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                         strict=True))))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
