"""The database thread: one job at a time, in order, results and errors to the caller."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from telepty.store.db import Database


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Database(tmp_path / "t.db")
    await d.open()
    yield d
    await d.close()


async def test_jobs_run_one_at_a_time_in_submission_order_on_one_thread(db: Database) -> None:
    seen: list[tuple[int, str]] = []
    running = 0
    overlapped = False

    def job(i: int) -> int:
        nonlocal running, overlapped
        running += 1
        overlapped = overlapped or running > 1
        seen.append((i, threading.current_thread().name))
        running -= 1
        return i * 10

    futures = [db.run_soon(lambda _c, i=i: job(i)) for i in range(50)]
    assert await asyncio.gather(*futures) == [i * 10 for i in range(50)]
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"telepty-db"}
    assert not overlapped


async def test_an_error_reaches_the_caller_and_the_thread_goes_on(db: Database) -> None:
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await db.run(lambda c: c.execute("SELECT * FROM nowhere").fetchall())
    assert await db.run(lambda c: c.execute("SELECT 7").fetchone()[0]) == 7


async def test_a_cancelled_caller_does_not_undo_or_break_the_job(db: Database) -> None:
    gate = threading.Event()

    def slow(c: sqlite3.Connection) -> None:
        gate.wait(5)
        c.execute("CREATE TABLE done_anyway (x)")

    task = asyncio.ensure_future(db.run(slow))
    await asyncio.sleep(0)
    task.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    tables = await db.run(lambda c: [r[0] for r in c.execute("SELECT name FROM sqlite_master")])
    assert "done_anyway" in tables  # it ran to completion; only the answer was dropped


def test_sync_callers_from_outside_the_loop(tmp_path: Path) -> None:
    d = Database(tmp_path / "s.db")
    assert d.open_sync() >= 1
    assert d.run_sync(lambda c: c.execute("SELECT 1 + 1").fetchone()[0]) == 2
    with pytest.raises(sqlite3.OperationalError):
        d.run_sync(lambda c: c.execute("SELEC").fetchall())
    thread = d._thread
    d.close_sync()
    assert thread is not None and not thread.is_alive()


async def test_close_finishes_queued_work_and_stops_the_thread(tmp_path: Path) -> None:
    d = Database(tmp_path / "c.db")
    await d.open()
    pending = d.run_soon(lambda c: c.execute("CREATE TABLE late (x)"))
    thread = d._thread
    await d.close()
    assert pending.done() and pending.exception() is None
    assert thread is not None and not thread.is_alive()
    with pytest.raises(RuntimeError, match="not open"):
        await d.run(lambda c: None)


async def test_an_idle_database_runs_a_short_write_right_here(db: Database) -> None:
    await db.run(lambda c: c.execute("CREATE TABLE t (x)"))
    ran_on: list[str] = []

    def write(c: sqlite3.Connection) -> int:
        ran_on.append(threading.current_thread().name)
        return c.execute("INSERT INTO t VALUES (1) RETURNING rowid").fetchone()[0]

    fut = db.run_here_if_idle(write)
    assert fut.done() and fut.result() == 1  # committed before the call returned
    assert ran_on == [threading.current_thread().name]
    failed = db.run_here_if_idle(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"))
    assert isinstance(failed.exception(), sqlite3.OperationalError)


async def test_a_busy_database_queues_it_behind_what_was_first(db: Database) -> None:
    await db.run(lambda c: c.execute("CREATE TABLE t (x)"))
    gate = threading.Event()
    order: list[str] = []

    def first(c: sqlite3.Connection) -> None:
        gate.wait(5)
        order.append("first")

    def second(c: sqlite3.Connection) -> str:
        order.append("second")
        return threading.current_thread().name

    blocked = db.run_soon(first)
    fut = db.run_here_if_idle(second)
    assert not fut.done() and order == []
    gate.set()
    assert await fut == "telepty-db"
    await blocked
    assert order == ["first", "second"]


async def test_checkpoints_run_on_the_thread_not_on_every_commit(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from telepty.store import db as db_module

    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 5)
    where: list[str] = []
    real = db._checkpoint

    def checkpoint() -> None:
        where.append(threading.current_thread().name)
        real()

    monkeypatch.setattr(db, "_checkpoint", checkpoint)
    assert await db.run(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 0
    await db.run(lambda c: c.execute("CREATE TABLE t (x)"))
    for i in range(12):
        await db.run_here_if_idle(lambda c, i=i: c.execute("INSERT INTO t VALUES (?)", (i,)))
    await db.run(lambda c: None)  # whatever checkpoint was queued has run by now
    assert len(where) >= 2 and set(where) == {"telepty-db"}
    assert await db.run(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 12
