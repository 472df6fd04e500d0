"""Shared by the benchmarks: percentiles and a real daemon on an ephemeral port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def start_daemon(home: Path, **settings: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start ``telepty daemon --port 0`` on ``home`` with TELEPTY_* ``settings``;
    returns (process, url, token) once it has written where it listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPTY_")}
    env.update(TELEPTY_HOME=str(home), TELEPTY_LOG_LEVEL="WARNING", **settings)
    proc = subprocess.Popen([sys.executable, "-m", "telepty", "daemon", "--port", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            info = json.loads((home / "daemon.json").read_text())
            if info["pid"] == proc.pid:
                return proc, info["url"], (home / "token").read_text().strip()
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("daemon did not start")
