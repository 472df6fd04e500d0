"""``telepty doctor``: is this machine ready to deliver prompts? One ✓/✗ line per check.

Every ✗ carries a fix hint; the exit code is non-zero when any check fails, so a
script (or a person's first hour) can tell at a glance. The checks themselves are
:mod:`telepty.cli.doctor_checks`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from telepty.cli.options import add_json
from telepty.cli.output import emit_json
from telepty.config import Config


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("doctor", help="check the daemon, tmux, the home directory, peers, the NATS bus "
                       "(when set) and sessions",
                       description="Run health checks; each prints ✓ or ✗ with a fix hint. "
                       "Exits 1 if any check fails.")
    add_json(p)
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    from telepty.cli.doctor_checks import run_checks

    checks = run_checks(config)
    failed = sum(1 for c in checks if not c.ok)
    warned = sum(1 for c in checks if c.warning)
    if args.json:
        emit_json({"ok": failed == 0, "checks": [asdict(c) for c in checks]})
    else:
        for c in checks:
            print(f"{'!' if c.warning else '✓' if c.ok else '✗'} {c.name}: {c.detail}")
            if (c.warning or not c.ok) and c.hint:
                print(f"    {'note' if c.warning else 'fix'}: {c.hint}")
        print(f"{len(checks) - failed - warned} ok, {warned} warning(s), {failed} failed"
              if warned else f"{len(checks) - failed} ok, {failed} failed")
    return 1 if failed else 0


__all__ = ["add_parsers"]
