"""A profile for any agent: a program telepty has never heard of, added by the user.

The user writes ``[quill]`` into ``$TELEPTY_HOME/profiles.toml`` with the program it is
for and how its screen looks. From then on ``quill`` is an agent kind like the shipped
ones: pane discovery finds it by its program name, ``register-pane`` and ``spawn``
take ``--agent quill``, prompts are delivered with confirmation from its screen, and an
agent kind with no profile is refused with a clear error.

The program is the paste-burst stand-in (tests/programs) running as ``exec -a quill``.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from tests.helpers import DaemonProcess, wait_until_sync
from tests.integration.standins import PROGRAMS, start_standin

pytestmark = pytest.mark.integration

QUILL = """
[quill]
programs = ["quill"]
settle_ms = 150
confirm_ms = 800
composer_patterns = ['^\\s*›(?:\\s|$)']
idle_patterns = ['^\\s*›\\s*(?:Ask Codex to do anything)?\\s*$']
busy_patterns = ['esc to interrupt']
clear_keys = ["C-u"]
"""


def test_a_profile_for_a_program_telepty_never_heard_of(
    daemon_factory, session, tmp_path: Path, home: Path,  # type: ignore[no-untyped-def]
) -> None:
    (home / "profiles.toml").write_text(QUILL)
    d: DaemonProcess = daemon_factory(TELEPTY_SETTLE_MS="").start()
    sp = start_standin(session, tmp_path, "standin_paste_burst.py", name="quill", agent="quill",
                       args=["--burst-ms", "80"])
    wait_until_sync(lambda: "Ask Codex" in sp.screen(), 10, message="the stand-in to draw")

    # Discovery knows it by the program name its profile gives.
    listed = d.cli("panes", "--socket", sp.socket_path, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["pane"]: r["agent"] for r in json.loads(listed.stdout)}[sp.pane_id] == "quill"
    reg = d.cli("register-pane", sp.pane_id, "--socket", sp.socket_path, "--id", "q1", "--json")
    assert reg.returncode == 0, reg.stderr
    assert json.loads(reg.stdout)["agent"] == "quill"

    # Delivered, confirmed by reading its screen with its own profile.
    status, body = d.request("POST", "/api/sessions/q1/inject",
                             {"prompt": "hello quill\nsecond line", "wait": True, "timeout": 20},
                             timeout=30)
    assert status == 200 and body["status"] == "delivered", body
    assert body["confirmed"] == "screen" and body["evidence"]["profile"] == "quill", body
    assert sp.submissions() == ["hello quill\nsecond line"]
    status, explained = d.request("GET", "/api/sessions/q1/explain")
    assert explained["agent"] == "quill" and explained["agent_detected"] == "quill"
    assert explained["profile"]["clear_keys"] == ["C-u"] and explained["verdict"] == "idle"

    # --agent NAME on spawn; the profile decides how the screen is read.
    out = tmp_path / "spawned.jsonl"
    cmd = (f"exec -a quill {shlex.quote(sys.executable)} {PROGRAMS / 'standin_paste_burst.py'} "
           f"--out {out} --burst-ms 80")
    spawned = d.cli("spawn", "--id", "q2", "--agent", "quill", "--json", "--", "bash", "-c", cmd)
    assert spawned.returncode == 0, spawned.stderr
    assert json.loads(spawned.stdout)["agent"] == "quill"
    wait_until_sync(lambda: d.request("GET", "/api/sessions/q2/explain")[1].get("verdict") == "idle",
                    15, message="the spawned quill to be idle")
    status, body = d.request("POST", "/api/sessions/q2/inject",
                             {"prompt": "to the spawned one", "wait": True, "timeout": 20}, timeout=30)
    assert status == 200 and body["status"] == "delivered" and body["confirmed"] == "screen", body
    assert [json.loads(line)["text"] for line in out.read_text().splitlines() if '"n"' in line] == [
        "to the spawned one"]

    # An agent kind with no profile is refused, and nothing is registered.
    bad = d.cli("register-pane", sp.pane_id, "--socket", sp.socket_path, "--id", "q3",
                "--agent", "nosuch")
    assert bad.returncode != 0 and "no profile is named 'nosuch'" in bad.stderr, bad.stderr
    assert d.request("GET", "/api/sessions/q3")[0] == 404
    wrapped = d.cli("wrap", "--id", "q4", "--agent", "nosuch", "--", "true")
    assert wrapped.returncode == 2 and "no profile is named 'nosuch'" in wrapped.stderr, wrapped.stderr
    syntax = d.cli("register-pane", sp.pane_id, "--socket", sp.socket_path, "--id", "q3",
                   "--agent", "Not A Name")
    assert syntax.returncode == 2 and "--agent must be a profile name" in syntax.stderr, syntax.stderr


def _npm_package(root: Path, version: str) -> Path:
    """An npm-style install of ``quill``: its package.json and its program, which runs
    the stand-in."""
    pkg = root / "node_modules" / "@acme" / "quill"
    (pkg / "bin").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "@acme/quill", "version": version}))
    program = pkg / "bin" / "quill"
    program.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(PROGRAMS)!r})\n"
        f"runpy.run_path({str(PROGRAMS / 'standin_paste_burst.py')!r}, run_name='__main__')\n"
    )
    program.chmod(0o755)
    return program


def test_doctor_warns_when_an_agent_is_newer_than_its_profile(
    daemon_factory, session, tmp_path: Path, home: Path,  # type: ignore[no-untyped-def]
) -> None:
    (home / "profiles.toml").write_text(QUILL + 'verified_version = "1.4"\n')
    d: DaemonProcess = daemon_factory().start()
    program = _npm_package(tmp_path / "install", "3.2.1")
    window = session.new_window(window_name="quill", window_shell=shlex.join(
        [str(program), "--out", str(tmp_path / "q.jsonl")]))
    pane = window.active_pane
    socket = session.server.cmd("display-message", "-p", "#{socket_path}").stdout[0]
    wait_until_sync(lambda: "Ask Codex" in "\n".join(pane.capture_pane()), 10, message="quill drawn")
    reg = d.cli("register-pane", pane.pane_id, "--socket", socket, "--id", "old-profile")
    assert reg.returncode == 0, reg.stderr

    res = d.cli("doctor", "--json")
    assert res.returncode == 0, res.stdout + res.stderr  # a warning is not a failure
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    warn = checks["agent version old-profile"]
    assert warn["warning"] and warn["ok"]
    assert warn["detail"] == "quill 3.2.1 is newer than the [quill] profile was checked on (1.4)"
    human = d.cli("doctor").stdout
    assert "! agent version old-profile: quill 3.2.1 is newer" in human
    assert human.splitlines()[-1].endswith("1 warning(s), 0 failed")

    (home / "profiles.toml").write_text(QUILL + 'verified_version = "3.2.1"\n')
    d.stop()
    d.start()
    checks = {c["name"]: c for c in json.loads(d.cli("doctor", "--json").stdout)["checks"]}
    assert "agent version old-profile" not in checks
