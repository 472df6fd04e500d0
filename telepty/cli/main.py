"""``telepty``: one entry point, one module per command group.

Every failure prints one clear line to stderr and exits non-zero (the Node.js
telepty exited 0 on failures, and scripts could not tell); with ``--json`` the
failure is a JSON object on stdout instead, so a script that parses the output
parses the error too. Exit codes: ``telepty.cli.client.EXIT_*``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

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
from telepty.cli.client import EXIT_INTERRUPTED, EXIT_USAGE, CliError
from telepty.config import Config, ConfigError

GROUPS = (daemon_cmd, sessions_cmd, terminal_cmd, panes_cmd, inject_cmd, bus_cmd, keys_cmd, agents_cmd,
          peers_cmd, doctor_cmd, service_cmd, completion_cmd)


class UsageError(CliError):
    """Bad arguments, found by the parser: nothing was sent anywhere."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message, "usage", EXIT_USAGE, hint=f"see `{parser.prog} --help`")
        self.usage = parser.format_usage()
        self.prog = parser.prog


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised (and reported as text or JSON by ``main``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="telepty",
        description="Deliver prompts into interactive AI agent CLIs, whole and at the right moment.",
    )
    parser.add_argument("--version", action="version", version=f"telepty {__version__}")
    parser.set_defaults(root_parser=parser)  # completion describes the whole CLI
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def wants_json(argv: Sequence[str]) -> bool:
    """``--json`` among telepty's own arguments (everything after ``--`` is the command's)."""
    own = list(argv)
    if "--" in own:
        own = own[: own.index("--")]
    return "--json" in own


def report_error(exc: CliError, as_json: bool) -> int:
    if as_json:
        sys.stdout.write(json.dumps(exc.to_json(), ensure_ascii=False) + "\n")
    elif isinstance(exc, UsageError):
        sys.stderr.write(exc.usage)
        print(f"{exc.prog}: error: {exc.message}", file=sys.stderr)
    else:
        print(f"telepty: {exc.line()}", file=sys.stderr)
    return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = wants_json(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        config = Config.from_env()
        return int(args.func(args, config) or 0)
    except CliError as exc:
        return report_error(exc, as_json)
    except ConfigError as exc:
        return report_error(CliError(f"bad configuration: {exc}", "bad_config", EXIT_USAGE), as_json)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
