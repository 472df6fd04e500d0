"""A plain ``telepty`` command loads the CLI and nothing of the daemon.

Every command a person runs pays for what the CLI imports before it does anything, and
the daemon's stack (aiohttp, the routes, the store, the delivery engine) once made
``telepty list`` load 88 modules in 0.31 s. Each command runs in a fresh interpreter,
the way a person runs it, against an address where nothing listens (so the request
path is loaded too), and ``sys.modules`` is read afterwards.
(How long it takes is measured by scripts/bench/cli_import.py, not asserted here.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import daemon_env, free_port

# Never loaded by a plain command: the daemon and its stack, and the heavy clients only
# some commands need (the MCP SDK for `telepty mcp`, libtmux for panes and doctor).
FORBIDDEN = ("aiohttp", "telepty.daemon", "telepty.api", "telepty.store", "telepty.bus.hub",
             "telepty.delivery.engine", "telepty.relay", "telepty.tmux", "mcp", "pydantic", "libtmux")

PROBE = r"""
import contextlib, io, json, sys
import telepty.cli.main as cli
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = cli.main(json.loads(sys.argv[1]))
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

PLAIN_COMMANDS = [
    [],  # only the import (and the parser): `telepty` with no command prints help
    ["list"],
    ["status"],
    ["inject", "worker", "hello"],
    ["inject", "worker", "-", "--json"],
    ["deliveries"],
    ["keys", "worker", "Enter"],
    ["bus", "publish", "note", "--payload", "{}"],
    ["meta"],
    ["--help"],
    ["inject"],  # a usage error
]


def loaded(argv: list[str], tmp_path: Path) -> tuple[object, list[str]]:
    env = daemon_env(tmp_path / "home", TELEPTY_URL=f"http://127.0.0.1:{free_port()}")
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], env=env, input="a prompt",
                         capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout)
    return result["code"], result["modules"]


@pytest.mark.parametrize("argv", PLAIN_COMMANDS, ids=lambda a: " ".join(a) or "import")
def test_a_plain_command_loads_nothing_of_the_daemon(argv: list[str], tmp_path: Path) -> None:
    code, modules = loaded(argv, tmp_path)
    heavy = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert heavy == [], f"telepty {' '.join(argv)} (exit {code}) loaded {heavy}"


def test_the_probe_sees_what_a_command_loads(tmp_path: Path) -> None:
    """The check above can fail: a command that needs tmux does load it."""
    _, modules = loaded(["panes", "--socket", str(tmp_path / "no-server")], tmp_path)
    assert "libtmux" in modules and "telepty.tmux.user_servers" in modules
