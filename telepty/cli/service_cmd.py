"""``telepty service install|uninstall``: run the daemon at login, as a user service.

Linux: a systemd user unit at ``$XDG_CONFIG_HOME/systemd/user/telepty.service``.
macOS: a launchd agent at ``~/Library/LaunchAgents/dev.telepty.daemon.plist``.

The file is written and the command that enables it is printed; telepty never runs
``systemctl`` or ``launchctl`` itself, so installing changes nothing until you say so.
``--print`` writes the file's content to stdout and touches nothing.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shlex
import sys
from pathlib import Path

from telepty.cli.client import CliError
from telepty.cli.output import emit_json
from telepty.config import Config

UNIT_NAME = "telepty.service"
LAUNCHD_LABEL = "dev.telepty.daemon"
# Settings that are secrets or belong to one session, never baked into a service file.
_NOT_INHERITED = {"TELEPTY_SESSION_TOKEN", "TELEPTY_SESSION_ID", "TELEPTY_URL"}


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("service", help="install or remove a user service that runs the daemon",
                       description="Write (or remove) a systemd user unit (Linux) or a launchd agent "
                       "(macOS) for `telepty daemon`, and print the command that enables it. "
                       "Nothing is started: telepty never runs systemctl or launchctl itself.")
    ssub = p.add_subparsers(dest="service_command", metavar="SUBCOMMAND")
    for name, helptext in (("install", "write the service file and print how to enable it"),
                           ("uninstall", "remove the service file and print how to disable it")):
        sp = ssub.add_parser(name, help=helptext)
        sp.add_argument("--user", action="store_true",
                        help="a per-user service (the default, and the only kind supported)")
        sp.add_argument("--print", dest="print_only", action="store_true",
                        help="write the service file's content to stdout; change nothing")
        sp.add_argument("--platform", choices=["linux", "macos"], default=None,
                        help="which service manager to write for (default: this machine's)")
        sp.add_argument("--json", action="store_true")
        sp.set_defaults(func=cmd_install if name == "install" else cmd_uninstall)
    p.set_defaults(func=_needs_subcommand)


def _needs_subcommand(args: argparse.Namespace, config: Config) -> int:
    raise CliError("service needs a subcommand: install or uninstall", exit_code=2)


def _platform(args: argparse.Namespace) -> str:
    if args.platform:
        return str(args.platform)
    if sys.platform == "darwin":
        return "macos"
    if sys.platform.startswith("linux"):
        return "linux"
    raise CliError(f"no service manager support for {sys.platform}; run `telepty daemon` yourself")


def _environment(config: Config) -> dict[str, str]:
    env = {k: v for k, v in sorted(os.environ.items())
           if k.startswith("TELEPTY_") and k not in _NOT_INHERITED}
    env["TELEPTY_HOME"] = str(config.home)
    env["PATH"] = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")  # so tmux is found
    return env


def _argv() -> list[str]:
    return [sys.executable, "-m", "telepty", "daemon"]


def unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def _systemd_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def systemd_unit(config: Config) -> str:
    env = "\n".join(f"Environment={_systemd_quote(f'{k}={v}')}" for k, v in _environment(config).items())
    exec_start = " ".join(_systemd_quote(a) for a in _argv())
    return f"""# Written by `telepty service install`; remove with `telepty service uninstall`.
[Unit]
Description=telepty daemon: delivers prompts into AI agent CLI terminals
After=network.target

[Service]
Type=simple
ExecStart={exec_start}
{env}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=default.target
"""


def launchd_plist(config: Config) -> str:
    log = str(config.home / "daemon.log")
    data = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": _argv(),
        "EnvironmentVariables": _environment(config),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "StandardOutPath": log,
        "StandardErrorPath": log,
    }
    return plistlib.dumps(data).decode("utf-8")


def _target(args: argparse.Namespace, config: Config) -> tuple[Path, str, str, str]:
    """(path, content, enable command, disable command) for this platform."""
    if _platform(args) == "linux":
        path = unit_path()
        return (path, systemd_unit(config),
                f"systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}",
                # Run after the file is gone, so `disable` (which reads it) is no use.
                f"systemctl --user stop {UNIT_NAME}; rm -f "
                f"{shlex.quote(str(path.parent / 'default.target.wants' / UNIT_NAME))}; "
                "systemctl --user daemon-reload")
    path = plist_path()
    return (path, launchd_plist(config), f"launchctl load -w {shlex.quote(str(path))}",
            f"launchctl remove {LAUNCHD_LABEL}")


def cmd_install(args: argparse.Namespace, config: Config) -> int:
    path, content, enable, _ = _target(args, config)
    if args.print_only:
        sys.stdout.write(content)
        return 0
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    if args.json:
        emit_json({"path": str(path), "replaced": existed, "enable": enable})
        return 0
    print(f"{'updated' if existed else 'wrote'} {path}")
    print(f"enable and start it with: {enable}")
    return 0


def cmd_uninstall(args: argparse.Namespace, config: Config) -> int:
    path, content, _, disable = _target(args, config)
    if args.print_only:
        sys.stdout.write(content)
        return 0
    if not path.exists():
        raise CliError(f"no telepty service file at {path}", code="not_installed")
    try:
        path.unlink()
    except OSError as exc:
        raise CliError(f"cannot remove {path}: {exc.strerror}") from None
    if args.json:
        emit_json({"path": str(path), "removed": True, "disable": disable})
        return 0
    print(f"removed {path}")
    print(f"if it was running, stop it with: {disable}")
    return 0
