"""Every TELEPTY_* setting and its default, in one typed place.

Modules never read ``os.environ`` for settings themselves; they receive a ``Config``.
That keeps tests honest (a test builds the exact config it needs) and makes the
full list of knobs visible here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3848
DEFAULT_RETRY_SCHEDULE = (30.0, 180.0, 600.0)
DEFAULT_QUIET_MS = 2000
DEFAULT_HOLD_MAX_S = 300.0
MAX_PROMPT_BYTES = 1024 * 1024
DEFAULT_BUS_RETENTION_COUNT = 100_000
DEFAULT_BUS_RETENTION_SECONDS = 7 * 24 * 3600.0
DEFAULT_FANOUT_MAX = 100
DEFAULT_AUDIT_RETENTION_COUNT = 100_000
DEFAULT_AUDIT_RETENTION_SECONDS = 30 * 24 * 3600.0
DEFAULT_HOP_LIMIT = 3


class ConfigError(ValueError):
    """A TELEPTY_* variable holds something we cannot use."""


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"expected a boolean (1/0), got {value!r}")


def _csv(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(name: str, value: str | None, default: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from exc


def _seconds(name: str, value: str | None, default: float) -> float:
    """A non-negative number of seconds; 0 switches the periodic thing off."""
    if value is None or value.strip() == "":
        return default
    try:
        seconds = float(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from exc
    if seconds < 0 or seconds != seconds:  # NaN
        raise ConfigError(f"{name} must not be negative, got {value!r}")
    return seconds


def _positive(name: str, value: str | None, default: int) -> int:
    number = _int(name, value, default)
    if number < 1:
        raise ConfigError(f"{name} must be at least 1, got {number}")
    return number


def parse_retry_schedule(value: str) -> tuple[float, ...]:
    """Parse ``"30,180,600"`` or ``"[0.3, 0.6]"`` into seconds."""
    text = value.strip().strip("[]")
    if not text:
        return ()
    try:
        delays = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigError(f"TELEPTY_RETRY_SCHEDULE must be numbers, got {value!r}") from exc
    if any(d < 0 for d in delays):
        raise ConfigError("TELEPTY_RETRY_SCHEDULE delays must not be negative")
    return delays


def _bus_settings(e: Mapping[str, str]) -> dict[str, object]:
    count = _int("TELEPTY_BUS_RETENTION_COUNT", e.get("TELEPTY_BUS_RETENTION_COUNT"),
                 DEFAULT_BUS_RETENTION_COUNT)
    queue = _int("TELEPTY_BUS_SUBSCRIBER_QUEUE", e.get("TELEPTY_BUS_SUBSCRIBER_QUEUE"), 1000)
    if count < 0:
        raise ConfigError("TELEPTY_BUS_RETENTION_COUNT must not be negative")
    if queue < 1:
        raise ConfigError("TELEPTY_BUS_SUBSCRIBER_QUEUE must be at least 1")
    interval = _seconds("TELEPTY_BUS_TRIM_INTERVAL", e.get("TELEPTY_BUS_TRIM_INTERVAL"), 60.0)
    return {
        "bus_retention_count": count,
        "bus_retention_seconds": _seconds(
            "TELEPTY_BUS_RETENTION_SECONDS", e.get("TELEPTY_BUS_RETENTION_SECONDS"),
            DEFAULT_BUS_RETENTION_SECONDS,
        ),
        "bus_trim_interval": max(interval, 0.05),
        "bus_subscriber_queue": queue,
    }


NATS_SCHEMES = ("nats", "tls")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _nats_settings(e: Mapping[str, str]) -> dict[str, object]:
    """The NATS JetStream bus (``TELEPTY_BUS_URL``) and its credentials.

    Credentials never ride in the URL (it is shown by ``telepty doctor`` and in logs), and a
    server on another machine must be reached with some: whoever may publish on the fleet's
    subjects can type prompts into any machine's agents, so an open remote server is refused
    here rather than discovered later.
    """
    url = (e.get("TELEPTY_BUS_URL") or "").strip() or None
    creds = {
        "nats_creds": (e.get("TELEPTY_NATS_CREDS") or "").strip() or None,
        "nats_nkey": (e.get("TELEPTY_NATS_NKEY") or "").strip() or None,
        "nats_token": (e.get("TELEPTY_NATS_TOKEN") or "").strip() or None,
        "nats_user": (e.get("TELEPTY_NATS_USER") or "").strip() or None,
        "nats_password": e.get("TELEPTY_NATS_PASSWORD") or None,
    }
    if url is None:
        return {"bus_url": None, **creds}
    hosts = []
    for server in url.split(","):
        parts = urlsplit(server.strip())
        if parts.scheme not in NATS_SCHEMES or not parts.hostname:
            raise ConfigError(f"TELEPTY_BUS_URL must be nats://HOST:PORT (or tls://…), comma separated, "
                              f"got {server.strip()!r}")
        if parts.username is not None or parts.password is not None:
            raise ConfigError("TELEPTY_BUS_URL must not carry credentials: set TELEPTY_NATS_TOKEN, "
                              "TELEPTY_NATS_USER/TELEPTY_NATS_PASSWORD, TELEPTY_NATS_NKEY or "
                              "TELEPTY_NATS_CREDS")
        hosts.append(parts.hostname.lower())
    if bool(creds["nats_user"]) != bool(creds["nats_password"]):
        raise ConfigError("TELEPTY_NATS_USER and TELEPTY_NATS_PASSWORD go together")
    remote = [h for h in hosts if h not in _LOOPBACK_HOSTS and not h.startswith("127.")]
    if remote and not any(creds.values()):
        raise ConfigError(
            f"TELEPTY_BUS_URL points at another machine ({remote[0]}) but no NATS credentials are set: "
            "anyone who can reach that server could type prompts into this machine's agents. Run "
            "nats-server with authentication and set TELEPTY_NATS_CREDS, TELEPTY_NATS_NKEY, "
            "TELEPTY_NATS_TOKEN or TELEPTY_NATS_USER/TELEPTY_NATS_PASSWORD")
    return {"bus_url": url, **creds}


def _identity_settings(e: Mapping[str, str]) -> dict[str, object]:
    """Fan-out cap, audit retention and the session token (issue 8)."""
    fanout = _int("TELEPTY_FANOUT_MAX", e.get("TELEPTY_FANOUT_MAX"), DEFAULT_FANOUT_MAX)
    if fanout < 1:
        raise ConfigError("TELEPTY_FANOUT_MAX must be at least 1")
    count = _int("TELEPTY_AUDIT_RETENTION_COUNT", e.get("TELEPTY_AUDIT_RETENTION_COUNT"),
                 DEFAULT_AUDIT_RETENTION_COUNT)
    if count < 0:
        raise ConfigError("TELEPTY_AUDIT_RETENTION_COUNT must not be negative")
    return {
        "fanout_max": fanout,
        "audit_retention_count": count,
        "audit_retention_seconds": _seconds(
            "TELEPTY_AUDIT_RETENTION_SECONDS", e.get("TELEPTY_AUDIT_RETENTION_SECONDS"),
            DEFAULT_AUDIT_RETENTION_SECONDS,
        ),
        "session_token": (e.get("TELEPTY_SESSION_TOKEN") or "").strip() or None,
        "session_id": (e.get("TELEPTY_SESSION_ID") or "").strip() or None,
    }


def default_home() -> Path:
    return Path.home() / ".config" / "telepty"


@dataclass(frozen=True)
class Config:
    home: Path = field(default_factory=default_home)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    machine_id: str = field(default_factory=socket.gethostname)
    url: str | None = None  # TELEPTY_URL: where the CLI finds the daemon
    allowed_origins: tuple[str, ...] = ()
    trust_tailscale: bool = True
    peer_allowlist: tuple[str, ...] = ()
    require_token: bool = False
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = 0.1  # +/- fraction applied to each retry delay
    # How long a prompt may be held behind an interrupted one whose text may still be in
    # the input before it fails held_timeout (TELEPTY_HOLD_MAX_S).
    hold_max_s: float = DEFAULT_HOLD_MAX_S
    quiet_ms: int = DEFAULT_QUIET_MS
    max_prompt_bytes: int = MAX_PROMPT_BYTES
    audit_content: bool = False  # TELEPTY_AUDIT_CONTENT: keep prompt text in the audit log
    # The audit log keeps at most this many rows (0 = no count bound), none older than
    # this many seconds (0 = no age bound).
    audit_retention_count: int = DEFAULT_AUDIT_RETENTION_COUNT
    audit_retention_seconds: float = DEFAULT_AUDIT_RETENTION_SECONDS
    fanout_max: int = DEFAULT_FANOUT_MAX  # most targets one multicast/broadcast may reach
    # TELEPTY_SESSION_TOKEN: the identity of the session this CLI runs in (sent to the
    # daemon as x-telepty-session-token). A secret, so never part of repr().
    session_token: str | None = field(default=None, repr=False)
    session_id: str | None = None  # TELEPTY_SESSION_ID: the session this CLI runs in, as named at start
    scrollback_bytes: int = 256 * 1024
    health_interval: float = 10.0  # session_health period; 0 = off
    idle_seconds: float = 60.0  # quiet time after which session.idle fires (once); 0 = off
    liveness_interval: float = 2.0
    log_level: str = "WARNING"
    tmux_bin: str = "tmux"
    max_body_bytes: int = 4 * 1024 * 1024  # a 1 MiB prompt, JSON-escaped, fits with room to spare
    settle_ms: int | None = None  # overrides every profile's settle delay (tests, tuning)
    # The bus log keeps at most this many events (0 = no count bound) ...
    bus_retention_count: int = DEFAULT_BUS_RETENTION_COUNT
    # ... accepted within this many seconds (0 = no age bound), trimmed every interval.
    bus_retention_seconds: float = DEFAULT_BUS_RETENTION_SECONDS
    bus_trim_interval: float = 60.0
    bus_subscriber_queue: int = 1000  # live events a bus subscriber may fall behind by
    hop_limit: int = DEFAULT_HOP_LIMIT  # TELEPTY_HOP_LIMIT: relays a prompt may pass through
    # TELEPTY_BUS_URL: nats://… puts the bus (and id@host delivery between the machines on it)
    # on NATS JetStream (telepty.bus.nats_fleet); unset, the bus is this home's SQLite log.
    bus_url: str | None = None
    nats_creds: str | None = None  # TELEPTY_NATS_CREDS: a .creds file (JWT and nkey seed)
    nats_nkey: str | None = None  # TELEPTY_NATS_NKEY: a file holding an nkey seed
    nats_token: str | None = field(default=None, repr=False)  # TELEPTY_NATS_TOKEN
    nats_user: str | None = None  # TELEPTY_NATS_USER (with TELEPTY_NATS_PASSWORD)
    nats_password: str | None = field(default=None, repr=False)

    @property
    def db_path(self) -> Path:
        return self.home / "telepty.db"

    @property
    def token_path(self) -> Path:
        return self.home / "token"

    @property
    def runtime_path(self) -> Path:
        return self.home / "daemon.json"  # telepty.runtime_file

    @property
    def lock_path(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def profiles_path(self) -> Path:
        return self.home / "profiles.toml"

    @property
    def peers_path(self) -> Path:
        return self.home / "peers.json"

    @property
    def base_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        host = self.host
        if host in {"0.0.0.0", "::", ""}:
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def with_(self, **changes: object) -> Config:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        e = os.environ if env is None else env
        home = Path(e["TELEPTY_HOME"]).expanduser() if e.get("TELEPTY_HOME") else default_home()
        schedule = (
            parse_retry_schedule(e["TELEPTY_RETRY_SCHEDULE"])
            if e.get("TELEPTY_RETRY_SCHEDULE") is not None
            else DEFAULT_RETRY_SCHEDULE
        )
        return cls(
            home=home,
            host=e.get("TELEPTY_HOST") or DEFAULT_HOST,
            port=_int("TELEPTY_PORT", e.get("TELEPTY_PORT"), DEFAULT_PORT),
            machine_id=e.get("TELEPTY_MACHINE_ID") or socket.gethostname(),
            url=e.get("TELEPTY_URL") or None,
            allowed_origins=_csv(e.get("TELEPTY_ALLOWED_ORIGINS")),
            trust_tailscale=_flag(e.get("TELEPTY_TRUST_TAILSCALE"), True),
            peer_allowlist=_csv(e.get("TELEPTY_PEER_ALLOWLIST")),
            require_token=_flag(e.get("TELEPTY_REQUIRE_TOKEN"), False),
            retry_schedule=schedule,
            quiet_ms=_int("TELEPTY_QUIET_MS", e.get("TELEPTY_QUIET_MS"), DEFAULT_QUIET_MS),
            hold_max_s=_seconds("TELEPTY_HOLD_MAX_S", e.get("TELEPTY_HOLD_MAX_S"), DEFAULT_HOLD_MAX_S),
            max_prompt_bytes=_int(
                "TELEPTY_MAX_PROMPT_BYTES", e.get("TELEPTY_MAX_PROMPT_BYTES"), MAX_PROMPT_BYTES
            ),
            audit_content=_flag(e.get("TELEPTY_AUDIT_CONTENT"), False),
            **_identity_settings(e),
            health_interval=_seconds("TELEPTY_HEALTH_INTERVAL", e.get("TELEPTY_HEALTH_INTERVAL"), 10.0),
            idle_seconds=_seconds("TELEPTY_IDLE_SECONDS", e.get("TELEPTY_IDLE_SECONDS"), 60.0),
            log_level=(e.get("TELEPTY_LOG_LEVEL") or "WARNING").upper(),
            tmux_bin=e.get("TELEPTY_TMUX_BIN") or "tmux",
            max_body_bytes=_positive("TELEPTY_MAX_BODY_BYTES", e.get("TELEPTY_MAX_BODY_BYTES"),
                                     4 * 1024 * 1024),
            settle_ms=(
                _int("TELEPTY_SETTLE_MS", e["TELEPTY_SETTLE_MS"], 0)
                if e.get("TELEPTY_SETTLE_MS")
                else None
            ),
            **_bus_settings(e),
            hop_limit=_int("TELEPTY_HOP_LIMIT", e.get("TELEPTY_HOP_LIMIT"), DEFAULT_HOP_LIMIT),
            **_nats_settings(e),
        )
