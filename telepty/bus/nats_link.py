"""The daemon's connection to a NATS server with JetStream, and the streams it needs.

nats-py is an optional dependency (``pip install 'telepty[nats]'``): it is imported
only here and only when ``TELEPTY_BUS_URL`` is set, so a daemon on the default SQLite
bus neither needs nor loads it. Credentials come from the environment
(``TELEPTY_NATS_*``, see ``telepty.config``) and are handed to the client, never logged.

Once connected, the client reconnects by itself for as long as the daemon runs (a
server restart is a pause, not an outage); only the first connection is given a
deadline, so a daemon pointed at a server that is not there says so and exits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from telepty.bus.nats_names import (
    EVENTS_ALL,
    EVENTS_STREAM,
    WORKER,
    work_stream,
    work_subject,
)
from telepty.config import Config

log = logging.getLogger("telepty.bus.nats")

INSTALL_HINT = "pip install 'telepty[nats]'  (the NATS client, nats-py)"
CONNECT_DEADLINE_S = 10.0
DUPLICATE_WINDOW_S = 120.0  # JetStream de-duplicates a message id this long
ACK_WAIT_S = 5.0  # a work item taken and not reported on for this long is handed out again


class NatsMissing(RuntimeError):
    """TELEPTY_BUS_URL asks for NATS but nats-py is not installed."""


class NatsUnreachable(RuntimeError):
    """The first connection could not be made."""


def import_nats() -> Any:
    try:
        import nats
        import nats.js.api
        import nats.js.errors
    except ImportError as exc:
        raise NatsMissing(
            f"TELEPTY_BUS_URL is set to a NATS server, but the NATS client is not installed: {INSTALL_HINT}"
        ) from exc
    return nats


def connect_options(config: Config) -> dict[str, Any]:
    """What nats-py's ``connect`` takes from our settings (credentials included)."""
    assert config.bus_url is not None
    opts: dict[str, Any] = {
        "servers": [s.strip() for s in config.bus_url.split(",") if s.strip()],
        "name": f"telepty {config.machine_id}",
        "connect_timeout": 2,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
    }
    if config.nats_creds:
        opts["user_credentials"] = config.nats_creds
    if config.nats_nkey:
        opts["nkeys_seed"] = config.nats_nkey
    if config.nats_token:
        opts["token"] = config.nats_token
    if config.nats_user:
        opts["user"] = config.nats_user
        opts["password"] = config.nats_password
    return opts


def _refused_credentials(exc: BaseException | None) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "authorization" in text or "authentication" in text


def describe_servers(config: Config) -> str:
    return config.bus_url or "(none)"


class NatsLink:
    """One client connection and its JetStream context, shared by the bus, the feed,
    the work queue and ``telepty doctor``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.nats = import_nats()
        self.nc: Any = None
        self.js: Any = None
        self.api = self.nats.js.api
        self.errors = self.nats.js.errors
        self.reconnected: list[Any] = []  # async callbacks run after each reconnect

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    @property
    def closed(self) -> bool:
        return self.nc is None or self.nc.is_closed

    @property
    def max_payload(self) -> int:
        return int(getattr(self.nc, "max_payload", 0) or 1024 * 1024)

    async def connect(self, deadline_s: float = CONNECT_DEADLINE_S) -> None:
        """Connect, retrying until ``deadline_s``; raises ``NatsUnreachable`` saying why."""
        opts = connect_options(self.config)
        give_up = time.monotonic() + deadline_s
        last: BaseException | None = None
        # The client would retry a first connection forever when told to reconnect; it is
        # told so only once connected, so that a server that is not there, or that refuses
        # our credentials, is reported here.
        opts["allow_reconnect"] = False
        while True:
            try:
                self.nc = await self.nats.connect(
                    **opts, error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                self.nc.options["allow_reconnect"] = True
                break
            except Exception as exc:  # refused, timed out, authorization violation …
                last = exc
            if time.monotonic() >= give_up or _refused_credentials(last):
                raise NatsUnreachable(
                    f"cannot connect to the NATS server at {describe_servers(self.config)}: "
                    f"{type(last).__name__}: {last}".rstrip(": ") + self._hint(last)
                ) from None
            await asyncio.sleep(0.5)  # the interval between first-connection attempts
        self.js = self.nc.jetstream(timeout=5.0)
        try:
            await self.js.account_info()
        except Exception as exc:
            await self.close()
            raise NatsUnreachable(
                f"the NATS server at {describe_servers(self.config)} has no JetStream for us "
                f"({type(exc).__name__}: {exc}); start it with -js"
            ) from None

    @staticmethod
    def _hint(exc: BaseException | None) -> str:
        if _refused_credentials(exc):
            return ("; the server refused our credentials: check TELEPTY_NATS_TOKEN, TELEPTY_NATS_USER/"
                    "TELEPTY_NATS_PASSWORD, TELEPTY_NATS_NKEY or TELEPTY_NATS_CREDS")
        return "; is nats-server running (nats-server -js …) and TELEPTY_BUS_URL right?"

    async def _on_error(self, exc: Exception) -> None:
        log.info("nats: %s: %s", type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        log.warning("nats: disconnected from %s; reconnecting", describe_servers(self.config))

    async def _on_reconnected(self) -> None:
        log.warning("nats: reconnected to %s", self.nc.connected_url.netloc if self.nc else "?")
        for callback in list(self.reconnected):
            try:
                await callback()
            except Exception:
                log.exception("nats: reconnect handler failed")

    async def close(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.drain(), 3.0)
            except Exception:
                await nc.close()

    # -- streams ---------------------------------------------------------------------------

    async def ensure_events_stream(self) -> Any:
        """The fleet's event stream, made on first use with this daemon's retention.

        A stream that exists is left as it is: its limits are the fleet's, set by whoever
        made it (change them with the server's tools), not by the last daemon to start.
        """
        api = self.api
        cfg = api.StreamConfig(
            name=EVENTS_STREAM, subjects=[EVENTS_ALL], retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE, discard=api.DiscardPolicy.OLD,
            max_msgs=self.config.bus_retention_count or -1,
            max_age=self.config.bus_retention_seconds or 0,
            duplicate_window=DUPLICATE_WINDOW_S, num_replicas=1,
        )
        return await self._ensure_stream(cfg)

    async def ensure_work_stream(self, machine_id: str) -> Any:
        """This machine's work queue and the one durable consumer that takes from it."""
        api = self.api
        stream = work_stream(machine_id)
        cfg = api.StreamConfig(
            name=stream, subjects=[work_subject(machine_id)], retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE, discard=api.DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_S, num_replicas=1,
        )
        info = await self._ensure_stream(cfg)
        consumer = api.ConsumerConfig(
            durable_name=WORKER, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S,
            max_deliver=-1, max_ack_pending=1000, deliver_policy=api.DeliverPolicy.ALL,
            filter_subject=work_subject(machine_id),
        )
        try:
            await self.js.consumer_info(stream, WORKER)
        except self.errors.NotFoundError:
            await self.js.add_consumer(stream, config=consumer)
        return info

    async def _ensure_stream(self, cfg: Any) -> Any:
        try:
            return await self.js.stream_info(cfg.name)
        except self.errors.NotFoundError:
            pass
        try:
            return await self.js.add_stream(cfg)
        except self.errors.BadRequestError:  # made meanwhile by another daemon, differently
            return await self.js.stream_info(cfg.name)

    async def stream_info(self, name: str) -> Any | None:
        """None when there is no such stream."""
        try:
            return await self.js.stream_info(name)
        except self.errors.NotFoundError:
            return None
