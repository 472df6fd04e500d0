"""scripts/bench/sessions.py at a CI size: many sessions of every kind, health events on,
an injection stream; every prompt delivered, every session registered, nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import psutil
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.integration

SESSIONS = 40
DURATION_S = 4
RATE = 5


def _left_behind(workdir: str) -> list[str]:
    """Processes still pointing into the bench's temp dir: its daemon, PTY children, tmux."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        env = proc.info["environ"] or {}
        text = " ".join([*(proc.info["cmdline"] or []), env.get("TELEPTY_HOME", ""), env.get("TMUX", "")])
        if workdir in text:
            found.append(f"{proc.info['pid']}: {text}")
    return found


@pytest.mark.skipif(shutil.which("tmux") is None, reason="pane sessions need tmux")
def test_sessions_bench_small_run_delivers_everything() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "sessions.py"), "--sessions", str(SESSIONS),
         "--duration", str(DURATION_S), "--rate", str(RATE), "--idle-window", "1.5",
         "--health-interval", "0.5", "--idle-seconds", "1", "--json"],
        capture_output=True, text=True, timeout=90,
        env={k: v for k, v in os.environ.items()
             if not k.startswith("TELEPTY_") and k not in {"TMUX", "TMUX_PANE"}},
    )
    print(proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"], report["problems"]

    # every kind is there and every session was registered and running at the peak
    mix = report["mix"]
    assert sum(mix.values()) == SESSIONS and all(mix[k] > 0 for k in ("spawned", "wrapped", "pane"))
    reg = report["registration"]
    assert reg["errors"] == 0 and reg["listed"] == SESSIONS and reg["running"] == SESSIONS
    assert reg["daemon_children"] >= mix["spawned"]  # one PTY child per spawned session
    assert report["phases"]["load"]["running"] == SESSIONS

    # every injection delivered, into every kind of session
    inj = report["injections"]
    assert inj["sent"] == DURATION_S * RATE
    assert inj["delivered"] == inj["sent"] and inj["failed"] == 0, inj["outcomes"]
    assert all(v["delivered"] == v["sent"] > 0 for v in inj["by_kind"].values())
    assert 0 < inj["p50_ms"] <= inj["p95_ms"]

    # health events flowed at the configured rate (one per running session per interval)
    idle = report["phases"][f"idle, {SESSIONS} sessions"]
    health = idle["bus_seen_by_kind"].get("session_health", 0) / idle["wall_s"]
    assert health >= 0.5 * SESSIONS / 0.5, idle
    assert report["phases"]["load"]["bus_seen_by_kind"].get("inject_written", 0) >= inj["sent"] // 2

    # session.idle fired (the threshold is 1 s), but once per quiet period: a wrapped
    # session's heartbeats must not make every check look like a new period
    assert report["idle_events"]["sessions"] >= SESSIONS // 2, report["idle_events"]
    assert report["idle_events"]["repeats"] == 0, report["idle_events"]

    # resources were measured
    assert idle["rss_end_mb"] > 0 and idle["fds"] > reg["daemon_children"]

    # the table is printed (on stderr beside --json), with the numbers in it
    assert "| measurement" in proc.stderr and f"{SESSIONS} sessions" in proc.stderr
    assert "| injections sent / delivered / failed" in proc.stderr

    # nothing left running: the daemon (and so its PTYs) and the tmux server are gone
    assert not _left_behind(report["workdir"])
