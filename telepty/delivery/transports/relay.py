"""RelayTransport: a prompt for ``id@host``, handed to the machine whose terminal it is for.

The engine treats another machine's session like any other: a record, a FIFO queue, the
retry schedule. What differs is the attempt: the prompt is not pasted here but forwarded
(``telepty.relay``: over HTTP to the peer daemon, or onto a fleet machine's NATS work
queue), and the other machine's delivery decides the outcome. That machine runs its own
readiness check and quiet guard, with the delivery's ``quiet_ms``; here there is no
screen to look at and nothing to wait quiet for.
"""

from __future__ import annotations

from typing import Protocol

from telepty.delivery.model import NO_TRANSPORT, STAGE_CHECK_READY, Delivery, DeliveryError
from telepty.delivery.profiles import SubmitProfile
from telepty.delivery.transports.base import DeliveryOutcome, StageCallback, TransportBase


class Forwarder(Protocol):
    """One attempt's way to the other machine; errors are ``DeliveryError``s."""

    async def reachable(self) -> None:
        """Raise (``unknown_peer``, ``no_transport``, a bus outage) if there is no way to
        the machine right now; nothing is sent."""
        ...

    async def forward(self, d: Delivery, on_stage: StageCallback) -> DeliveryOutcome:
        """Hand ``d`` over and mirror the other machine's outcome. ``on_stage("forward")``
        comes before anything is sent (with ``d.evidence`` saying where to, so a restart
        resends the same hop)."""
        ...


class RelayTransport(TransportBase):
    name = "relay"

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    async def check_ready(self, *, for_keys: bool = False) -> None:
        if for_keys:
            raise DeliveryError(NO_TRANSPORT, "raw keys are not relayed to peers", stage=STAGE_CHECK_READY)
        await self.forwarder.reachable()

    async def is_quiet(self, quiet_ms: int) -> bool:
        return True  # the other machine runs the quiet guard, with the delivery's quiet_ms

    async def deliver(self, d: Delivery, *, profile: SubmitProfile,
                      on_stage: StageCallback) -> DeliveryOutcome:
        return await self.forwarder.forward(d, on_stage)
