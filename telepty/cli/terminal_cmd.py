"""``telepty wrap``, ``telepty spawn`` and ``telepty attach``: the terminal commands.

Everything before ``--`` belongs to telepty and everything after it to the command,
so ``telepty wrap -- claude --help`` runs ``claude --help`` while ``telepty wrap
--help`` prints our help and starts nothing: help is never sent anywhere.
The heavy imports (aiohttp, the PTY code) happen inside the commands, so ``telepty
list`` does not pay for them.
"""

from __future__ import annotations

import argparse
import os

from telepty.cli.client import EXIT_USAGE, Client, CliError, ForeignDaemonError, daemon_endpoint
from telepty.cli.options import AGENT_HELP, add_agent, add_json, session_arg
from telepty.cli.output import emit_json
from telepty.config import Config, ConfigError
from telepty.errors import BadRequest
from telepty.pty.terminal import get_winsize
from telepty.sessions.model import validate_session_id

WRAP_EPILOG = """\
The command runs in a pseudo-terminal exactly as if started directly (keys, colours,
window size and exit status pass through). The session registers with the local daemon
and re-registers after a daemon restart; output printed while the daemon is away is
kept (up to 1 MiB) and mirrored when it comes back. The daemon does not need to be
running for the command to start.

examples:
  telepty wrap -- claude
  telepty wrap --id reviewer --agent codex -- codex --model o4
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "wrap",
        help="run an agent CLI in a PTY registered with the daemon",
        usage="telepty wrap [-h] [--id NAME] [--replace] [--agent NAME] -- CMD [ARG ...]",
        description="Run CMD transparently in a pseudo-terminal and register it as a wrapped session.",
        epilog=WRAP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--id", dest="session_id", metavar="NAME",
                   help="session id (default: chosen by the daemon from the command and directory)")
    p.add_argument("--replace", action="store_true",
                   help="take the id over from a live session using it (that owner is told and detaches)")
    add_agent(p, AGENT_HELP)
    p.add_argument("argv", nargs="*", metavar="CMD", help="the command and its arguments, after --")
    p.set_defaults(func=cmd_wrap, parser=p)

    p = sub.add_parser(
        "spawn",
        help="start a command in a PTY owned by the daemon",
        usage="telepty spawn [-h] --id NAME [--cwd DIR] [--agent NAME] [--json] -- CMD [ARG ...]",
        description="Start CMD in a pseudo-terminal owned by the daemon; `telepty attach NAME` to use it.",
    )
    p.add_argument("--id", dest="session_id", metavar="NAME", required=True, help="session id")
    p.add_argument("--cwd", metavar="DIR", help="working directory (default: the current one)")
    add_agent(p, AGENT_HELP)
    add_json(p)
    p.add_argument("argv", nargs="*", metavar="CMD", help="the command and its arguments, after --")
    p.set_defaults(func=cmd_spawn, parser=p)

    p = sub.add_parser(
        "attach",
        help="connect this terminal to a spawned session (Ctrl-] detaches)",
        description="Show a spawned session's screen and type into it. Ctrl-] detaches and leaves "
                    "the session running.",
    )
    session_arg(p, "id", "session id or alias", metavar="ID")
    p.set_defaults(func=cmd_attach)


def _session_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_session_id(value, "--id")
    except BadRequest as exc:
        raise CliError(exc.detail, code=exc.code, exit_code=EXIT_USAGE) from None


def _command(args: argparse.Namespace) -> list[str]:
    argv = list(args.argv)
    if not argv:
        args.parser.error("no command given (put it after --, e.g. `-- claude`)")
    return argv


def _not_foreign(config: Config) -> None:
    """With TELEPTY_URL set, make sure it is not a daemon of another implementation (the
    Node.js telepty has no wrapper socket for ours) before the command starts. No daemon
    at all is fine: wrap starts without one and registers when it comes up."""
    if not config.url:
        return
    try:
        Client(config, timeout=3.0).meta  # noqa: B018 (the check is the point)
    except ForeignDaemonError:
        raise
    except CliError:
        pass


def cmd_wrap(args: argparse.Namespace, config: Config) -> int:
    from telepty.pty.daemon_link import WrapConfigError, WrapTimings
    from telepty.pty.wrapper import WrapOptions, run_wrap

    argv = _command(args)
    _not_foreign(config)
    try:
        timings = WrapTimings.from_env(os.environ)
    except WrapConfigError as exc:
        raise CliError(f"bad configuration: {exc}", code="bad_config", exit_code=EXIT_USAGE) from None
    _check_profile(args.agent, config)
    opts = WrapOptions(
        argv=argv, session_id=_session_id(args.session_id), replace=args.replace, agent=args.agent,
        timings=timings,
    )
    return run_wrap(opts, config, lambda: daemon_endpoint(config))


def _check_profile(agent: str | None, config: Config) -> None:
    """The wrapper registers in the background, where a refusal is only logged: an
    ``--agent`` with no profile is said here, before the program starts. (The same
    profiles file is the daemon's.)"""
    if agent is None:
        return
    from telepty.delivery.profiles import load_profiles  # and the agents' process walk

    try:
        problem = load_profiles(config.profiles_path).unknown_agent(agent)
    except ConfigError as exc:
        raise CliError(f"invalid_profiles: {exc}", "invalid_profiles", exit_code=EXIT_USAGE) from None
    if problem:
        raise CliError(f"invalid_field: --agent: {problem}", "invalid_field", exit_code=EXIT_USAGE)


def cmd_spawn(args: argparse.Namespace, config: Config) -> int:
    argv = _command(args)
    cwd = os.path.abspath(args.cwd) if args.cwd else os.getcwd()
    cols, rows = get_winsize(0 if os.isatty(0) else 1)
    body: dict[str, object] = {
        "session_id": _session_id(args.session_id),
        "command": argv[0],
        "args": argv[1:],
        "cwd": cwd,
        "cols": cols,
        "rows": rows,
    }
    if args.agent:
        body["agent"] = args.agent
    session = Client(config, foreign_ok=True).request("POST", "/api/sessions/spawn", body)
    if args.json:
        emit_json(session)
    else:
        print(session.get("id") or session.get("session_id"))  # the Node.js daemon's answer has the latter
    return 0


def cmd_attach(args: argparse.Namespace, config: Config) -> int:
    from telepty.pty.attach_client import run_attach

    # Found and checked to be this home's daemon before the terminal goes raw: no daemon,
    # or another home's, is the one-line error (exit 3) every command gives.
    Client(config, timeout=3.0).meta  # noqa: B018 (the check is the point)
    return run_attach(config, args.id, lambda: daemon_endpoint(config))
