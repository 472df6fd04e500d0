"""Submit profiles: shipped defaults, the user's override file, and bad files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from telepty.config import ConfigError
from telepty.delivery.profiles import load_profiles
from telepty.sessions import agents
from telepty.sessions.agents import detect_agent


def test_shipped_profiles() -> None:
    p = load_profiles(None)
    assert {"claude", "codex", "gemini", "aider", "default"} <= set(p.names())
    settle = {n: p.profile_for(n).settle_ms for n in ("claude", "codex", "gemini", "aider", "default")}
    assert settle == {"claude": 600, "codex": 300, "gemini": 400, "aider": 200, "default": 300}
    claude = p.profile_for("claude")
    assert claude.submit_keys == ("Enter",) and claude.submit_bytes == b"\r"
    assert claude.rescue == (("Enter",), ("Escape", "Enter"))  # Escape closes a picker
    assert any(re.search(pat, "[Pasted text #1 +42 lines]") for pat in claude.placeholder_patterns)
    assert claude.dialog_patterns and claude.busy_patterns


def test_unknown_agents_fall_back_to_default() -> None:
    p = load_profiles(None)
    assert p.profile_for("other").name == "default"
    assert p.profile_for(None).name == "default"
    assert p.profile_for("vim").name == "default"


def test_missing_user_file_is_fine(tmp_path: Path) -> None:
    assert load_profiles(tmp_path / "nope.toml").profile_for("codex").settle_ms == 300


def test_user_file_overrides_only_the_keys_it_names(tmp_path: Path) -> None:
    f = tmp_path / "profiles.toml"
    f.write_text(
        '[claude]\nsettle_ms = 1500\nrescue = [["Escape", "Enter"]]\n'
        '[cursor]\nsettle_ms = 50\nsubmit_keys = ["C-m"]\n'
    )
    p = load_profiles(f)
    claude = p.profile_for("claude")
    assert claude.settle_ms == 1500 and claude.rescue == (("Escape", "Enter"),)
    assert claude.placeholder_patterns == load_profiles(None).profile_for("claude").placeholder_patterns
    cursor = p.profile_for("cursor")  # a new profile starts from [default]
    assert cursor.settle_ms == 50 and cursor.submit_keys == ("C-m",) and cursor.submit_bytes == b"\r"


def test_overrides_and_the_global_settle_override(tmp_path: Path) -> None:
    p = load_profiles(None, {"codex": {"settle_ms": 10, "submit_bytes": "\r\n"}})
    assert p.profile_for("codex").settle_ms == 10 and p.profile_for("codex").submit_bytes == b"\r\n"
    tiny = load_profiles(None, settle_ms_override=0)
    assert {tiny.profile_for(n).settle_ms for n in tiny.names()} == {0}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[claude\nsettle_ms = 1", "invalid TOML"),
        ("[claude]\nsettle = 100\n", "unknown key(s) settle"),
        ("[claude]\nsettle_ms = 'slow'\n", "settle_ms"),
        ("[claude]\nsettle_ms = -1\n", "settle_ms"),
        ("[claude]\nsubmit_keys = 'Enter'\n", "submit_keys"),
        ("[claude]\nbusy_patterns = ['(unclosed']\n", "bad regex"),
        ("[claude]\nrescue = ['Enter']\n", "rescue"),
        ("settle_ms = 5\n", "must be a table"),
        ("[claude]\nclear_keys = ['Ctrl+U']\n", "unknown key name"),
        ("[claude]\nprograms = ['/usr/bin/claude']\n", "program names"),
        ("[claude]\nprograms = 'claude'\n", "program names"),
        ("[claude]\nverified_version = 'latest'\n", "verified_version"),
        ("[default]\nprograms = ['x']\n", "[default] is for programs that are no known agent"),
        ("[other]\nverified_version = '1.0'\n", "[other] is for programs that are no known agent"),
        ("['Open Code']\nsettle_ms = 1\n", "not a usable agent name"),
    ],
)
def test_bad_user_file_names_the_file(tmp_path: Path, content: str, needle: str) -> None:
    f = tmp_path / "profiles.toml"
    f.write_text(content)
    with pytest.raises(ConfigError) as e:
        load_profiles(f)
    assert str(f) in str(e.value) and needle in str(e.value)


def test_bad_override_dict_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_profiles(None, {"claude": {"nope": 1}})


def test_shipped_profiles_name_their_programs_and_checked_versions() -> None:
    p = load_profiles(None)
    assert p.profile_for("claude").programs == ("claude", "claude-code")
    assert p.profile_for("codex").verified_version and p.profile_for("gemini").verified_version
    assert p.profile_for("default").programs == () and p.profile_for("default").clear_keys == ("C-u",)
    assert p.agent_names() == ["aider", "claude", "codex", "gemini"]


def test_a_new_agent_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table telepty never heard of is an agent: its own name is its program unless it
    says otherwise, and it does not inherit another program's name or version."""
    monkeypatch.setattr(agents, "_programs", None)  # what this test teaches detection stays here
    f = tmp_path / "profiles.toml"
    f.write_text('[opencode]\ncomposer_patterns = ["^> "]\n[myagent]\nprograms = ["my-agent-cli"]\n')
    p = load_profiles(f)
    assert p.profile_for("opencode").programs == () and p.profile_for("opencode").verified_version is None
    assert p.profile_for("opencode").clear_keys == ("C-u",)  # from [default]
    assert p.unknown_agent("opencode") is None and p.unknown_agent("other") is None
    assert "add a [cursor] table" in (p.unknown_agent("cursor") or "")
    assert p.unknown_agent("default") is not None
    assert detect_agent("opencode --tui") == "opencode"
    assert detect_agent("npx my-agent-cli@latest") == "myagent"
