#!/usr/bin/env python3
"""What the CLI loads before it does anything: modules and time, per command.

Every ``telepty`` command pays for the imports of the CLI before it sends its request,
and a person runs ``list``, ``inject`` and ``status`` all day. Each row runs in a fresh
interpreter (nothing cached in ``sys.modules``; the OS file cache is warm after the
first run) and prints:

  import s       wall time of ``import telepty.cli.main`` alone (the parser's modules)
  import+command that and ``main(argv)`` (the command's own imports and its work: a real
                 daemon on an ephemeral port answers, so its request time is included)
  telepty mods   telepty modules in ``sys.modules`` once the command has run
  all mods       every module in ``sys.modules`` then
  aiohttp        whether aiohttp was imported        daemon   whether telepty.daemon was

Run: .venv/bin/python scripts/bench/cli_import.py [--runs 10] [--source DIR]

``--source DIR`` measures the telepty package in DIR instead (another checkout, e.g. the
commit before a change), against the same daemon and under the same load.
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
from pathlib import Path

from benchlib import ROOT, pct, start_daemon

sys.path.insert(0, str(ROOT))

# Runs inside the measured interpreter: import, run one command, report what it cost.
PROBE = r"""
import io, json, sys, time, contextlib
argv = json.loads(sys.argv[1])
t0 = time.perf_counter()
import telepty.cli.main as cli
t1 = time.perf_counter()
code = None
if argv:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # --help, --version
            code = exc.code
t2 = time.perf_counter()
mods = list(sys.modules)
print(json.dumps({"import": t1 - t0, "command": t2 - t1, "code": code,
                  "telepty": sum(1 for m in mods if m == "telepty" or m.startswith("telepty.")),
                  "all": len(mods), "aiohttp": "aiohttp" in sys.modules,
                  "daemon": "telepty.daemon" in sys.modules}))
"""


def probe(argv: list[str], env: dict[str, str], source: Path) -> dict[str, object]:
    # cwd is the checkout measured: ``python -c`` puts it first on sys.path.
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], env=env, cwd=source,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--source", type=Path, help="measure the telepty package in this checkout")
    args = parser.parse_args()
    from telepty.cli.output import table

    home = Path(tempfile.mkdtemp(prefix="telepty-bench-import-"))
    proc, _url, _token = start_daemon(home)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPTY_")}
        env.update(TELEPTY_HOME=str(home))
        source = args.source.resolve() if args.source else ROOT
        probe_env = dict(env, PYTHONPATH=str(source))
        # A session to inject into: a spawned `cat`, which takes any prompt.
        subprocess.run([sys.executable, "-m", "telepty", "spawn", "--id", "bench", "--", "cat"],
                       env=env, cwd=ROOT, capture_output=True, check=True)
        rows = []
        for label, argv in (
            ("import telepty.cli.main", []),
            ("telepty list", ["list"]),
            ("telepty status", ["status"]),
            ("telepty inject", ["inject", "bench", "hello"]),
            ("telepty --help", ["--help"]),
        ):
            samples = [probe(argv, probe_env, source) for _ in range(args.runs)]
            imports = [float(s["import"]) for s in samples]  # type: ignore[arg-type]
            totals = [float(s["import"]) + float(s["command"]) for s in samples]  # type: ignore[arg-type]
            last = samples[-1]
            rows.append((label, len(samples), f"{statistics.median(imports):.3f}", f"{pct(imports, 95):.3f}",
                         f"{statistics.median(totals):.3f}" if argv else "-", last["telepty"], last["all"],
                         "yes" if last["aiohttp"] else "no", "yes" if last["daemon"] else "no"))
        print(table(rows, ["what", "runs", "import s p50", "import s p95", "import+command s p50",
                           "telepty mods", "all mods", "aiohttp", "daemon"]))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
