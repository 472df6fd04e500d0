"""The README's configuration table against the code: same variables, same defaults.

Every ``TELEPTY_*`` name the package mentions must have a row, every row must name a
variable the package mentions, and a default written as a literal (`30,180,600`)
must be the default: fed back through the same parser, it gives the default config.
"""

from __future__ import annotations

import re

import pytest

from telepty.config import Config
from telepty.pty.daemon_link import WrapTimings
from tests.helpers import ROOT

# A full name; a prefix mentioned in prose (``TELEPTY_WRAP_*``, ``TELEPTY_``) ends in "_".
NAME_RE = re.compile(r"TELEPTY_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_])")
ROW_RE = re.compile(r"^\|\s*`(TELEPTY_[A-Z0-9_]+)`\s*\|([^|]*)\|([^|]*)\|\s*$")
CODE_RE = re.compile(r"`([^`]*)`")
WRAP_VARS = {"TELEPTY_WRAP_HEARTBEAT", "TELEPTY_WRAP_BACKOFF_MAX"}


def names_in_code() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "telepty").rglob("*"):
        if path.suffix in {".py", ".toml"} and path.is_file():
            found.update(NAME_RE.findall(path.read_text(encoding="utf-8")))
    return found


def config_section() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Configuration\n")
    end = text.index("\n## ", start + 1)
    return text[start:end].splitlines()


def table_rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in config_section():
        m = ROW_RE.match(line)
        if m:
            name, default, meaning = m.group(1), m.group(2).strip(), m.group(3).strip()
            assert name not in rows, f"README configuration table lists {name} twice"
            rows[name] = (default, meaning)
    return rows


def test_the_table_has_one_row_per_variable() -> None:
    rows = table_rows()
    table_lines = [line for line in config_section() if line.startswith("| `TELEPTY")]
    assert len(table_lines) == len(rows), "every table row names exactly one variable, in backticks"
    assert len(rows) >= 25


def test_every_variable_in_the_code_is_in_the_readme_table() -> None:
    missing = sorted(names_in_code() - set(table_rows()))
    assert not missing, (f"TELEPTY_* variables used in telepty/ but missing from the README "
                         f"configuration table (add a row with the default): {missing}")


def test_every_variable_in_the_readme_table_is_used_by_the_code() -> None:
    stale = sorted(set(table_rows()) - names_in_code())
    assert not stale, f"README configuration table lists variables no code reads: {stale}"


def test_every_row_says_what_it_does() -> None:
    for name, (default, meaning) in table_rows().items():
        assert default, f"{name}: empty default cell"
        assert len(meaning) > 10, f"{name}: the meaning cell says too little"


def _literal_default(default: str) -> str | None:
    """The documented default as an env value: the first `code` span, or "" for empty."""
    if default == "empty":
        return ""
    m = CODE_RE.match(default)
    return m.group(1) if m else None


@pytest.mark.parametrize("name", sorted(table_rows()))
def test_a_documented_default_is_the_default(name: str) -> None:
    default, _ = table_rows()[name]
    literal = _literal_default(default)
    if literal is None:
        # Not a literal ("the hostname", "unset: …"): the code must not default it to a value.
        assert default.startswith(("unset", "the hostname")), (
            f"{name}: write the default as a `literal`, `empty`, the hostname, or unset: …")
        if default.startswith("unset"):
            field = name.removeprefix("TELEPTY_").lower()
            assert getattr(Config.from_env({}), field) is None, f"{name} has a default: document it"
        return
    if name in WRAP_VARS:
        assert WrapTimings.from_env({name: literal}) == WrapTimings.from_env({}), (
            f"{name}: the README says the default is {literal!r}, the code disagrees")
        return
    assert Config.from_env({name: literal}) == Config.from_env({}), (
        f"{name}: the README says the default is {literal!r}, the code disagrees")


def test_the_check_catches_a_wrong_default() -> None:
    """The comparison above is not vacuous: a different value gives a different config."""
    assert Config.from_env({"TELEPTY_QUIET_MS": "2001"}) != Config.from_env({})
    assert Config.from_env({"TELEPTY_RETRY_SCHEDULE": "30,180"}) != Config.from_env({})
