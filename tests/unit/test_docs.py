"""The project's documents live in the project, and stay true to the code.

A clone has README.md, BUS_EVENT_SCHEMA.md and docs/, nothing outside the repository;
every relative link among them resolves (anchors included), and the reference pages
name every status, reason, profile key and route the code has.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from telepty.api.openapi import build_document
from telepty.delivery import model
from telepty.delivery.profiles import SubmitProfile
from telepty.relay.peers import UNKNOWN_PEER
from telepty.relay.service import PEER_UNAUTHORIZED, PEER_UNREACHABLE
from tests.helpers import ROOT

DOCS = ROOT / "docs"
PAGES = ["README.md", "BUS_EVENT_SCHEMA.md", *(f"docs/{p.name}" for p in sorted(DOCS.glob("*.md")))]
LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to dashes."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")}


def test_the_documents_exist() -> None:
    for name in ("README.md", "delivery.md", "api.md", "profiles.md", "security.md", "architecture.md"):
        assert (DOCS / name).is_file(), name


@pytest.mark.parametrize("page", PAGES)
def test_no_document_points_outside_the_repository(page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    assert "../shared" not in text and "SPEC.md" not in text and "DESIGN.md" not in text
    assert "SPEC §" not in text  # a spec a clone does not have


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves(page: str) -> None:
    source = ROOT / page
    for target in LINK_RE.findall(source.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (source.parent / path_part).resolve() if path_part else source
        assert dest.is_file(), f"{page}: link to {target!r}: {dest} does not exist"
        assert dest.is_relative_to(ROOT), f"{page}: link to {target!r} leaves the repository"
        if anchor:
            assert anchor in _anchors(dest), f"{page}: link to {target!r}: no such heading"


def test_tracked_files_never_reference_the_outside_spec() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    offenders = [name for name in tracked.stdout.splitlines()
                 if name.endswith((".md", ".py", ".toml", ".sh")) and (ROOT / name).is_file()
                 and "../shared/" in (ROOT / name).read_text(encoding="utf-8", errors="replace")
                 and name != "tests/unit/test_docs.py"]
    assert offenders == []


def test_delivery_page_names_every_status_and_reason() -> None:
    text = (DOCS / "delivery.md").read_text(encoding="utf-8")
    for status in model.DeliveryStatus:
        assert f"| `{status}` |" in text, status
    source = Path(model.__file__).read_text(encoding="utf-8")
    block = source[source.index("# -- reason codes"):source.index("# -- stages")]
    reasons = set(re.findall(r'^[A-Z_]+ = "([a-z_]+)"', block, re.M))
    reasons |= {PEER_UNREACHABLE, PEER_UNAUTHORIZED, UNKNOWN_PEER, "remote_delivery_lost"}
    # Never a record's reason: too_large refuses before a record exists; busy_timeout is unused.
    reasons -= {"busy_timeout", "too_large"}
    missing = sorted(r for r in reasons if f"| `{r}` |" not in text)
    assert missing == [], f"reasons without a row in docs/delivery.md: {missing}"
    for confirmed in ("screen", "echo", "unverified"):
        assert f"| `{confirmed}` |" in text


def test_profiles_page_names_every_profile_key() -> None:
    text = (DOCS / "profiles.md").read_text(encoding="utf-8")
    keys = [f.name for f in dataclasses.fields(SubmitProfile) if f.name != "name"]
    assert [k for k in keys if f"| `{k}` |" not in text] == []


def test_api_page_names_every_route() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = []
    for path, ops in build_document()["paths"].items():
        if path not in text and path.replace("{id}/", "{id}/") not in text:
            short = path.rsplit("/", 1)[-1]
            if not (path.startswith("/api/handoffs/{id}/") and f"…/{short}" in text):
                missing.append(path)
        assert ops
    assert missing == []
