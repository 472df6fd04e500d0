"""scripts/chaos.py at a small size: SIGKILL the daemon mid-queue and mid-paste; nobody
touches anything, and every prompt is still submitted exactly once, on its own."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT


def test_chaos_small_run_finishes_everything_exactly_once_unattended() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--deliveries", "90", "--sessions", "3",
         "--kills", "4", "--seed", "2", "--timeout", "40", "--settle", "30", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    counts = report["counts"]
    print(counts)
    assert report["ok"], report["violations"]
    assert counts["accepted"] == 90 and counts["kills"] == 4
    assert counts["delivered"] == 90  # none failed, none left for a person
    assert counts["unfinished 30 s after the last restart"] == 0
    assert counts["lost"] == 0 and counts["pasted twice"] == 0 and counts["merged submissions"] == 0
    assert counts["unknown submissions"] == 0
