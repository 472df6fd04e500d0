"""``telepty``: one entry point, one module per command group.

Every failure prints one clear line to stderr and exits non-zero (the Node.js
telepty exited 0 on failures, and scripts could not tell).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from telepty import __version__
from telepty.cli import (
    agents_cmd,
    bus_cmd,
    completion_cmd,
    daemon_cmd,
    doctor_cmd,
    inject_cmd,
    keys_cmd,
    panes_cmd,
    peers_cmd,
    service_cmd,
    sessions_cmd,
    terminal_cmd,
)
from telepty.cli.client import CliError
from telepty.config import Config, ConfigError

GROUPS = (daemon_cmd, sessions_cmd, terminal_cmd, panes_cmd, inject_cmd, bus_cmd, keys_cmd, agents_cmd,
          peers_cmd, doctor_cmd, service_cmd, completion_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telepty",
        description="Deliver prompts into interactive AI agent CLIs, whole and at the right moment.",
    )
    parser.add_argument("--version", action="version", version=f"telepty {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        config = Config.from_env()
        return int(args.func(args, config) or 0)
    except CliError as exc:
        print(f"telepty: {exc}", file=sys.stderr)
        return exc.exit_code
    except ConfigError as exc:
        print(f"telepty: bad configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
