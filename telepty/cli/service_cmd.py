"""``telepty service install|uninstall``: run the daemon at login, as a user service.

Linux: a systemd user unit at ``$XDG_CONFIG_HOME/systemd/user/telepty.service``.
macOS: a launchd agent at ``~/Library/LaunchAgents/dev.telepty.daemon.plist``.

The file is written and the command that enables it is printed; telepty never runs
``systemctl`` or ``launchctl`` itself, so installing changes nothing until you say so.
``--print`` writes the file's content to stdout and touches nothing (``--json`` puts
it in an object with the path and the commands).

Uninstalling disables the unit *before* removing it: it deletes the link that
``systemctl --user enable`` made (``default.target.wants/telepty.service``, the only
one our ``[Install]`` section asks for), so no dangling link is left behind, and then
the file. What is still running is stopped by the command it prints.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from telepty.cli.client import EXIT_USAGE, CliError
from telepty.cli.options import add_json
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
                           ("uninstall", "disable and remove the service file, and print how to stop it")):
        sp = ssub.add_parser(name, help=helptext)
        sp.add_argument("--user", action="store_true",
                        help="a per-user service (the default, and the only kind supported)")
        sp.add_argument("--print", dest="print_only", action="store_true",
                        help="write the service file's content to stdout (with --json: an object with "
                        "path, content and commands); change nothing")
        sp.add_argument("--platform", choices=["linux", "macos"], default=None,
                        help="which service manager to write for (default: this machine's)")
        add_json(sp)
        sp.set_defaults(func=cmd_install if name == "install" else cmd_uninstall)
    p.set_defaults(func=_needs_subcommand)


def _needs_subcommand(args: argparse.Namespace, config: Config) -> int:
    raise CliError("service needs a subcommand: install or uninstall", "usage", exit_code=EXIT_USAGE)


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
    env["PATH"] = unique_path(os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin")  # tmux is found
    return env


def unique_path(path: str) -> str:
    """PATH with each directory once (the first time it appears) and no empty entries."""
    return os.pathsep.join(dict.fromkeys(d for d in path.split(os.pathsep) if d))


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


@dataclass(frozen=True)
class Target:
    """The service file for one platform, and the commands around it."""

    path: Path
    content: str
    enable: str  # printed after install
    stop: str  # printed after uninstall: what is still running keeps running until then
    links: tuple[Path, ...] = ()  # what enabling it created: removed first on uninstall


def _target(args: argparse.Namespace, config: Config) -> Target:
    if _platform(args) == "linux":
        path = unit_path()
        return Target(
            path, systemd_unit(config),
            f"systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}",
            f"systemctl --user stop {UNIT_NAME}; systemctl --user daemon-reload",
            links=(path.parent / "default.target.wants" / UNIT_NAME,),
        )
    path = plist_path()
    return Target(path, launchd_plist(config), f"launchctl load -w {shlex.quote(str(path))}",
                  f"launchctl remove {LAUNCHD_LABEL}")


def _print_only(target: Target, args: argparse.Namespace) -> int:
    if args.json:
        emit_json({"path": str(target.path), "content": target.content, "enable": target.enable,
                   "stop": target.stop})
    else:
        sys.stdout.write(target.content)
    return 0


def cmd_install(args: argparse.Namespace, config: Config) -> int:
    target = _target(args, config)
    if args.print_only:
        return _print_only(target, args)
    path = target.path
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(target.content, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    if args.json:
        emit_json({"path": str(path), "replaced": existed, "enable": target.enable})
        return 0
    print(f"{'updated' if existed else 'wrote'} {path}")
    print(f"enable and start it with: {target.enable}")
    return 0


def cmd_uninstall(args: argparse.Namespace, config: Config) -> int:
    target = _target(args, config)
    if args.print_only:
        return _print_only(target, args)
    path = target.path
    if not path.exists():
        raise CliError(f"no telepty service file at {path}", code="not_installed",
                       hint="`telepty service install` writes one")
    disabled = []
    try:
        for link in target.links:  # disabled first: never a link left pointing at nothing
            if link.is_symlink() or link.exists():
                link.unlink()
                disabled.append(str(link))
        path.unlink()
    except OSError as exc:
        raise CliError(f"cannot remove {exc.filename}: {exc.strerror}") from None
    if args.json:
        emit_json({"path": str(path), "removed": True, "disabled": disabled, "stop": target.stop})
        return 0
    for link in disabled:
        print(f"disabled (removed {link})")
    print(f"removed {path}")
    print(f"if it is running, stop it with: {target.stop}")
    return 0
