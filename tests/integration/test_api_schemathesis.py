"""Fuzz a real daemon from its own OpenAPI document with schemathesis.

The daemon serves ``/api/openapi.json`` (telepty.api.openapi); schemathesis loads it
from there and, for every HTTP operation, sends hypothesis-generated requests: valid
ones (positive) and ones that break the schema on purpose (negative). A second, seeded
pass aims the operations that act on one thing (a session, a delivery, a handoff, a
thread) at things that exist, so generated data gets past "not found" into the
handlers. Every answer is held to the document: never a 500, no 5xx the document does
not announce, only documented status codes and content types, bodies that match the
documented schemas, and schema-violating requests refused. At the end the daemon must
still be alive, healthy, and have logged no unhandled error.

Safety, because generated data reaches real handlers:

* the daemon runs with PATH set to a private directory holding only two stubs: a
  ``tmux`` that fails every command like a tmux with no server, and a program that
  exits at once; no real tmux server (the user's or another test's) can be reached;
* the spawn operation (``x-spawns-process``) only ever runs that stub: a generated
  ``command`` is replaced by it and a generated environment dropped (no LD_PRELOAD);
* ``id@<ip address>`` targets would make the daemon relay to that address, so their host
  is replaced by an unknown peer name (a 404 ``unknown_peer``, no network); there is no
  peers.json and no tailscale binary on that PATH;
* ``wait: true`` waits at most half a second.

The WebSocket routes (``x-websocket``) are left out here; test_api_fuzz.py sends them
plain HTTP requests.
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from telepty.api.openapi import OPENAPI_PATH
from telepty.errors import TeleptyError
from telepty.relay.peers import address_peer, split_target
from tests.helpers import DaemonProcess, stub_tmux_env

# Examples per operation and mode: about 3,500 requests, ~30 s alone on two cores.
# TELEPTY_FUZZ_SCALE=10 makes a long local run.
_SCALE = float(os.environ.get("TELEPTY_FUZZ_SCALE", "1"))
EXAMPLES = {GenerationMode.POSITIVE: int(60 * _SCALE), GenerationMode.NEGATIVE: int(30 * _SCALE)}
SEEDED_EXAMPLES = {GenerationMode.POSITIVE: int(40 * _SCALE), GenerationMode.NEGATIVE: int(20 * _SCALE)}
MAX_WAIT_S = 0.5
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
# 5xx answers that are designed, documented refusals, not crashes: checked against the
# document (status_code_conformance) instead of failing not_a_server_error.
DESIGNED_5XX = {503: "tmux_unavailable", 508: "hop_limit"}
# Operations under a seeded prefix that take no id: the first pass covers them.
UNSEEDED = frozenset({"/api/sessions/register", "/api/sessions/spawn", "/api/sessions/clean"})
UNKNOWN_PEER = "fuzz-peer.invalid"

HARMLESS_PROGRAM = "#!/bin/sh\nexit 0\n"


@pytest.fixture
def fuzz_daemon(daemon_factory: Any, tmp_path: Path) -> DaemonProcess:
    env = stub_tmux_env(tmp_path, {"harmless-agent": HARMLESS_PROGRAM})
    return daemon_factory(**env, TELEPTY_LOG_LEVEL="WARNING").start()


def _no_relay(value: Any) -> Any:
    """Replace the host of every ``x@<ip address>`` string so no request leaves the box."""
    if isinstance(value, str) and "@" in value:
        sid, host = split_target(value)
        try:
            is_address = host is not None and address_peer(host) is not None
        except TeleptyError:  # a port out of range: refused (400) before any connection
            is_address = False
        return f"{sid}@{UNKNOWN_PEER}" if is_address else value
    if isinstance(value, dict):
        return {k: _no_relay(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_relay(v) for v in value]
    return value


def make_safe(case: Any, spawns: bool, harmless: Path, sessions: list[str] | None = None) -> bool:
    """Rewrite a generated case in place so that sending it cannot harm anything; True
    if anything changed (the data sent is then not what was generated).

    With ``sessions`` (the seeded pass), session names in the body point at those
    sessions, so fan-out and reply get past "no such session" into delivery."""
    body = case.body  # a dict, or no body / raw bytes, which are never rewritten
    before = copy.deepcopy((case.path_parameters, case.query, body if isinstance(body, dict) else None))
    _make_safe(case, spawns, harmless, sessions)
    after = (case.path_parameters, case.query, case.body if isinstance(body, dict) else None)
    return before != after


def _make_safe(case: Any, spawns: bool, harmless: Path, sessions: list[str] | None) -> None:
    if case.path_parameters:
        case.path_parameters = _no_relay(case.path_parameters)
    if case.query:
        case.query = _no_relay(case.query)
    body = case.body
    if not isinstance(body, dict):
        return
    body = _no_relay(body)
    if spawns:
        if isinstance(body.get("command"), str):
            body["command"] = str(harmless)
        env = body.get("env")
        if isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            body["env"] = {}
    if body.get("wait") is True:
        timeout = body.get("timeout")
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout > MAX_WAIT_S:
            body["timeout"] = MAX_WAIT_S
    if sessions:
        ids = body.get("session_ids")
        if isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids):
            body["session_ids"] = [sessions[len(i) % len(sessions)] for i in ids]
        if isinstance(body.get("session_id"), str):
            body["session_id"] = sessions[0]
    case.body = body


def seed(daemon: DaemonProcess, harmless: Path) -> dict[str, list[str]]:
    """Known things for the seeded pass, by path prefix: sessions of each type, a handoff,
    a thread, a delivery. Called before each operation, since the previous one may have
    renamed, removed, claimed or closed them (answers that say so are fine)."""
    pid = os.getpid()  # alive for the whole test: the liveness check leaves them be
    for body in ({"session_id": "fz-wrapped", "type": "wrapped", "command": "claude", "pid": pid},
                 {"session_id": "fz-pane", "type": "pane", "tmux_pane": "%1", "command": "codex",
                  "pid": pid}):
        status, answer = daemon.request("POST", "/api/sessions/register", body)
        assert status == 201, answer
    daemon.request("POST", "/api/sessions/spawn", {"session_id": "fz-spawned", "command": str(harmless)})
    daemon.request("POST", "/api/handoffs", {"handoff_id": "fz-handoff", "task_count": 1})
    daemon.request("POST", "/api/threads", {"thread_id": "fz-thread", "topic": "fuzz"})
    status, answer = daemon.request("POST", "/api/sessions/fz-wrapped/inject",
                                    {"prompt": "hello", "from": "fz-pane", "thread_id": "fz-thread"})
    assert status == 202, answer
    sessions = ["fz-wrapped", "fz-pane", "fz-spawned"]
    return {"/api/sessions/": sessions, "/api/handoffs/": ["fz-handoff"], "/api/threads/": ["fz-thread"],
            "/api/deliveries/": [answer["delivery_id"]], "/api/reply": sessions}


@dataclass
class Fuzzer:
    """Sends generated cases for one operation at a time and keeps the tally."""

    daemon: DaemonProcess
    harmless: Path
    http: requests.Session
    statuses: Counter[int] = field(default_factory=Counter)
    per_operation: Counter[str] = field(default_factory=Counter)
    designed_5xx: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    no_negative: set[str] = field(default_factory=set)

    def run(self, op: Any, mode: GenerationMode, examples: int, *, spawns: bool,
            ids: list[str] | None = None, sessions: list[str] | None = None) -> None:
        """``ids``: path ids to use instead of generated ones (the seeded pass)."""
        has_id = any(p.name == "id" for p in op.path_parameters)
        strategy = (st.sampled_from(ids).flatmap(
            lambda i: op.as_strategy(generation_mode=mode, path_parameters={"id": i}))
            if ids and has_id else op.as_strategy(generation_mode=mode))

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], verbosity=Verbosity.quiet,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def one(case: Any) -> None:
            rewritten = make_safe(case, spawns, self.harmless, sessions)
            response = case.call(base_url=self.daemon.url, session=self.http, timeout=30)
            status = response.status_code
            self.statuses[status] += 1
            self.per_operation[op.label] += 1
            skip: set[Any] = set()
            if status in DESIGNED_5XX and _error_code(response) == DESIGNED_5XX[status]:
                self.designed_5xx[f"{status} {DESIGNED_5XX[status]}"] += 1
                skip.add(not_a_server_error)
            if _blank(case.body) or rewritten:
                # A blank body is no body (telepty.api.body.json_object), which every
                # operation whose body is optional accepts (no schema can say "blank");
                # a rewritten case may no longer break the schema the way it was made to.
                skip.add(negative_data_rejection)
            checks = [c for c in CHECKS if c not in skip]
            try:
                case.validate_response(response, checks=checks)
            except FailureGroup as exc:
                titles = ", ".join(sorted({f.title for f in exc.exceptions}))
                self.kinds[f"[{mode}] {op.label} -> {status}: {titles}"] += 1
                self.failures.append(
                    f"[{mode}{' seeded' if ids else ''}] {op.label} -> {status} {titles}\n"
                    f"  sent: path={case.path_parameters} query={case.query} headers={case.headers} "
                    f"body={case.body!r:.2000}\n"
                    f"  got: {response.text[:300]}"
                )

        try:
            one()
        except Unsatisfiable:
            # Nothing to negate (no parameters, no body): there is no invalid request to make.
            if mode is not GenerationMode.NEGATIVE:
                raise
            self.no_negative.add(op.label)


def _blank(body: Any) -> bool:
    """Would json_object read ``body`` as no body at all? (bytes.strip, like the handler)"""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    return isinstance(body, bytes) and not body.strip()


def _error_code(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


@pytest.mark.timeout(int(150 * max(1.0, _SCALE)))
def test_schemathesis_against_a_real_daemon(fuzz_daemon: DaemonProcess, tmp_path: Path) -> None:
    started = time.monotonic()
    token = fuzz_daemon.token
    schema = schemathesis.openapi.from_url(fuzz_daemon.url + OPENAPI_PATH, headers={"x-telepty-token": token})
    schema.validate()
    raw = schema.raw_schema
    http = requests.Session()
    http.headers["x-telepty-token"] = token
    harmless = tmp_path / "stub-bin" / "harmless-agent"
    fuzzer = Fuzzer(fuzz_daemon, harmless, http)

    operations = [r.ok() for r in schema.get_all_operations()]
    fuzzed = [op for op in operations if not raw["paths"][op.path][op.method].get("x-websocket")]
    # schemathesis leaves out the document's own URL; the rest is every HTTP operation.
    assert len(fuzzed) == len(operations) - 3 >= 35
    for op in fuzzed:
        spawns = bool(raw["paths"][op.path][op.method].get("x-spawns-process"))
        for mode, examples in EXAMPLES.items():
            fuzzer.run(op, mode, examples, spawns=spawns)
    for op in fuzzed:  # the seeded pass
        known = seed(fuzz_daemon, harmless)
        prefix = next((p for p in known if op.path.startswith(p)), None)
        if prefix is None or op.path in UNSEEDED:
            continue
        for mode, examples in SEEDED_EXAMPLES.items():
            fuzzer.run(op, mode, examples, spawns=False, ids=known[prefix], sessions=known["/api/sessions/"])

    statuses = fuzzer.statuses
    total = sum(statuses.values())
    server_errors = sum(n for s, n in statuses.items() if s >= 500)
    print(f"\nschemathesis: {total} requests over {len(fuzzed)} operations in "
          f"{time.monotonic() - started:.1f}s; {server_errors} 5xx "
          f"({statuses[500]} x 500, designed: {dict(fuzzer.designed_5xx) or 'none'}); "
          f"statuses {dict(sorted(statuses.items()))}; "
          f"nothing to negate in {len(fuzzer.no_negative)} operations")
    failures = fuzzer.failures
    assert not failures, (f"{len(failures)} failing case(s):\n"
                          + "\n".join(f"{n:4} {k}" for k, n in fuzzer.kinds.most_common())
                          + "\n\n" + "\n\n".join(failures[:10]))
    assert statuses[500] == 0
    assert server_errors == sum(fuzzer.designed_5xx.values())
    assert all(fuzzer.per_operation[op.label] > 0 for op in fuzzed)
    assert fuzz_daemon.proc is not None and fuzz_daemon.proc.poll() is None, "the daemon died"
    assert fuzz_daemon.request("GET", "/api/health")[0] == 200
    log = fuzz_daemon.log_path.read_text()
    assert "unhandled error" not in log and "Error handling request" not in log, log[-4000:]
