"""A real ``nats-server -js`` on a loopback port, for the fleet (NATS bus) tests and bench.

Installed by scripts/setup.sh for tests (Debian's ``nats-server``). Each server has its
own store directory and a credential: a token, or an nkey (the daemon then reads the
seed from a file, as TELEPTY_NATS_NKEY says).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port, wait_until_sync

SERVER_BIN = shutil.which("nats-server") or "/usr/sbin/nats-server"
STARTED: list[subprocess.Popen[bytes]] = []  # every server a test started (stopped by the fixture)


def nkey_pair(directory: Path) -> tuple[Path, str]:
    """A fresh user nkey: (the seed's file, the public key the server is told)."""
    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path = directory / "user.nk"
    path.write_bytes(seed + b"\n")
    path.chmod(0o600)
    return path, nkeys.from_seed(seed).public_key.decode()


@dataclass
class NatsServer:
    """``nats-server -js`` on 127.0.0.1; ``auth`` is "token" or "nkey"."""

    root: Path
    auth: str = "token"
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: os.urandom(12).hex())
    proc: subprocess.Popen[bytes] | None = None
    seed_path: Path | None = None

    def __post_init__(self) -> None:
        assert os.path.exists(SERVER_BIN), (
            "nats-server is not installed: run ./scripts/test (its setup installs it with apt-get)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = self.root / "store"
        self.log_path = self.root / "nats-server.log"
        self.conf = self.root / "nats.conf"
        auth = f'authorization {{ token: "{self.token}" }}'
        if self.auth == "nkey":
            self.seed_path, public = nkey_pair(self.root)
            auth = f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}'
        self.conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\n{auth}\n'
            f'jetstream {{ store_dir: "{self.store}" }}\n'
        )

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The settings a daemon on this server needs."""
        if self.auth == "nkey":
            assert self.seed_path is not None
            return {"TELEPTY_BUS_URL": self.url, "TELEPTY_NATS_NKEY": str(self.seed_path)}
        return {"TELEPTY_BUS_URL": self.url, "TELEPTY_NATS_TOKEN": self.token}

    def start(self) -> NatsServer:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SERVER_BIN, "-c", str(self.conf)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        STARTED.append(self.proc)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"nats-server exited early:\n{self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                return False
            return "Server is ready" in self.log_path.read_text(errors="replace")

        wait_until_sync(ready, 15, message="nats-server to come up")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


def stop_leftover_servers() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
