"""``telepty completion``: scripts generated from the parser; bash's is exercised for real."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from telepty.cli.completion_cmd import describe
from telepty.cli.main import build_parser
from tests.helpers import DaemonProcess, daemon_env, run_cli


def _bash_complete(script: Path, *words: str, env: dict[str, str] | None = None) -> list[str]:
    code = (f"source {script}\nCOMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}\n"
            '_telepty; printf "%s\\n" "${COMPREPLY[@]}"\n')
    out = subprocess.run(["bash", "--norc", "-c", code], capture_output=True, text=True, timeout=20,
                         env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_the_tree_comes_from_the_parser() -> None:
    root = describe(build_parser())
    names = {c.name for c in root.subcommands}
    assert {"doctor", "service", "completion", "inject", "bus", "list", "ls"} <= names
    bus = next(c for c in root.subcommands if c.name == "bus")
    assert bus.subcommands and all(s.name for s in bus.subcommands)
    service = next(c for c in root.subcommands if c.name == "service")
    assert {s.name for s in service.subcommands} == {"install", "uninstall"}
    assert "--print" in next(s for s in service.subcommands if s.name == "install").options


def test_bash_completion_completes_commands_subcommands_and_flags(tmp_path: Path, home: Path) -> None:
    res = run_cli("completion", "bash", env=daemon_env(home))
    assert res.returncode == 0
    script = tmp_path / "telepty.bash"
    script.write_text(res.stdout)
    assert _bash_complete(script, "telepty", "do") == ["doctor"]
    assert set(_bash_complete(script, "telepty", "serv")) == {"service"}
    assert set(_bash_complete(script, "telepty", "service", "")) >= {"install", "uninstall"}
    assert _bash_complete(script, "telepty", "service", "install", "--pr") == ["--print"]
    assert _bash_complete(script, "telepty", "doctor", "--j") == ["--json"]
    bus_subs = {s.name for s in next(c for c in describe(build_parser()).subcommands
                                     if c.name == "bus").subcommands}
    assert set(_bash_complete(script, "telepty", "bus", "")) >= bus_subs


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts(shell: str, home: Path) -> None:
    res = run_cli("completion", shell, env=daemon_env(home))
    assert res.returncode == 0
    flag = "--print" if shell == "zsh" else "-l print"
    assert "doctor" in res.stdout and flag in res.stdout and "uninstall" in res.stdout
    if shell == "zsh":
        assert res.stdout.startswith("#compdef telepty\n")
    else:
        assert "complete -c telepty -n 'not __fish_seen_subcommand_from " in res.stdout
    binary = shutil.which(shell)
    if binary is not None:  # a syntax check where the shell is installed
        check = subprocess.run([binary, "-n"], input=res.stdout, capture_output=True, text=True, timeout=10)
        assert check.returncode == 0, check.stderr


def test_unknown_shell_is_a_usage_error(home: Path) -> None:
    res = run_cli("completion", "tcsh", env=daemon_env(home))
    assert res.returncode == 2


def test_bash_completes_session_ids_and_choice_values(tmp_path: Path, daemon: DaemonProcess) -> None:
    for sid in ("alpha", "beta"):
        status, body = daemon.request("POST", "/api/sessions/spawn", {
            "session_id": sid, "command": "sh", "cwd": str(tmp_path)})
        assert status == 201, body
    script = tmp_path / "telepty.bash"
    script.write_text(run_cli("completion", "bash", env=daemon.env).stdout)
    # `telepty` as a person's shell finds it, with this daemon's home.
    env = {**daemon.env, "PATH": f"{Path(sys.executable).parent}:{daemon.env['PATH']}"}
    assert run_cli("completion", "sessions", env=env).stdout.split() == ["alpha", "beta"]
    assert _bash_complete(script, "telepty", "inject", "", env=env)[-2:] == ["alpha", "beta"]
    assert _bash_complete(script, "telepty", "inject", "al", env=env) == ["alpha"]
    assert _bash_complete(script, "telepty", "kill", "b", env=env) == ["beta"]
    assert _bash_complete(script, "telepty", "deliveries", "--session", "", env=env) == ["alpha", "beta"]
    assert "alpha" not in _bash_complete(script, "telepty", "inject", "alpha", "", env=env)  # the prompt
    assert _bash_complete(script, "telepty", "deliveries", "--status", "de", env=env) == [
        "delivering", "delivered"]
    assert _bash_complete(script, "telepty", "list", "--agent", "c", env=env) == ["claude", "codex"]
    assert _bash_complete(script, "telepty", "completion", "", env=env)[-4:] == [
        "bash", "zsh", "fish", "sessions"]
    # With the daemon gone there are no ids to offer, and no error either.
    daemon.stop()
    assert run_cli("completion", "sessions", env=env).returncode == 0
    assert _bash_complete(script, "telepty", "kill", "", env=env) == ["--help", "--json"]
