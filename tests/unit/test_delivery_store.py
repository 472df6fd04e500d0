"""DeliveryRepo against real SQLite: seq, idempotency, listing, resume order, byte-exact prompts."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from telepty.delivery.model import Delivery, DeliveryStatus, Origin
from telepty.store import migrations
from telepty.store.db import Database
from telepty.store.deliveries import DeliveryRepo


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[DeliveryRepo]:
    db = Database(tmp_path / "t.db")
    await db.open()
    yield DeliveryRepo(db)
    await db.close()


def make(session: str = "s1", prompt: bytes = b"hi", **kw: object) -> Delivery:
    return Delivery(session_id=session, target=session, prompt=prompt, origin=Origin.API, **kw)  # type: ignore[arg-type]


async def test_insert_assigns_increasing_seq_and_get_round_trips(repo: DeliveryRepo) -> None:
    a = await repo.insert(make(sender="me", reply_expected=True, quiet_ms=5))
    b = await repo.insert(make())
    assert (a.seq, b.seq) == (1, 2)
    got = await repo.get(a.id)
    assert got == a
    assert await repo.get("dlv_nope") is None


def mixed_utf8(size: int) -> bytes:
    rng = random.Random(5)
    alphabet = "aZ09 \n\t—é한국어✓\U0001f600"
    out = "".join(rng.choice(alphabet) for _ in range(size // 2))
    data = out.encode()
    return data[: size - 8].decode("utf-8", errors="ignore").encode()


async def test_prompt_bytes_round_trip_exactly(repo: DeliveryRepo) -> None:
    prompt = mixed_utf8(1024 * 1024)
    assert len(prompt) > 1_000_000
    d = await repo.insert(make(prompt=prompt))
    got = await repo.get(d.id)
    assert got is not None and got.prompt == prompt and got.prompt_sha256 == d.prompt_sha256


async def test_update_changes_only_mutable_fields(repo: DeliveryRepo) -> None:
    d = await repo.insert(make())
    d.status = DeliveryStatus.FAILED
    d.reason, d.detail, d.stage, d.attempts = "pane_dead", "gone", "paste", 2
    d.evidence = {"tail_after": "x"}
    d.target = "changed-after-the-fact"
    await repo.update(d)
    got = await repo.get(d.id)
    assert got is not None
    assert got.status is DeliveryStatus.FAILED
    assert (got.reason, got.stage, got.attempts) == ("pane_dead", "paste", 2)
    assert got.evidence == {"tail_after": "x"}
    assert got.target == "s1"


async def test_idempotency_key_returns_the_first_row(repo: DeliveryRepo) -> None:
    first = await repo.insert(make(idempotency_key="k1"))
    again = await repo.insert(make(prompt=b"other", idempotency_key="k1"))
    assert again.id == first.id and again.prompt == b"hi"
    assert (await repo.by_idempotency_key("k1")).id == first.id  # type: ignore[union-attr]
    assert await repo.by_idempotency_key("k2") is None
    assert len(await repo.list()) == 1


async def test_list_newest_first_with_filters(repo: DeliveryRepo) -> None:
    ids = [(await repo.insert(make(session=s))).id for s in ("s1", "s2", "s1")]
    done = await repo.get(ids[0])
    assert done is not None
    done.status = DeliveryStatus.DELIVERED
    await repo.update(done)
    assert [d.id for d in await repo.list()] == ids[::-1]
    assert [d.id for d in await repo.list(session="s1")] == [ids[2], ids[0]]
    assert [d.id for d in await repo.list(status="delivered")] == [ids[0]]
    assert [d.id for d in await repo.list(session="s1", status="queued")] == [ids[2]]
    assert len(await repo.list(limit=1)) == 1


async def test_unfinished_is_oldest_first_and_skips_final(repo: DeliveryRepo) -> None:
    statuses = ["queued", "delivered", "retrying", "failed", "delivering", "cancelled"]
    rows = []
    for st in statuses:
        rows.append(await repo.insert(make(status=DeliveryStatus(st))))
    assert [d.id for d in await repo.unfinished()] == [rows[0].id, rows[2].id, rows[4].id]


def test_migration_3_upgrades_a_version_2_database(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.executescript(migrations.MIGRATIONS[0] + ";" + migrations.MIGRATIONS[1])
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO deliveries (id, session_id, target, prompt, origin, status, created_at, "
        "updated_at, seq) VALUES ('dlv_old', 's', 's', x'6869', 'api', 'queued', 'a', 'a', 1)"
    )
    assert migrations.migrate(conn) >= 3
    row = conn.execute("SELECT stage, evidence FROM deliveries WHERE id = 'dlv_old'").fetchone()
    assert row == (None, "{}")
