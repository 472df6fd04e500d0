#!/usr/bin/env python3
"""Crash safety: SIGKILL the daemon at random moments while deliveries queue, retry and paste.

Programs of three kinds run in panes of a private tmux server — an agent-like input box
(tests/programs/fake_agent.py), bash's readline (``read -e``) and ``cat`` on a tty —
busy at first, so the deliveries queue and retry on a short schedule. The daemon is
killed with SIGKILL several times (some while the programs are busy, the rest after
they become free, when pastes are in flight) and restarted each time. Nobody touches
anything: a prompt a crash caught half-way must be finished by the daemon itself. Then
the database and the programs' logs must agree:

- every accepted delivery (a 202 with an id) is final within ``--settle`` seconds of the
  last restart: none unfinished, none lost;
- a delivered one was submitted exactly once; any other at most once;
- no prompt was submitted twice, and nothing was submitted that nobody sent;
- no two prompts went out as one submission.

``--person`` plays the person of older daemons, who submits what a crash left in an
input (``keys Enter``) when a prompt is held behind it.

Prints the counts as a table; exits 1 on any violation.

    python scripts/chaos.py --deliveries 1000 --sessions 5 --kills 6
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from telepty.cli.output import table  # noqa: E402
from tests.helpers import DaemonProcess, daemon_env, wait_until_sync  # noqa: E402
from tests.integration.agents import INPUT_KINDS, input_program, input_submissions  # noqa: E402

FINAL = {"delivered", "failed", "cancelled"}


@dataclass
class Result:
    counts: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _tmux(sock: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"TMUX", "TMUX_PANE"}}
    out = subprocess.run(["tmux", "-S", str(sock), "-f", "/dev/null", *args], env=env,
                         capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip()


def _kill_and_restart(d: DaemonProcess) -> DaemonProcess:
    d.kill9()
    return DaemonProcess(home=d.home, env=d.env).start(timeout=20)


@dataclass
class Program:
    """One input program in a pane: what it is, where it logs, what frees it."""

    kind: str
    log: Path
    stop: Path

    def submissions(self) -> list[str]:
        return input_submissions(self.kind, self.log)


def run(deliveries: int, sessions: int, kills: int, seed: int, workdir: Path,
        timeout: float = 120.0, log=print, *, person: bool = False,  # type: ignore[no-untyped-def]
        settle: float = 60.0) -> Result:
    rng = random.Random(seed)
    started = time.monotonic()
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    sock = workdir / "tmux.sock"
    files = [Program(INPUT_KINDS[i % len(INPUT_KINDS)], workdir / f"agent{i}.log", workdir / f"agent{i}.stop")
             for i in range(sessions)]
    panes: list[str] = []
    for i, f in enumerate(files):
        cmd = input_program(f.kind, f.log, busy_until=f.stop)
        if i == 0:
            panes.append(_tmux(sock, "new-session", "-d", "-s", "chaos", "-x", "200", "-y", "50",
                               "-P", "-F", "#{pane_id}", cmd))
        else:
            panes.append(_tmux(sock, "new-window", "-t", "chaos", "-P", "-F", "#{pane_id}", cmd))
    server_pid = int(_tmux(sock, "display-message", "-p", "#{pid}"))
    env = daemon_env(home, TELEPTY_RETRY_SCHEDULE=",".join(["0.2"] * 600), TELEPTY_LOG_LEVEL="WARNING",
                     TELEPTY_HEALTH_INTERVAL="0", TELEPTY_IDLE_SECONDS="0")
    d = DaemonProcess(home=home, env=env).start(timeout=20)
    restarts = 0
    try:
        for i, pane in enumerate(panes):
            status, body = d.request("POST", "/api/sessions/register", {
                "type": "pane", "session_id": f"chaos{i}", "tmux_pane": pane,
                "tmux_socket": str(sock), "command": files[i].kind})
            if status != 201:
                raise RuntimeError(f"register chaos{i}: {status} {body}")

        busy_kills = max(1, kills // 2) if kills else 0
        free_kills = kills - busy_kills
        kill_at = set(rng.sample(range(1, deliveries), min(busy_kills, max(0, deliveries - 1))))
        accepted: dict[str, tuple[int, str]] = {}  # delivery id -> (agent index, prompt)
        for n in range(deliveries):
            if n in kill_at:
                d = _kill_and_restart(d)
                restarts += 1
            agent = rng.randrange(sessions)
            prompt = f"[chaos {n} agent {agent} seed {seed}]"
            status, body = d.request("POST", f"/api/sessions/chaos{agent}/inject", {"prompt": prompt})
            if status != 202:
                raise RuntimeError(f"inject {n}: {status} {body}")
            accepted[body["delivery_id"]] = (agent, prompt)
        log(f"queued {len(accepted)} deliveries, {restarts} kill(s) while the agents were busy")

        for f in files:
            f.stop.touch()  # the agents become free: pastes start
        for _ in range(free_kills):
            time.sleep(rng.uniform(0.1, 1.0))
            d = _kill_and_restart(d)
            restarts += 1
        last_restart = time.monotonic()
        log(f"{restarts} kill(s) in all; waiting for every delivery to be final")

        records: dict[str, dict] = {}  # type: ignore[type-arg]
        answered: set[str] = set()  # blocking deliveries whose leftover the person submitted

        def submit_leftover(rec: dict) -> None:  # type: ignore[type-arg]
            left = (rec.get("evidence") or {}).get("blocked_by")
            if not person or rec["status"] != "held" or left in answered:
                return
            status, _ = d.request("POST", f"/api/sessions/{rec['session_id']}/keys",
                                  {"keys": ["Enter"], "force": True})
            if status == 202:
                answered.add(left)

        def all_final() -> bool:
            done = True
            for did in accepted:
                rec = records.get(did)
                if rec is None or rec["status"] not in FINAL:
                    status, body = d.request("GET", f"/api/deliveries/{did}")
                    if status != 200:
                        return False
                    records[did] = body
                    if body["status"] not in FINAL:
                        submit_leftover(body)
                        done = False
            return done

        unfinished_at_settle = 0
        try:
            wait_until_sync(all_final, max(0.0, last_restart + settle - time.monotonic()), interval=0.2,
                            message="all deliveries final")
        except AssertionError:
            unfinished_at_settle = sum(1 for did in accepted
                                       if records.get(did, {}).get("status") not in FINAL)
            try:
                wait_until_sync(all_final, timeout, interval=0.2, message="all deliveries final")
            except AssertionError:
                pass  # reported below as lost
        # Let any straggling keystrokes land before reading the logs.
        expected = sum(1 for r in records.values() if r["status"] == "delivered")
        settle_until = time.monotonic() + 5
        while time.monotonic() < settle_until:
            if sum(len(f.submissions()) for f in files) >= expected:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        result = _check(accepted, records, files, restarts, time.monotonic() - started)
        result.counts[f"unfinished {settle:g} s after the last restart"] = unfinished_at_settle
        if unfinished_at_settle:
            result.violations.append(f"{unfinished_at_settle} delivery(ies) still unfinished {settle:g} s "
                                     "after the last restart")
        if person:
            result.counts["leftovers submitted by the person"] = len(answered)
        return result
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
        try:
            _tmux(sock, "kill-server")
        except (subprocess.SubprocessError, OSError):
            pass
        # A control client orphaned by a SIGKILLed daemon can leave the server unable to
        # finish exiting; a run must not leave a tmux server behind.
        with contextlib.suppress(ProcessLookupError):
            os.kill(server_pid, signal.SIGKILL)


PROMPT_RE = re.compile(r"\[chaos \d+ agent \d+ seed \d+\]")


def _occurrences(files) -> tuple[list[Counter[str]], int, list[str]]:  # type: ignore[no-untyped-def]
    """Per agent: how often each prompt was submitted; how many submissions held several
    prompts (a paste cut short by a crash stays in the composer and goes out with the
    next one); and the text of submissions that are not made of our prompts."""
    logs: list[Counter[str]] = []
    merged = 0
    strange: list[str] = []
    for f in files:
        counter: Counter[str] = Counter()
        for text in f.submissions():
            found = PROMPT_RE.findall(text)
            if PROMPT_RE.sub("", text) or not found:
                strange.append(text)
            merged += len(found) > 1
            counter.update(found)
        logs.append(counter)
    return logs, merged, strange


def _check(accepted, records, files, restarts: int, elapsed: float) -> Result:  # type: ignore[no-untyped-def]
    res = Result()
    logs, merged, strange = _occurrences(files)
    known = {(a, p) for a, p in accepted.values()}
    c: Counter[str] = Counter()
    for did, (agent, prompt) in accepted.items():
        rec = records.get(did)
        seen = logs[agent][prompt]
        if rec is None or rec["status"] not in FINAL:
            c["lost"] += 1
            res.violations.append(f"{did}: not final ({rec and rec['status']})")
            continue
        status, reason = rec["status"], rec.get("reason")
        key = status if status != "failed" else f"failed ({reason})"
        c[key] += 1
        if status == "delivered" and seen != 1:
            res.violations.append(f"{did}: delivered but submitted {seen} times")
        elif status != "delivered" and seen > 1:
            res.violations.append(f"{did}: {key} and submitted {seen} times")
        if seen > 1:
            c["pasted twice"] += 1
        recovery = (rec.get("evidence") or {}).get("recovery")
        if recovery:
            c[f"finished after a restart (input: {recovery.get('input', 'past submit')})"] += 1
        if status != "delivered" and seen == 1:
            c[f"{key}, submitted once"] += 1
    for agent, counter in enumerate(logs):
        for prompt in counter:
            if (agent, prompt) not in known:
                strange.append(prompt)
    for text in strange:
        res.violations.append(f"a submission nobody sent: {text!r}")
    if merged:
        res.violations.append(f"{merged} submission(s) held several prompts at once")
    res.counts = {"accepted": len(accepted), **dict(sorted(c.items())), "lost": c["lost"],
                  "pasted twice": c["pasted twice"], "merged submissions": merged,
                  "unknown submissions": len(strange), "kills": restarts,
                  "violations": len(res.violations), "seconds": round(elapsed, 1)}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deliveries", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for all to be final")
    ap.add_argument("--settle", type=float, default=60.0,
                    help="seconds after the last restart by which every delivery must be final")
    ap.add_argument("--person", action="store_true",
                    help="submit what a crash left in an input when a prompt is held behind it")
    ap.add_argument("--json", action="store_true", help="print the counts as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (daemon log, agent logs)")
    args = ap.parse_args(argv)
    if args.deliveries < 2 or args.sessions < 1 or args.kills < 0:
        ap.error("need --deliveries >= 2, --sessions >= 1, --kills >= 0")
    if shutil.which("tmux") is None:
        print("chaos: tmux is not on PATH", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="telepty-chaos-"))
    quiet = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
    try:
        res = run(args.deliveries, args.sessions, args.kills, args.seed, workdir, args.timeout, log=quiet,
                  person=args.person, settle=args.settle)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"ok": res.ok, "counts": res.counts, "violations": res.violations[:50]}))
    else:
        print(table(list(res.counts.items()), ["COUNT", "VALUE"]))
        for v in res.violations[:50]:
            print(f"violation: {v}", file=sys.stderr)
        if args.keep:
            print(f"work directory: {workdir}", file=sys.stderr)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
