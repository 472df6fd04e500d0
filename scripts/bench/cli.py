#!/usr/bin/env python3
"""What a CLI command costs, and what checking the daemon's home adds to it.

Every ``telepty`` command finds its home's daemon and checks the home id it reports in
``GET /api/meta`` before its own request. This prints the wall time of whole commands
(interpreter start included) and, in-process, of one request with and without that
check, so the check's share is visible.

Run: .venv/bin/python scripts/bench/cli.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, pct, start_daemon

sys.path.insert(0, str(ROOT))

from telepty.cli.client import Client
from telepty.cli.output import table
from telepty.config import Config


def wall(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "telepty", *argv], env=env, capture_output=True, check=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def in_process(config: Config, runs: int, *, fresh: bool) -> list[float]:
    """ms per ``GET /api/sessions``: with ``fresh`` a new Client each time (find + check +
    request, as one CLI command does), else one verified Client reused (request only)."""
    client = Client(config)
    client.request("GET", "/api/sessions")
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        (Client(config) if fresh else client).request("GET", "/api/sessions")
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="telepty-bench-cli-"))
    proc, _url, _token = start_daemon(home)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPTY_")}
        env["TELEPTY_HOME"] = str(home)
        config = Config.from_env(env)
        rows = []
        for label, samples in (
            ("telepty list (process)", wall(["list"], env, args.runs)),
            ("telepty status (process)", wall(["status"], env, args.runs)),
            ("telepty --version (no daemon)", wall(["--version"], env, args.runs)),
            ("request, verified client reused", in_process(config, args.runs * 10, fresh=False)),
            ("request, new client: find + check + request", in_process(config, args.runs * 10, fresh=True)),
        ):
            rows.append((label, len(samples), f"{statistics.median(samples):.2f}", f"{pct(samples, 95):.2f}"))
        print(table(rows, ["what", "runs", "p50 ms", "p95 ms"]))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
