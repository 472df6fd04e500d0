#!/usr/bin/env python3
"""Back-to-back prompts into the real agent CLIs, judged by what the model received.

For each agent (Claude Code, Codex CLI, Gemini CLI at the versions pinned in
scripts/agent-versions.txt; ``./scripts/setup.sh test`` installs them) and each mode
(``wrap``: behind ``telepty wrap``; ``pane``: a registered tmux pane), the bench starts
the agent offline against the mock model (tests/realagents), a daemon with the shipped
profiles, and queues N prompts at once: multi-line ones with tabs, quotes, ``$(…)`` and
unicode, one of 20 kB and one of 200 kB. Every prompt starts with its own tag, so each
message the mock received can be traced back. One row per agent and mode:

  sent         prompts queued
  delivered    records that ended ``delivered``
  own exact    prompts received as their own message, exactly (modulo the agent's own
               rewriting: Claude Code sends tabs as four spaces)
  merged       received messages that hold more than one prompt
  lost         prompts the model never received, in any form
  duplicated   prompts received more than once
  false dlv    records ``delivered`` whose prompt was not received as its own message
  acc→rcv      accepted by the daemon → received by the model, p50 / p95 (s)
  drain        first accepted → last received (s)

Only one agent runs at a time. The retry schedule is a long run of short delays (the
daemon's default 30 s would measure the retry timer, not the delivery); the quiet guard
is the daemon's default unless ``--quiet-ms`` says otherwise.

Run: .venv/bin/python scripts/bench/realagents.py [--n 20] [--agents claude,codex]
     [--modes wrap,pane] [--row-timeout 600]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import pct, start_daemon

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers import wait_until_sync  # noqa: E402  (after the path is set)
from tests.realagents.harness import (  # noqa: E402
    AGENTS,
    MODES,
    PANE,
    agent_version,
    as_received,
    missing_agents,
    start_agent,
)

TAG_RE = re.compile(r"\[p(\d{2})\]")
FINAL = {"delivered", "failed", "cancelled"}


def prompts(n: int) -> list[str]:
    """N tagged prompts: plain, multi-line with the characters that break shells and
    terminals, one of 20 kB and one of 200 kB."""
    out = []
    for i in range(n):
        tag = f"[p{i:02d}]"
        if i == n // 4:
            body = _big(20_000)
        elif i == n // 2:
            body = _big(200_000)
        elif i % 3 == 0:
            body = (f"Review:\n\tdef f(x):\n\t\treturn \"$(rm -rf ~)\" + 'q{i}' + `ls`\n"
                    f"ünïcødé ✓ 日本語 #{i}")
        elif i % 3 == 1:
            body = f"A short prompt number {i}, with 50% of a \"quote\" and a \\backslash."
        else:
            body = f"Two lines, number {i}:\nthe second\tone, tabbed."
        out.append(f"{tag} {body}")
    return out


def _big(size: int) -> str:
    lines, total, i = [], 0, 0
    while total < size:
        line = f"line {i:05d}:\tthe quick brown fox jumps over the lazy dog {i}"
        lines.append(line)
        total += len(line) + 1
        i += 1
    return "\n".join(lines)


@dataclass
class Row:
    agent: str
    mode: str
    sent: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)
    received: list[tuple[str, float]] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    error: str = ""


def request(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", "x-telepty-token": token})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def run_row(agent: str, mode: str, n: int, tmp: Path, settings: dict[str, str], row_timeout: float) -> Row:
    row = Row(agent, mode)
    home = tmp / "home"
    home.mkdir(parents=True)
    proc, url, token = start_daemon(home, **settings)
    run = start_agent(agent, mode, tmp / "agent", telepty_home=home,
                      telepty_env={"TELEPTY_PORT": "1", "TELEPTY_LOG_LEVEL": "WARNING"})
    sid = run.session_id
    try:
        run.wait_ready()
        if mode == PANE:
            env = {"TELEPTY_HOME": str(home), "PATH": "/usr/bin:/bin"}
            subprocess.run([sys.executable, "-m", "telepty", "register-pane", run.pane, "--socket",
                            str(run.tmux.socket), "--id", sid], env=env, check=True,
                           capture_output=True, timeout=30)

        def verdict() -> str | None:
            try:
                return str(request(url, token, "GET", f"/api/sessions/{sid}/explain").get("verdict"))
            except OSError:
                return None

        wait_until_sync(lambda: verdict() == "idle", 90, 0.2, f"{agent}-{mode} to be idle")
        texts = row.prompts = prompts(n)
        ids = []
        for text in texts:
            accepted = request(url, token, "POST", f"/api/sessions/{sid}/inject", {"prompt": text})
            ids.append(accepted["delivery_id"])
            row.accepted_at.append(time.time())
        row.sent = len(ids)

        def finals() -> list[dict[str, Any]] | None:
            recs = [request(url, token, "GET", f"/api/deliveries/{i}") for i in ids]
            return recs if all(r["status"] in FINAL for r in recs) else None

        try:
            row.records = wait_until_sync(finals, row_timeout, 1.0, "every delivery to be final")
        except AssertionError:
            row.records = [request(url, token, "GET", f"/api/deliveries/{i}") for i in ids]
            row.error = "not all final after the row timeout"
        delivered = sum(1 for r in row.records if r["status"] == "delivered")
        # The model hears of a prompt a moment after the screen shows it was sent.
        with contextlib.suppress(AssertionError):
            wait_until_sync(lambda: len(run.mock.received()) >= delivered, 30, 0.2, "the model")
        time.sleep(2)  # anything an agent still had queued
        row.received = run.mock.received_times()
    except Exception as exc:  # one broken row must not hide the others
        row.error = f"{type(exc).__name__}: {exc}"
    finally:
        run.stop()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return row


def score(row: Row) -> dict[str, Any]:
    texts = row.prompts
    expected = {i: as_received(row.agent, t) for i, t in enumerate(texts)}
    seen: Counter[int] = Counter()
    own: dict[int, float] = {}
    merged = 0
    for text, t in row.received:
        tags = {int(m) for m in TAG_RE.findall(text) if int(m) in expected}
        for tag in tags:
            seen[tag] += 1
        if len(tags) > 1:
            merged += 1
        elif len(tags) == 1:
            (tag,) = tags
            if text == expected[tag] and tag not in own:
                own[tag] = t
    delivered = [i for i, r in enumerate(row.records) if r["status"] == "delivered"]
    latencies = [own[i] - row.accepted_at[i] for i in own]
    firsts = [t for _, t in row.received]
    failed = Counter(f"{r['status']}:{r['reason']}" for r in row.records if r["status"] != "delivered")
    return {
        "sent": row.sent,
        "delivered": len(delivered),
        "own": len(own),
        "merged": merged,
        "lost": sum(1 for i in expected if seen[i] == 0),
        "dup": sum(1 for i in expected if seen[i] > 1),
        "false": sum(1 for i in delivered if i not in own),
        "p50": pct(latencies, 50),
        "p95": pct(latencies, 95),
        "drain": (max(firsts) - row.accepted_at[0]) if firsts and row.accepted_at else float("nan"),
        "failed": dict(failed),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--agents", default=",".join(AGENTS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--retry-schedule", default=",".join(["0.5"] * 600))
    ap.add_argument("--quiet-ms", type=int, default=None, help="default: the daemon's own")
    ap.add_argument("--row-timeout", type=float, default=600.0)
    args = ap.parse_args()
    missing = missing_agents()
    if missing:
        raise SystemExit(f"agent CLIs not installed: {missing}; run ./scripts/setup.sh test")
    settings = {"TELEPTY_RETRY_SCHEDULE": args.retry_schedule}
    if args.quiet_ms is not None:
        settings["TELEPTY_QUIET_MS"] = str(args.quiet_ms)
    rows: list[tuple[Row, dict[str, Any]]] = []
    for agent in args.agents.split(","):
        for mode in args.modes.split(","):
            tmp = Path(tempfile.mkdtemp(prefix=f"telepty-bench-{agent}-{mode}-"))
            try:
                row = run_row(agent, mode, args.n, tmp, settings, args.row_timeout)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            result = score(row)
            rows.append((row, result))
            print(f"  {agent:<7} {mode:<5} done: {result['delivered']}/{result['sent']} delivered, "
                  f"{result['own']} own exact", file=sys.stderr, flush=True)
    quiet = args.quiet_ms if args.quiet_ms is not None else "default (2000)"
    delays = args.retry_schedule.split(",")
    retries = (f"retries every {delays[0]} s" if len(set(delays)) == 1
               else f"retry schedule {args.retry_schedule} s")
    print(f"\nreal agents, {args.n} prompts back to back each (one 20 kB, one 200 kB); "
          f"quiet {quiet} ms; {retries}; {time.strftime('%Y-%m-%d')}\n")
    head = (f"{'agent':<18}{'mode':<6}{'sent':>5}{'dlvd':>6}{'own':>5}{'merged':>8}{'lost':>6}"
            f"{'dup':>5}{'false':>7}{'acc→rcv p50':>13}{'p95':>8}{'drain':>9}")
    print(head)
    print("-" * len(head))
    for row, r in rows:
        name = f"{row.agent} {agent_version(row.agent)}"
        print(f"{name:<18}{row.mode:<6}{r['sent']:>5}{r['delivered']:>6}{r['own']:>5}{r['merged']:>8}"
              f"{r['lost']:>6}{r['dup']:>5}{r['false']:>7}{r['p50']:>12.1f}s{r['p95']:>7.1f}s"
              f"{r['drain']:>8.1f}s")
    notes = [(row, r) for row, r in rows if r["failed"] or row.error]
    if notes:
        print()
        for row, r in notes:
            print(f"{row.agent} {row.mode}: {', '.join(f'{k} ×{v}' for k, v in r['failed'].items())}"
                  f"{'; ' + row.error if row.error else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
