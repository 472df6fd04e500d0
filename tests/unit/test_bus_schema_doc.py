"""BUS_EVENT_SCHEMA.md stays true: every kind the daemon emits is documented there.

The kinds are found in the source itself (string literals passed to ``emit``,
``_emit``, ``make_event`` or a route's ``_publish``), so a new event cannot ship
undocumented just because someone forgot a list.
"""

from __future__ import annotations

import re

from telepty.bus.envelope import DAEMON_KINDS
from tests.helpers import ROOT

DOC = ROOT / "BUS_EVENT_SCHEMA.md"

_CALL = r"\b(?:emit|_emit|make_event|_publish)\(\s*(?:request\s*,\s*)?"
LITERAL_RE = re.compile(_CALL + r"""["']([A-Za-z0-9_.:-]+)["']""")
FSTRING_RE = re.compile(_CALL + r"""f["']([A-Za-z0-9_.:-]*)\{""")


def emitted_in_source() -> tuple[set[str], set[str]]:
    kinds: set[str] = set()
    prefixes: set[str] = set()
    for path in (ROOT / "telepty").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        kinds.update(LITERAL_RE.findall(text))
        prefixes.update(FSTRING_RE.findall(text))
    return kinds, prefixes


def documented() -> set[str]:
    """Kinds named in a section heading (``### `kind```)."""
    out: set[str] = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            out.update(re.findall(r"`([A-Za-z0-9_.:-]+)`", line))
    return out


def test_the_scan_finds_the_known_emitters() -> None:
    kinds, _ = emitted_in_source()
    # If these disappear, the scan broke, not the daemon.
    assert {"inject_written", "delivery.failed", "session_register", "message_routed"} <= kinds


def test_every_emitted_kind_is_documented_and_reserved() -> None:
    kinds, prefixes = emitted_in_source()
    docs = documented()
    assert kinds - docs == set(), "emitted but not documented in BUS_EVENT_SCHEMA.md"
    assert kinds - DAEMON_KINDS == set(), "emitted but publishers could forge it (add to DAEMON_KINDS)"
    for prefix in prefixes:  # f"handoff.{status}": every reserved kind with that prefix is documented
        family = {k for k in DAEMON_KINDS if k.startswith(prefix)}
        assert family, f"f-string kinds {prefix!r}… have no entry in DAEMON_KINDS"
        assert family <= docs


def test_every_reserved_kind_is_documented() -> None:
    assert DAEMON_KINDS - documented() == set()


def test_the_doc_covers_the_contract() -> None:
    text = DOC.read_text(encoding="utf-8")
    for needle in ("version", "message_id", "source_host", "`@host`", "legacy", "`type`",
                   "TELEPTY_BUS_RETENTION_COUNT", "TELEPTY_BUS_RETENTION_SECONDS", "x-telepty-token",
                   "prompt_sha1", "회신 불필요", "스레드 종료", "since=", "kinds="):
        assert needle in text, needle
