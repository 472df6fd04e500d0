"""Options several commands share, checked where they are parsed.

A bad ``--timeout`` is a usage error in the CLI's words (``--timeout must be …``),
found before anything is sent, instead of the daemon's words about a JSON field.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from typing import Any

from telepty.cli.client import EXIT_USAGE, CliError
from telepty.delivery.limits import MAX_QUIET_MS
from telepty.sessions.agent_names import AGENT_KINDS, AGENT_NAME_RE, OTHER, agent_name_arg

# What --agent takes: a profile name (shipped, or one added to profiles.toml) or other.
AGENT_HELP = (f"agent kind: a profile name ({', '.join(AGENT_KINDS)}, or one you added to "
              "profiles.toml) or other; default: detected from CMD")
WAIT_TIMEOUT_S = 120.0  # --wait's default: long enough for a busy agent's first retry


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def int_between(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected {lo} to {hi}, got {value}")
        return value

    parse.__name__ = "number"  # argparse names the type in its messages
    return parse


def add_quiet_ms(p: argparse.ArgumentParser, what: str = "injecting") -> None:
    p.add_argument("--quiet-ms", type=int_between(0, MAX_QUIET_MS), metavar="MS",
                   help=f"how long the screen must stay unchanged before {what} "
                   "(default: the daemon's TELEPTY_QUIET_MS)")


def add_wait(p: argparse.ArgumentParser, what: str = "the delivery is final") -> None:
    p.add_argument("--wait", action="store_true",
                   help=f"wait until {what}, showing its status, attempt and next try")
    p.add_argument("--timeout", type=seconds, default=WAIT_TIMEOUT_S, metavar="SECONDS",
                   help="with --wait: stop waiting after this long; the delivery itself goes on "
                   "(default: %(default)g)")


class AgentChoices:
    """What ``--agent`` offers (the shipped kinds, for completion) and what it accepts
    (any profile name: whether the daemon has that profile is the daemon's to say)."""

    def __iter__(self) -> Iterator[str]:
        return iter((*AGENT_KINDS, OTHER))

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and (value == OTHER or bool(AGENT_NAME_RE.match(value)))


def add_agent(p: argparse.ArgumentParser, help_text: str = AGENT_HELP) -> None:
    """``--agent NAME``, its shape checked where it is parsed."""
    p.add_argument("--agent", type=agent_name_arg, choices=AgentChoices(), metavar="NAME",
                   help=help_text)


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print JSON for scripts (errors too: {error, message, hint, exit})")


def non_blank(prompt: str) -> str:
    """A prompt with something in it: an empty or whitespace-only one is refused, unsent."""
    if not prompt.strip():
        what = "empty" if not prompt else "only whitespace"
        raise CliError(f"the prompt is {what}: there is nothing to deliver", "empty_prompt",
                       exit_code=EXIT_USAGE)
    return prompt


def session_arg(p: argparse.ArgumentParser, name: str, help: str, **kw: Any) -> argparse.Action:
    """An argument that names a session: shell completion offers the session ids."""
    if name.startswith("-"):
        kw.setdefault("metavar", "SESSION")
    action = p.add_argument(name, help=help, **kw)
    action.completes = "sessions"  # type: ignore[attr-defined]
    return action
