"""What a daemon runs when ``TELEPTY_BUS_URL`` puts it on a NATS JetStream bus.

The connection (``nats_link``), the shared event log the bus appends to (``nats_log``),
the feed that gives every machine's events to this daemon's subscribers, the fleet's
work queues for ``id@host`` prompts (``telepty.relay.nats_queue``) and the worker that
takes this machine's own. The daemon builds one with ``fleet_for`` and starts it around
its delivery engine; without ``TELEPTY_BUS_URL`` there is none and nothing of NATS is
imported.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from telepty.bus.nats_link import NatsLink, NatsMissing, NatsUnreachable
from telepty.bus.nats_log import EventFeed, MachineEvents, NatsEventLog
from telepty.config import Config
from telepty.relay.nats_queue import FleetQueue, WorkQueueWorker

if TYPE_CHECKING:
    from telepty.bus.hub import EventBus
    from telepty.delivery.engine import DeliveryEngine
    from telepty.delivery.intake import Intake


class NatsFleet:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.link = NatsLink(config)
        self.log = NatsEventLog(self.link, config.machine_id)
        self.queue = FleetQueue(self.link, config.machine_id, self.log.last_seq)
        self.feed: EventFeed | None = None
        self.worker: WorkQueueWorker | None = None

    def own_events(self) -> MachineEvents:
        """This machine's events only (what an earlier daemon here announced)."""
        return self.log.of_machine(self.config.machine_id)

    async def connect(self) -> None:
        """Connect and make sure the streams exist; ``SystemExit`` saying why if not."""
        try:
            await self.link.connect()
            await self.link.ensure_events_stream()
            await self.link.ensure_work_stream(self.config.machine_id)
        except NatsUnreachable as exc:
            raise SystemExit(f"telepty: {exc}") from None
        except Exception as exc:
            await self.link.close()
            raise SystemExit(f"telepty: the NATS server at {self.config.bus_url} refused to set up "
                             f"telepty's streams: {type(exc).__name__}: {exc}") from None

    async def start(self, bus: EventBus, intake: Intake, engine: DeliveryEngine) -> None:
        """Feed subscribers from the stream's tail on, and start taking this machine's work."""
        self.feed = EventFeed(self.link, bus.deliver)
        self.feed.listeners.append(self.queue.on_event)
        await self.feed.start(await self.log.last_seq())
        self.worker = WorkQueueWorker(self.link, self.config.machine_id, intake, engine, bus.emit,
                                      max_prompt_bytes=self.config.max_prompt_bytes)
        await self.worker.start()

    async def stop_worker(self) -> None:
        """Before the engine stops: items in progress stay unacknowledged for the next start."""
        if self.worker is not None:
            await self.worker.stop()

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        with contextlib.suppress(Exception):
            await self.link.close()


def fleet_for(config: Config) -> NatsFleet | None:
    """The daemon's NATS side, or None on the default SQLite bus; a ``SystemExit`` that
    says what to install when TELEPTY_BUS_URL is set but nats-py is missing."""
    if not config.bus_url:
        return None
    try:
        return NatsFleet(config)
    except NatsMissing as exc:
        raise SystemExit(f"telepty: {exc}") from None
