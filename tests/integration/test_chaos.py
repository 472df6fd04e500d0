"""scripts/chaos.py at a small size: SIGKILL the daemon mid-queue and mid-paste, nothing lost or doubled."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT


def test_chaos_small_run_is_exactly_once() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--deliveries", "60", "--sessions", "3",
         "--kills", "3", "--seed", "2", "--timeout", "40", "--json"],
        capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    counts = report["counts"]
    print(counts)
    assert report["ok"], report["violations"]
    assert counts["accepted"] == 60 and counts["kills"] == 3
    assert counts["lost"] == 0 and counts["pasted twice"] == 0 and counts["unknown submissions"] == 0
    final = sum(v for k, v in counts.items() if k in ("delivered", "cancelled") or
                (k.startswith("failed (") and not k.endswith("submitted once")))
    assert final == 60
