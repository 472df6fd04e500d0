#!/usr/bin/env python3
"""Injection latency, guard off, beside the raw tmux floor.

Rows:
  raw floor          load-buffer (stdin) + paste-buffer -p -d + send-keys Enter, forked
                     directly: the least any paste-buffer injection can cost.
  tmux module       telepty's tmux module alone: TmuxServer.paste_bytes + send_keys Enter
                     (control-mode client where it can).
  API → paste-buffer a real daemon process: POST /inject {force, wait} until the final
                     record comes back (HTTP, SQLite writes, engine, tmux).
  API → pty          the same into a spawned session's PTY.

Run: .venv/bin/python scripts/bench/inject.py [--n 200] [--size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from benchlib import pct, start_daemon

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from telepty.tmux import TmuxServer  # noqa: E402


async def run(*argv: str, stdin: bytes | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _, err = await proc.communicate(stdin)
    if proc.returncode:
        raise RuntimeError(f"{argv}: {err.decode()}")


async def raw_floor(sock: str, pane: str, payload: bytes, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await run("tmux", "-S", sock, "load-buffer", "-b", f"floor{i}", "-", stdin=payload)
        await run("tmux", "-S", sock, "paste-buffer", "-p", "-d", "-b", f"floor{i}", "-t", pane)
        await run("tmux", "-S", sock, "send-keys", "-t", pane, "Enter")
        out.append(time.perf_counter() - t)
    return out


async def module_paste(sock: str, pane: str, payload: bytes, n: int) -> list[float]:
    srv = TmuxServer(socket_path=sock)
    out = []
    try:
        await srv.paste_bytes(pane, payload)  # warm the control client
        for _ in range(n):
            t = time.perf_counter()
            await srv.paste_bytes(pane, payload)
            await srv.send_keys(pane, "Enter")
            out.append(time.perf_counter() - t)
    finally:
        await srv.close()
    return out


async def api_inject(url: str, token: str, target: str, prompt: str, n: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession(headers={"x-telepty-token": token}) as http:
        for _ in range(n + 1):
            t = time.perf_counter()
            async with http.post(f"{url}/api/sessions/{target}/inject",
                                 json={"prompt": prompt, "force": True, "wait": True}) as resp:
                body = await resp.json()
                if body.get("status") != "delivered":
                    raise RuntimeError(body)
            out.append(time.perf_counter() - t)
    return out[1:]




async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=64, help="prompt size in bytes")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        raise SystemExit("tmux is required")
    prompt = ("x" * args.size)
    payload = prompt.encode()
    tmp = Path(tempfile.mkdtemp(prefix="telepty-bench-"))
    sock = str(tmp / "tmux.sock")
    await run("tmux", "-S", sock, "new-session", "-d", "-s", "bench", "-x", "200", "-y", "50",
              "sh -c 'stty raw -echo; cat > /dev/null'")
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-S", sock, "display-message", "-p", "-t", "bench", "#{pane_id}",
        stdout=subprocess.PIPE)
    pane = (await proc.communicate())[0].decode().strip()
    proc, url, token = start_daemon(tmp / "home", TELEPTY_SETTLE_MS="0")
    try:
        rows: list[tuple[str, list[float]]] = []
        rows.append(("raw floor (3 forked tmux cmds)", await raw_floor(sock, pane, payload, args.n)))
        rows.append(("tmux module: paste_bytes + Enter", await module_paste(sock, pane, payload, args.n)))
        async with aiohttp.ClientSession(headers={"x-telepty-token": token}) as http:
            await http.post(f"{url}/api/sessions/register", json={
                "type": "pane", "session_id": "bench-pane", "tmux_pane": pane, "tmux_socket": sock,
                "command": "cat"})
            await http.post(f"{url}/api/sessions/spawn", json={
                "session_id": "bench-pty", "command": "sh", "args": ["-c", "stty raw -echo; cat > /dev/null"],
                "cwd": str(tmp)})
        rows.append(("API inject → paste-buffer", await api_inject(url, token, "bench-pane", prompt, args.n)))
        rows.append(("API inject → pty (spawned)", await api_inject(url, token, "bench-pty", prompt, args.n)))
    finally:
        proc.terminate()
        proc.wait(10)
        await run("tmux", "-S", sock, "kill-server")
        shutil.rmtree(tmp, ignore_errors=True)

    floor = statistics.median(rows[0][1])
    print(f"injection latency, guard off, settle 0, {args.size}-byte prompt, n={args.n}\n")
    print(f"| {'path':32} | {'p50 ms':>7} | {'p95 ms':>7} | {'p99 ms':>7} | {'p50 / floor':>11} |")
    print(f"|{'-' * 34}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 13}|")
    for name, s in rows:
        p50, p95, p99 = (pct(s, p) * 1000 for p in (50, 95, 99))
        print(f"| {name:32} | {p50:7.2f} | {p95:7.2f} | {p99:7.2f} | {p50 / (floor * 1000):10.2f}x |")


if __name__ == "__main__":
    asyncio.run(main())
