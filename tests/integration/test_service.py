"""``telepty service install|uninstall``: files in a temp HOME; systemctl/launchctl never run."""

from __future__ import annotations

import json
import plistlib
import sys
from pathlib import Path

from tests.helpers import daemon_env, run_cli


def _env(tmp_path: Path, home: Path) -> dict[str, str]:
    env = daemon_env(home, HOME=str(tmp_path / "user"), XDG_CONFIG_HOME=str(tmp_path / "xdg"),
                     TELEPTY_SESSION_TOKEN="secret-session-token")
    # systemctl/launchctl are never run: a PATH where they would be fakes that leave a mark proves it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("systemctl", "launchctl"):
        fake = bin_dir / name
        fake.write_text(f"#!/bin/sh\ntouch {tmp_path}/{name}-was-run\n")
        fake.chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def test_systemd_user_unit_install_and_uninstall(tmp_path: Path, home: Path) -> None:
    env = _env(tmp_path, home)
    unit = tmp_path / "xdg" / "systemd" / "user" / "telepty.service"
    res = run_cli("service", "install", "--user", "--platform", "linux", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"wrote {unit}",
        "enable and start it with: systemctl --user daemon-reload && systemctl --user enable --now "
        "telepty.service",
    ]
    text = unit.read_text()
    assert f'ExecStart="{sys.executable}" "-m" "telepty" "daemon"' in text
    assert f'Environment="TELEPTY_HOME={home}"' in text
    assert "WantedBy=default.target" in text and "Restart=on-failure" in text
    assert "secret-session-token" not in text  # a session's secret never lands in a service file
    again = run_cli("service", "install", "--json", "--platform", "linux", env=env)
    answer = json.loads(again.stdout)
    assert answer["path"] == str(unit) and answer["replaced"] is True
    assert answer["enable"].startswith("systemctl --user daemon-reload")

    printed = run_cli("service", "install", "--print", "--platform", "linux", env=env)
    assert printed.returncode == 0 and printed.stdout == text

    res = run_cli("service", "uninstall", "--user", "--platform", "linux", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"removed {unit}\n")
    assert "systemctl --user stop telepty.service" in res.stdout
    assert not unit.exists()
    res = run_cli("service", "uninstall", "--platform", "linux", env=env)
    assert res.returncode == 1 and res.stderr.startswith("telepty: no telepty service file at ")
    assert not list(tmp_path.glob("*-was-run"))


def test_launchd_plist_print_and_install(tmp_path: Path, home: Path) -> None:
    env = _env(tmp_path, home)
    printed = run_cli("service", "install", "--print", "--platform", "macos", env=env)
    assert printed.returncode == 0
    plist = plistlib.loads(printed.stdout.encode())
    assert plist["Label"] == "dev.telepty.daemon"
    assert plist["ProgramArguments"] == [sys.executable, "-m", "telepty", "daemon"]
    assert plist["EnvironmentVariables"]["TELEPTY_HOME"] == str(home)
    assert "TELEPTY_SESSION_TOKEN" not in plist["EnvironmentVariables"]
    assert plist["RunAtLoad"] is True
    assert not (tmp_path / "user" / "Library").exists()  # --print writes nothing

    res = run_cli("service", "install", "--platform", "macos", env=env)
    path = tmp_path / "user" / "Library" / "LaunchAgents" / "dev.telepty.daemon.plist"
    assert res.returncode == 0 and f"launchctl load -w {path}" in res.stdout
    assert plistlib.loads(path.read_bytes()) == plist
    res = run_cli("service", "uninstall", "--json", "--platform", "macos", env=env)
    assert json.loads(res.stdout) == {"path": str(path), "removed": True, "disabled": [],
                                      "stop": "launchctl remove dev.telepty.daemon"}
    assert not path.exists()
    assert not list(tmp_path.glob("*-was-run"))


def test_service_without_subcommand_is_a_usage_error(tmp_path: Path, home: Path) -> None:
    res = run_cli("service", env=_env(tmp_path, home))
    assert res.returncode == 2 and "install or uninstall" in res.stderr


def test_uninstall_disables_the_unit_before_removing_it(tmp_path: Path, home: Path) -> None:
    env = _env(tmp_path, home)
    unit = tmp_path / "xdg" / "systemd" / "user" / "telepty.service"
    assert run_cli("service", "install", "--platform", "linux", env=env).returncode == 0
    # What `systemctl --user enable telepty.service` makes for WantedBy=default.target:
    link = unit.parent / "default.target.wants" / "telepty.service"
    link.parent.mkdir()
    link.symlink_to(unit)
    res = run_cli("service", "uninstall", "--platform", "linux", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"disabled (removed {link})",
        f"removed {unit}",
        "if it is running, stop it with: systemctl --user stop telepty.service; "
        "systemctl --user daemon-reload",
    ]
    assert not link.is_symlink() and not unit.exists()  # no link left pointing at nothing
    assert not list(tmp_path.glob("*-was-run"))  # still never runs systemctl itself


def test_print_json_and_a_path_without_duplicates(tmp_path: Path, home: Path) -> None:
    env = _env(tmp_path, home)
    env["PATH"] = f"{env['PATH']}:/usr/bin::{env['PATH']}:/usr/bin"
    res = run_cli("service", "install", "--print", "--json", "--platform", "linux", env=env)
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    assert set(answer) == {"path", "content", "enable", "stop"}
    assert answer["path"] == str(tmp_path / "xdg" / "systemd" / "user" / "telepty.service")
    assert answer["content"].startswith("# Written by `telepty service install`")
    assert not (tmp_path / "xdg" / "systemd").exists()  # --print writes nothing, --json or not
    path_line = next(line for line in answer["content"].splitlines() if line.startswith('Environment="PATH='))
    dirs = path_line[len('Environment="PATH='):-1].split(":")
    assert len(dirs) == len(set(dirs)) and "" not in dirs and "/usr/bin" in dirs, path_line
    assert dirs[0] == str(tmp_path / "bin")  # first-seen order kept
