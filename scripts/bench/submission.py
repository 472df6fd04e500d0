#!/usr/bin/env python3
"""Confirmed-submission rate and latency per agent stand-in, through a real daemon.

Each row runs one stand-in (tests/programs/standin_*.py) in a real tmux pane, behind its
own `telepty daemon` process with the *shipped* profiles (or the override the row
names), and sends N prompts one at a time with `wait: true`. Per row:

  delivered     records that ended `delivered` (confirmed by the screen)
  rescued       of those, how many needed the profile's rescue step
  failed        records that ended `failed`, by reason
  false         delivered records whose prompt is not in the stand-in's own log exactly
                once (the number that must be 0)
  p50/p95       request → the daemon's confirmed `delivered` answer (ms)
  real p50      request → the moment the stand-in itself logged the submission (ms)

Rows: the paste-burst stand-in (Enter within 120 ms of a paste becomes a newline, like
Codex) and the render-settle stand-in (Enter within 300 ms of a paste is swallowed, like
Claude Code), each with the shipped settle delay and with settle 0 (where only the
rescue step saves the prompt); the permission-dialog stand-in (every 10th prompt opens a
dialog; the bench answers it with `POST /keys` once it sees a prompt waiting on it);
and the stand-in that exits to a shell after 80% of the prompts (the rest must fail
`agent_exited`, and the shell must never run one).

The quiet guard is 100 ms here (the daemon default is 2000 ms, which would only add a
constant 2 s to every row).

Run: .venv/bin/python scripts/bench/submission.py [--n 200] [--rescue-n 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import pct, start_daemon

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "tests" / "programs"


@dataclass
class Row:
    name: str
    program: str
    agent: str
    args: list[str]
    profiles: str = ""
    kind: str = "plain"  # plain | dialog | exit
    rescue_row: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    canaries_hit: int = 0




async def tmux(sock: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec("tmux", "-S", sock, *args, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"tmux {args}: {err.decode()}")
    return out.decode()




async def screen(sock: str, pane: str) -> str:
    return await tmux(sock, "capture-pane", "-p", "-t", pane)


async def until(pred: Any, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not await pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def standin_cmd(row: Row, out: Path, extra: list[str]) -> str:
    argv = [sys.executable, str(PROGRAMS / row.program), "--out", str(out), *row.args, *extra]
    return f"exec -a {row.agent} {shlex.join(argv)}"


async def run_row(row: Row, n: int, sock: str, tmp: Path, index: int) -> None:
    home = tmp / f"home{index}"
    home.mkdir()
    if row.profiles:
        (home / "profiles.toml").write_text(row.profiles)
    out = tmp / f"standin{index}.jsonl"
    exit_file = tmp / f"exit{index}"
    if row.kind == "exit":
        shell = "env PS1='$ ' HISTFILE=/dev/null bash --norc --noprofile -i"
        pane = (await tmux(sock, "new-window", "-d", "-P", "-F", "#{pane_id}", shell)).strip()
        await until(lambda: _ends_with(sock, pane, "$"), 10, "shell")
        await tmux(sock, "send-keys", "-t", pane, "-l",
                   "(" + standin_cmd(row, out, ["--exit-file", str(exit_file)]) + ")")
        await tmux(sock, "send-keys", "-t", pane, "Enter")
    else:
        pane = (await tmux(sock, "new-window", "-d", "-P", "-F", "#{pane_id}",
                           f"bash -c {shlex.quote(standin_cmd(row, out, []))}")).strip()
    marker = "Ask Codex" if row.agent == "codex" else "for shortcuts"
    await until(lambda: _contains(sock, pane, marker), 10, f"{row.name} ready")
    proc, url, token = start_daemon(home, TELEPTY_QUIET_MS="100",
                                     TELEPTY_RETRY_SCHEDULE=",".join(["0.1"] * 100))
    try:
        async with aiohttp.ClientSession(headers={"x-telepty-token": token}) as http:
            resp = await http.post(f"{url}/api/sessions/register", json={
                "type": "pane", "session_id": "s", "tmux_pane": pane, "tmux_socket": sock,
                "agent": row.agent})
            assert resp.status == 201, await resp.text()
            stop = asyncio.Event()
            helper = (asyncio.create_task(answer_dialogs(http, url, out, stop))
                      if row.kind == "dialog" else None)
            exit_at = int(n * 0.8) if row.kind == "exit" else -1
            for i in range(n):
                if i == exit_at:
                    exit_file.touch()
                    await until(lambda: _ends_with(sock, pane, "$"), 10, "agent exit")
                text = (f"touch {tmp}/pwned-{index}-{i}" if i >= exit_at >= 0
                        else f"#{i:03d} {row.name} prompt " + "word " * (i % 17)
                        + ("\nwith a second line" if i % 5 == 0 else ""))
                t0 = time.time()
                async with http.post(f"{url}/api/sessions/s/inject",
                                     json={"prompt": text, "wait": True, "timeout": 120}) as r:
                    body = await r.json()
                row.results.append({"text": text, "t0": t0, "t1": time.time(), **body})
            stop.set()
            if helper is not None:
                await helper
    finally:
        proc.terminate()
        proc.wait(10)
    row.log = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    row.canaries_hit = sum(1 for i in range(n) if (tmp / f"pwned-{index}-{i}").exists())


async def _contains(sock: str, pane: str, needle: str) -> bool:
    return needle in await screen(sock, pane)


async def _ends_with(sock: str, pane: str, suffix: str) -> bool:
    return (await screen(sock, pane)).rstrip().endswith(suffix)


async def answer_dialogs(http: aiohttp.ClientSession, url: str, out: Path, stop: asyncio.Event) -> None:
    answered = 0
    while not stop.is_set():
        async with http.get(f"{url}/api/deliveries", params={"session": "s", "status": "retrying"}) as r:
            waiting = [d for d in await r.json() if d["reason"] == "blocked_dialog"]
        shown = sum(1 for line in out.read_text().splitlines() if '"dialog_shown"' in line)
        if waiting and shown > answered:
            async with http.post(f"{url}/api/sessions/s/keys", json={"keys": ["Enter"], "wait": True}) as r:
                body = await r.json()
                assert body["status"] == "delivered", body
            answered += 1
        await asyncio.sleep(0.05)


def summarise(row: Row) -> dict[str, Any]:
    submits: dict[str, list[float]] = {}
    for e in row.log:
        if "n" in e:
            submits.setdefault(e["text"].rstrip("\n"), []).append(e["t"])
    delivered = [r for r in row.results if r.get("status") == "delivered"]
    failed = Counter(r.get("reason") for r in row.results if r.get("status") == "failed")
    false = sum(1 for r in delivered if len(submits.get(r["text"], [])) != 1)
    false += sum(1 for r in row.results if r.get("status") == "failed" and submits.get(r["text"]))
    lat = [(r["t1"] - r["t0"]) * 1000 for r in delivered]
    real = [(submits[r["text"]][0] - r["t0"]) * 1000 for r in delivered if submits.get(r["text"])]
    return {
        "n": len(row.results),
        "delivered": len(delivered),
        "rescued": sum(1 for r in delivered if r["evidence"].get("rescued")),
        "failed": dict(failed),
        "false": false + row.canaries_hit,
        "p50": pct(lat, 50), "p95": pct(lat, 95), "real_p50": pct(real, 50),
        "dialogs": sum(1 for e in row.log if e.get("event") == "dialog_shown"),
        "corrupted": sum(1 for e in row.log if e.get("event") == "dialog_corrupted"),
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rescue-n", type=int, default=40, help="prompts for the settle-0 rows (slow)")
    ap.add_argument("--serial", action="store_true", help="one row at a time (default: all at once)")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        raise SystemExit("tmux is required")
    rows = [
        Row("paste-burst 120 ms (codex profile, settle 300)", "standin_paste_burst.py", "codex",
            ["--burst-ms", "120"]),
        Row("paste-burst 120 ms, settle 0 (rescue)", "standin_paste_burst.py", "codex",
            ["--burst-ms", "120"], profiles="[codex]\nsettle_ms = 0\n", rescue_row=True),
        Row("render-settle 300 ms (claude profile, settle 600)", "standin_render_settle.py", "claude",
            ["--settle-ms", "300", "--placeholder-lines", "3"]),
        Row("render-settle 300 ms, settle 0 (rescue)", "standin_render_settle.py", "claude",
            ["--settle-ms", "300", "--placeholder-lines", "3"], profiles="[claude]\nsettle_ms = 0\n",
            rescue_row=True),
        Row("permission dialog every 10th (keys answer)", "standin_dialog.py", "claude",
            ["--dialog-every", "10"], kind="dialog"),
        Row("exits to a shell after 80%", "standin_exit.py", "codex", [], kind="exit"),
    ]
    tmp = Path(tempfile.mkdtemp(prefix="telepty-bench-submission-"))
    sock = str(tmp / "tmux.sock")
    await tmux(sock, "new-session", "-d", "-s", "bench", "-x", "100", "-y", "30", "sleep 1000000")
    started = time.monotonic()
    try:
        jobs = [run_row(r, args.rescue_n if r.rescue_row else args.n, sock, tmp, i)
                for i, r in enumerate(rows)]
        if args.serial:
            for job in jobs:
                await job
        else:
            await asyncio.gather(*jobs)
    finally:
        await tmux(sock, "kill-server")
    took = time.monotonic() - started
    print(f"confirmed submission per stand-in ({await _tmux_version()}, quiet guard 100 ms, "
          f"{'serial' if args.serial else 'rows in parallel'}, {took:.0f} s)\n")
    head = (f"| {'stand-in':50} | {'n':>4} | {'delivered':>9} | {'rate':>6} | {'rescued':>7} | "
            f"{'failed (reason)':24} | {'false':>5} | {'p50 ms':>7} | {'p95 ms':>7} | {'real p50':>8} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for row in rows:
        s = summarise(row)
        failed = ", ".join(f"{v} {k}" for k, v in s["failed"].items()) or "-"
        rate = s["delivered"] / s["n"] if s["n"] else 0
        print(f"| {row.name:50} | {s['n']:4} | {s['delivered']:9} | {rate:6.1%} | {s['rescued']:7} | "
              f"{failed:24} | {s['false']:5} | {s['p50']:7.0f} | {s['p95']:7.0f} | {s['real_p50']:8.0f} |")
        if row.kind == "dialog":
            print(f"|   dialogs shown {s['dialogs']}, pastes that landed in a dialog {s['corrupted']}")
    shutil.rmtree(tmp, ignore_errors=True)


async def _tmux_version() -> str:
    proc = await asyncio.create_subprocess_exec("tmux", "-V", stdout=subprocess.PIPE)
    return (await proc.communicate())[0].decode().strip()


if __name__ == "__main__":
    asyncio.run(main())
