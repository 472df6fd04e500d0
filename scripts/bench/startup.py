#!/usr/bin/env python3
"""Daemon start-up time (exec → /api/health answers) and idle RSS, over several starts.

Run: .venv/bin/python scripts/bench/startup.py [--runs 10] [--sessions 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil


def start(home: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPTY_")}
    env["TELEPTY_HOME"] = str(home)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "telepty", "daemon", "--port", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            info = json.loads((home / "daemon.json").read_text())
            if info["pid"] == proc.pid:
                with urllib.request.urlopen(info["url"] + "/api/health", timeout=1) as r:
                    if r.status == 200:
                        return proc, info["url"], time.perf_counter() - t0
        except (OSError, ValueError, KeyError):
            pass
        if time.perf_counter() - t0 > 20:
            proc.kill()
            raise SystemExit("daemon did not start")
        time.sleep(0.005)


def register(url: str, token: str, n: int) -> None:
    for i in range(n):
        req = urllib.request.Request(
            url + "/api/sessions/register", method="POST",
            data=json.dumps({"session_id": f"s{i}", "command": "claude", "pid": os.getpid()}).encode(),
            headers={"Content-Type": "application/json", "x-telepty-token": token})
        urllib.request.urlopen(req, timeout=5).read()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--sessions", type=int, default=0, help="sessions registered before measuring RSS")
    args = ap.parse_args()
    times, rss = [], []
    for _ in range(args.runs):
        home = Path(tempfile.mkdtemp(prefix="telepty-startup-"))
        proc, url, took = start(home)
        try:
            register(url, (home / "token").read_text().strip(), args.sessions)
            time.sleep(1.0)  # let it settle into idle before reading RSS (measurement, not sync)
            times.append(took)
            rss.append(psutil.Process(proc.pid).memory_info().rss / 2**20)
        finally:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(home, ignore_errors=True)
    print(f"daemon start-up and idle RSS, {args.runs} runs, {args.sessions} sessions registered\n")
    print("| metric                         |    p50 |    min |    max |")
    print("|--------------------------------|--------|--------|--------|")
    print(f"| start-up to /api/health (ms)   | {statistics.median(times) * 1000:6.0f} | "
          f"{min(times) * 1000:6.0f} | {max(times) * 1000:6.0f} |")
    print(f"| idle RSS (MiB)                 | {statistics.median(rss):6.1f} | {min(rss):6.1f} | "
          f"{max(rss):6.1f} |")


if __name__ == "__main__":
    main()
