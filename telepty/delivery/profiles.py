"""Submit profiles: per agent CLI, how long to let a paste settle and how to submit it.

Profiles are data (``telepty/data/profiles.toml``, overridable in
``$TELEPTY_HOME/profiles.toml``) because agent TUIs change monthly: a new footer or
placeholder should be a one-line edit for the user, not a release.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from telepty.config import ConfigError
from telepty.delivery.keys import is_key_name
from telepty.sessions.agents import AGENT_NAME_RE, OTHER, register_programs

DEFAULT_PROFILE = "default"
MAX_RESCUE_STEPS = 2  # a rescue is a nudge, not a retry loop: more would risk a double submit
DEFAULT_CONFIRM_MS = 1500

_PATTERN_KEYS = (
    "busy_patterns", "idle_patterns", "composer_patterns", "dialog_patterns", "placeholder_patterns",
)
# Keys that describe one program, so a new table does not inherit them from [default].
_OWN_KEYS = ("programs", "verified_version")
# [default] is every unknown program's; [other], if written, is for sessions of kind other.
_NOT_AN_AGENT = (DEFAULT_PROFILE, OTHER)
_PROGRAM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")
_VERSION_RE = re.compile(r"\d+(?:\.\d+){0,3}\Z")


@dataclass(frozen=True)
class SubmitProfile:
    name: str
    settle_ms: int
    submit_keys: tuple[str, ...] = ("Enter",)  # tmux key names, sent as separate key events
    submit_bytes: bytes = b"\r"  # what a PTY transport writes to submit
    busy_patterns: tuple[str, ...] = ()
    idle_patterns: tuple[str, ...] = ()
    composer_patterns: tuple[str, ...] = ()
    dialog_patterns: tuple[str, ...] = ()
    placeholder_patterns: tuple[str, ...] = ()
    rescue: tuple[tuple[str, ...], ...] = ()  # each step: tmux key names
    clear_keys: tuple[str, ...] = ("C-u",)  # tmux key names that empty the input line/box
    confirm_ms: int = DEFAULT_CONFIRM_MS  # how long the screen may take to show a submission
    programs: tuple[str, ...] = ()  # program names that run this agent (detection)
    verified_version: str | None = None  # the agent version these settings were checked on

    @property
    def reads_screen(self) -> bool:
        """Can this profile tell a submitted prompt from a stuck one? (It knows the composer.)"""
        return bool(self.composer_patterns)

    def to_public(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["submit_bytes"] = self.submit_bytes.decode("utf-8", errors="replace")
        out["rescue"] = [list(step) for step in self.rescue]
        return out


_KEYS = frozenset(f.name for f in fields(SubmitProfile)) - {"name"}


class SubmitProfiles:
    """The loaded set; ``profile_for`` never fails, because every agent gets *a* profile."""

    def __init__(self, profiles: Mapping[str, SubmitProfile]) -> None:
        if DEFAULT_PROFILE not in profiles:
            raise ConfigError("profiles must include a [default] table")
        self._profiles = dict(profiles)

    def profile_for(self, agent: str | None) -> SubmitProfile:
        return self._profiles.get(agent or DEFAULT_PROFILE) or self._profiles[DEFAULT_PROFILE]

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def agent_names(self) -> list[str]:
        """The agent kinds a session may be registered with (``other`` aside)."""
        return sorted(n for n in self._profiles if n not in _NOT_AN_AGENT)

    def unknown_agent(self, agent: str | None) -> str | None:
        """Why ``agent`` cannot be a session's agent kind, or None if it can."""
        if agent is None or agent == OTHER or agent in self.agent_names():
            return None
        return (f"no profile is named {agent!r} (known: {', '.join(self.agent_names())}, "
                f"{OTHER}); add a [{agent}] table to profiles.toml in TELEPTY_HOME")


def load_profiles(
    path: Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    settle_ms_override: int | None = None,
) -> SubmitProfiles:
    """Shipped profiles, then the user's file at ``path`` (if it exists), then ``overrides``.

    Each layer changes only the keys it names. ``settle_ms_override`` replaces every
    profile's settle delay (tests use tiny ones).
    """
    shipped_text = resources.files("telepty").joinpath("data/profiles.toml").read_text("utf-8")
    tables: dict[str, dict[str, Any]] = {}
    _merge(tables, _parse_toml(shipped_text, "telepty/data/profiles.toml"), "telepty/data/profiles.toml")
    if path is not None and path.is_file():
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read profiles: {exc}") from exc
        _merge(tables, _parse_toml(text, str(path)), str(path))
    if overrides:
        _merge(tables, {k: dict(v) for k, v in overrides.items()}, "profile overrides")
    profiles = {name: _build(name, values) for name, values in tables.items()}
    if settle_ms_override is not None:
        profiles = {n: replace(p, settle_ms=settle_ms_override) for n, p in profiles.items()}
    # Detection runs where the profiles are not at hand (transports, pane discovery):
    # loading them is what tells it which programs are agents.
    register_programs({n: p.programs for n, p in profiles.items() if n not in _NOT_AN_AGENT})
    return SubmitProfiles(profiles)


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc


def _merge(tables: dict[str, dict[str, Any]], layer: Mapping[str, Any], source: str) -> None:
    for name, values in layer.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table of profile settings")
        if name != DEFAULT_PROFILE and not AGENT_NAME_RE.match(name):
            raise ConfigError(
                f"{source}: [{name}] is not a usable agent name: lower-case a-z, 0-9, _ and -, "
                "1-32 characters, starting with a letter"
            )
        if name in _NOT_AN_AGENT and any(k in values for k in _OWN_KEYS):
            raise ConfigError(f"{source}: [{name}] is for programs that are no known agent; "
                              f"{' and '.join(_OWN_KEYS)} belong in an agent's own table")
        unknown = sorted(set(values) - _KEYS)
        if unknown:
            raise ConfigError(
                f"{source}: [{name}] has unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_KEYS))}"
            )
        for key, value in values.items():
            _check(source, name, key, value)
        base = tables.get(name) or {k: v for k, v in tables.get(DEFAULT_PROFILE, {}).items()
                                     if k not in _OWN_KEYS}
        tables[name] = {**base, **values}


def _check(source: str, name: str, key: str, value: object) -> None:
    where = f"{source}: [{name}] {key}"
    if key in ("settle_ms", "confirm_ms"):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 60_000:
            raise ConfigError(f"{where} must be an integer from 0 to 60000")
    elif key == "submit_bytes":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string such as \"\\r\"")
    elif key == "verified_version":
        if not isinstance(value, str) or not _VERSION_RE.match(value):
            raise ConfigError(f'{where} must be a version such as "2.1.197"')
    elif key == "programs":
        if not _str_list(value) or not all(_PROGRAM_RE.match(v) for v in value):  # type: ignore[union-attr]
            raise ConfigError(f'{where} must be a list of program names such as ["opencode"] '
                              "(no paths)")
    elif key == "rescue":
        if not isinstance(value, list) or not all(_str_list(step) and step for step in value):
            raise ConfigError(f'{where} must be a list of key lists, e.g. [["Escape", "Enter"]]')
        if len(value) > MAX_RESCUE_STEPS:
            raise ConfigError(f"{where} has {len(value)} steps; at most {MAX_RESCUE_STEPS} are allowed")
        _check_key_names(where, [k for step in value for k in step])
    else:
        if not _str_list(value):
            raise ConfigError(f"{where} must be a list of strings")
        if key in ("submit_keys", "clear_keys"):
            _check_key_names(where, value)  # type: ignore[arg-type]
        if key in _PATTERN_KEYS:
            for pattern in value:  # type: ignore[union-attr]
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(f"{where}: bad regex {pattern!r}: {exc}") from exc


def _check_key_names(where: str, keys: list[str]) -> None:
    bad = [k for k in keys if not is_key_name(k)]
    if bad:
        raise ConfigError(f"{where}: unknown key name(s) {', '.join(map(repr, bad))}")


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _build(name: str, values: Mapping[str, Any]) -> SubmitProfile:
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key == "submit_bytes":
            kwargs[key] = value.encode("utf-8")
        elif key == "rescue":
            kwargs[key] = tuple(tuple(step) for step in value)
        elif key in ("settle_ms", "confirm_ms", "verified_version"):
            kwargs[key] = value
        else:
            kwargs[key] = tuple(value)
    kwargs.setdefault("settle_ms", 300)
    return SubmitProfile(name=name, **kwargs)
