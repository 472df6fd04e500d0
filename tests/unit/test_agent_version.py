"""Which version an agent CLI is, from where it is installed (nothing is run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telepty.sessions.agent_version import installed_version, is_newer, version_key


def _package(root: Path, name: str, version: str, program: str) -> Path:
    pkg = root / "node_modules" / name
    path = pkg / program
    path.parent.mkdir(parents=True)
    path.write_text("")
    (pkg / "package.json").write_text(json.dumps({"name": name, "version": version}))
    return path


def test_npm_package_version(tmp_path: Path) -> None:
    script = _package(tmp_path, "@openai/codex", "0.171.0", "bin/codex.js")
    link = tmp_path / "node_modules" / ".bin" / "codex"
    link.parent.mkdir()
    link.symlink_to(script)
    assert installed_version(str(link), ["codex"]) == "0.171.0"
    # Another package's manifest on the way up is not the agent's.
    other = _package(tmp_path / "x", "left-pad", "1.0.0", "lib/deep/claude.js")
    assert installed_version(str(other), ["claude", "claude-code"]) is None


def test_native_versioned_install(tmp_path: Path) -> None:
    binary = tmp_path / ".local" / "share" / "claude" / "versions" / "2.1.197"
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    assert installed_version(str(binary), ["claude"]) == "2.1.197"


@pytest.mark.parametrize(("a", "b", "newer"), [
    ("2.1.198", "2.1.197", True), ("2.2", "2.1.197", True), ("2.1.197", "2.1.197", False),
    ("0.61.0", "0.61", False), ("0.9.0", "0.61.0", False), ("1.0.0-beta.1", "0.99", True),
    ("unknown", "1.0", False),
])
def test_is_newer(a: str, b: str, newer: bool) -> None:
    assert is_newer(a, b) is newer


def test_version_key() -> None:
    assert version_key("v2.1.197") == (2, 1, 197) and version_key("x") is None
