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
