"""Shared test helpers: deadline polling (never sleeps as synchronisation) and daemons."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def count_commits(bus: Any) -> list[int]:
    """From now on, the size of every batch ``bus`` (an ``EventBus``) commits, in order."""
    commits: list[int] = []
    append_batch = bus.events.append_batch

    def counting(items: list[Any]) -> Any:
        commits.append(len(items))
        return append_batch(items)

    bus.events.append_batch = counting
    return commits


async def wait_until(
    pred: Callable[[], Any] | Callable[[], Awaitable[Any]],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result  # type: ignore[misc]
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


def wait_until_sync(
    pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02, message: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def daemon_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPTY_")}
    env.pop("TMUX", None)
    env.pop("TMUX_PANE", None)
    env.update(
        TELEPTY_HOME=str(home),
        TELEPTY_MACHINE_ID="test-machine",
        TELEPTY_LOG_LEVEL="INFO",
        TELEPTY_QUIET_MS="200",
        TELEPTY_RETRY_SCHEDULE="0.3,0.6",
        TELEPTY_SETTLE_MS="50",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


FINAL_STATUSES = frozenset({"delivered", "failed", "cancelled"})

# Every daemon a test started, so the conftest can stop whatever a failing test left.
STARTED: list[subprocess.Popen[bytes]] = []


def stop_leftover_daemons() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@dataclass
class DaemonProcess:
    """A real ``telepty daemon`` subprocess on an ephemeral loopback port."""

    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    port: int = 0  # 0: ephemeral; a fixed one lets a restarted daemon come back where peers expect it
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.home / "daemon-test.log"

    @property
    def token(self) -> str:
        return (self.home / "token").read_text().strip()

    def start(self, timeout: float = 15.0) -> DaemonProcess:
        runtime = self.home / "daemon.json"
        runtime.unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telepty", "daemon", "--port", str(self.port)],
            env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        STARTED.append(self.proc)
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.log_path.read_text()}")
            try:
                info = json.loads(runtime.read_text())
            except (OSError, ValueError):
                return False
            if info.get("pid") != self.proc.pid:  # type: ignore[union-attr]
                return False
            self.url = info["url"]
            try:
                with urllib.request.urlopen(self.url + "/api/health", timeout=1) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until_sync(ready, timeout, message="daemon to come up")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def delivery(self, delivery_id: str) -> dict[str, Any]:
        status, body = self.request("GET", f"/api/deliveries/{delivery_id}")
        assert status == 200, body
        return dict(body)

    def finals(self, delivery_ids: list[str], timeout: float = 20.0) -> list[dict[str, Any]]:
        """The records once every one is final (in the order asked)."""

        def done() -> list[dict[str, Any]] | None:
            recs = [self.delivery(i) for i in delivery_ids]
            return recs if all(r["status"] in FINAL_STATUSES for r in recs) else None

        return wait_until_sync(done, timeout, message=f"deliveries {delivery_ids} final")  # type: ignore[no-any-return]

    def final(self, delivery_id: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.finals([delivery_id], timeout)[0]

    def request(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
        raw: bytes | None = None, timeout: float = 10.0,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
                return resp.status, json.loads(payload) if payload else None
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                return exc.code, json.loads(payload)
            except ValueError:
                return exc.code, payload.decode(errors="replace")

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 30.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=env or self.env, input=input, timeout=timeout)


def run_cli(*args: str, env: dict[str, str], input: bytes | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "telepty", *args], env=env, input=input,
        capture_output=True, timeout=timeout,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
    )


def free_port() -> int:
    """A loopback port nothing listens on (just now): for a daemon to come back on, or
    for a peer that refuses at once instead of timing out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FAILING_TMUX = "#!/bin/sh\necho 'no server running on /nonexistent/telepty-fuzz' >&2\nexit 1\n"


def stub_tmux_env(tmp_path: Path, programs: dict[str, str] | None = None) -> dict[str, str]:
    """Daemon settings under which no real tmux server can be reached: PATH holds only a
    tmux that fails every command (plus ``programs``, name → script). For fuzzing."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    for name, text in {"tmux": FAILING_TMUX, **(programs or {})}.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    tmux_tmp = tmp_path / "tmux-tmp"
    tmux_tmp.mkdir()
    return {"PATH": str(bin_dir), "TELEPTY_TMUX_BIN": str(bin_dir / "tmux"), "TMUX_TMPDIR": str(tmux_tmp)}


async def client_delivery(client: Any, delivery_id: str) -> dict[str, Any]:
    """A delivery record through an aiohttp test client (the in-process daemon)."""
    resp = await client.get(f"/api/deliveries/{delivery_id}")
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def client_finals(client: Any, delivery_ids: list[str], timeout: float = 20.0) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        recs = [await client_delivery(client, i) for i in delivery_ids]
        return recs if all(r["status"] in FINAL_STATUSES for r in recs) else None

    return await wait_until(done, timeout, message=f"deliveries {delivery_ids} final")  # type: ignore[no-any-return]


async def client_final(client: Any, delivery_id: str, timeout: float = 20.0) -> dict[str, Any]:
    return (await client_finals(client, [delivery_id], timeout))[0]
