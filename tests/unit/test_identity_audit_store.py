"""The audit log store: one row per new delivery, hashes not text, filters, retention."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from telepty.api.injects import parse_duration, parse_instant
from telepty.clock import to_iso
from telepty.delivery.model import Delivery, Origin
from telepty.errors import BadRequest
from telepty.store.audit import AuditTag, InjectAuditRepo
from telepty.store.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(tmp_path / "t.db")
    await d.open()
    yield d
    await d.close()


def make(session: str = "s1", prompt: bytes = b"secret plan", **kw: object) -> Delivery:
    return Delivery(session_id=session, target=session, prompt=prompt, origin=Origin.API, **kw)  # type: ignore[arg-type]


async def test_every_new_delivery_is_logged_once_with_hash_and_no_text(db: Database) -> None:
    audit = InjectAuditRepo(db)
    d = make(sender="boss", verified_sender="w1", spoofed=True, idempotency_key="k")
    await audit.append(d)
    await audit.append(d)  # an idempotent repeat returns the same delivery: no second row
    rows = await audit.query()
    assert len(rows) == 1
    row = rows[0]
    assert row["delivery_id"] == d.id and row["session_id"] == "s1"
    assert row["from"] == "boss" and row["verified_sender"] == "w1" and row["spoofed"] is True
    assert row["prompt_sha256"] == hashlib.sha256(b"secret plan").hexdigest()
    assert row["prompt_bytes"] == len(b"secret plan")
    assert "prompt" not in row


async def test_content_is_kept_only_when_asked(db: Database) -> None:
    audit = InjectAuditRepo(db, keep_content=True)
    await audit.append(make(prompt="héllo".encode()))
    assert (await audit.query())[0]["prompt"] == "héllo"


async def test_fanout_tag_and_filters(db: Database) -> None:
    audit = InjectAuditRepo(db, max_age_s=0)
    fanout = AuditTag("multicast", "fan_1")
    await audit.append(make("a", sender="orch", created_at=to_iso(1000.0)), fanout)
    await audit.append(make("b", verified_sender="orch", created_at=to_iso(2000.0)), fanout)
    await audit.append(make("c", sender="human", created_at=to_iso(3000.0)))
    rows = await audit.query()
    assert [r["session_id"] for r in rows] == ["c", "b", "a"]  # newest first
    assert [r["via"] for r in rows] == [None, "multicast", "multicast"]
    assert {r["batch_id"] for r in rows[1:]} == {"fan_1"}
    assert [r["session_id"] for r in await audit.query(sender="orch")] == ["b", "a"]
    assert [r["session_id"] for r in await audit.query(to="a")] == ["a"]
    assert [r["session_id"] for r in await audit.query(limit=1)] == ["c"]
    assert [r["session_id"] for r in await audit.query(until=to_iso(1500.0))] == ["a"]
    assert [r["session_id"] for r in await audit.query(since=to_iso(1500.0), until=to_iso(2500.0))] == ["b"]
    assert await audit.query(since=to_iso(10**10)) == []


async def test_retention_by_count_and_by_age(db: Database) -> None:
    audit = InjectAuditRepo(db, max_rows=3)
    for i in range(5):
        await audit.append(make(f"s{i}"))
    assert [r["session_id"] for r in await audit.query()] == ["s4", "s3", "s2"]

    aged = InjectAuditRepo(db, max_rows=0, max_age_s=3600)
    old = make("ancient")
    old.created_at = to_iso(1_000_000)
    await aged.append(old)  # trimmed by its own append: older than an hour
    await aged.append(make("fresh"))
    assert "ancient" not in [r["session_id"] for r in await aged.query()]


def test_durations_and_instants() -> None:
    assert parse_duration("90", "x") == 90 and parse_duration("15m", "x") == 900
    assert parse_duration("2h", "x") == 7200 and parse_duration("1w", "x") == 7 * 86400
    assert parse_instant("1h", "since", now=7200.0) == to_iso(3600.0)
    assert parse_instant("3600", "since") == to_iso(3600.0)
    assert parse_instant("1970-01-01T01:00:00Z", "since") == to_iso(3600.0)
    for bad in ("yesterday", "2025-01-01T00:00:00", "-5", "5y"):
        with pytest.raises(BadRequest):
            parse_instant(bad, "since")
