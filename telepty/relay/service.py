"""The relay: prompts for ``id@host`` become local deliveries that a peer daemon completes.

How it fits the delivery engine without a second queue: a remote target ``s@B`` is a
*pseudo-session* (id ``s@b``, never in the registry's list) whose transport is the
engine's ``RelayTransport``, forwarding through a ``PeerForwarder`` (or the fleet's
queue). So a relayed prompt gets everything a local one gets: a persisted
record (origin ``relay``) before the caller hears back, per-target FIFO, the retry
schedule, cancel, wait, events.

One attempt = one ``POST {peer}/api/sessions/s/inject`` with the peer's token (never the
local one), ``x-telepty-hop`` = incoming hop + 1 and an ``Idempotency-Key`` derived from
the local delivery id, so a retry after an ambiguous network failure cannot deliver
twice on the peer. The remote delivery is then polled until final and its status is
mirrored into the local record. A peer that cannot be reached is retryable (nothing was
accepted there); a 401 is ``peer_unauthorized`` and final.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson

from telepty.bus.envelope import make_event
from telepty.clock import utc_now
from telepty.config import Config
from telepty.delivery.model import (
    NO_TRANSPORT,
    STAGE_CHECK_READY,
    STAGE_FORWARD,
    Delivery,
    DeliveryError,
)
from telepty.delivery.reply_guide import reply_footer
from telepty.delivery.transports.base import DeliveryOutcome, StageCallback, Transport
from telepty.delivery.transports.relay import Forwarder, RelayTransport
from telepty.errors import ErrorCode, NotFound, TeleptyError
from telepty.relay.peers import (
    PROBE_TIMEOUT_S,
    UNKNOWN_PEER,
    Peer,
    PeerDown,
    PeerResolver,
    probe_peer,
    split_target,
)
from telepty.sessions.model import Session, SessionType

if TYPE_CHECKING:
    from telepty.bus.hub import EventBus
    from telepty.relay.nats_queue import FleetQueue
    from telepty.sessions.registry import SessionRegistry

log = logging.getLogger("telepty.relay")


class LocalSessions(Protocol):
    def find_live(self, name: str) -> Session | None: ...

HOP_HEADER = "x-telepty-hop"
RELAY_FROM_HEADER = "x-telepty-relay-from"
PEER_UNREACHABLE = ErrorCode.PEER_UNREACHABLE
PEER_UNAUTHORIZED = ErrorCode.PEER_UNAUTHORIZED
HOP_LIMIT = ErrorCode.HOP_LIMIT
FORWARD_WAIT = 20.0  # the peer holds our POST this long for its delivery to finish
CALL_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0  # a black-holed peer fails the attempt this fast (retryable)


class HopLimit(TeleptyError):
    status = 508


def incoming_hop(value: str | None) -> int:
    if not value:
        return 0
    try:
        hop = int(value)
    except ValueError:
        raise TeleptyError(ErrorCode.INVALID_HEADER,
                           f"{HOP_HEADER} must be an integer, got {value!r}") from None
    return max(hop, 0)


class PeerHttp:
    """Small JSON client for peer daemons; one pooled aiohttp session."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def call(
        self, peer: Peer, method: str, path: str, body: Any = None, *,
        headers: dict[str, str] | None = None, timeout: float = CALL_TIMEOUT,  # noqa: ASYNC109
    ) -> tuple[int, Any]:
        h = {"Accept": "application/json", **(headers or {})}
        if peer.token:
            h["x-telepty-token"] = peer.token  # the PEER's token: the local one never leaves
        data = None
        if body is not None:
            data = orjson.dumps(body)
            h["Content-Type"] = "application/json"
        try:
            async with self._client().request(
                method, peer.url + path, data=data, headers=h,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT)),
            ) as resp:
                raw = await resp.read()
                try:
                    payload = orjson.loads(raw) if raw else None
                except orjson.JSONDecodeError:
                    payload = raw.decode(errors="replace")[:200]
                return resp.status, payload
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError, OSError) as exc:
            raise PeerDown(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Relay:
    """Peer resolution, the pseudo-sessions, relayed turn_requests, peer status."""

    def __init__(self, config: Config, *, emit: Callable[..., Any] | None = None,
                 local: LocalSessions | None = None, fleet: FleetQueue | None = None) -> None:
        self.config = config
        self.resolver = PeerResolver(config.peers_path, config.machine_id)
        self.http = PeerHttp()
        self.emit = emit
        # This machine's sessions: a reply address that is one of them is sent as id@here.
        self.local_registry = local
        self._hops: dict[str, int] = {}  # delivery id → hop count to send
        self._written_on: dict[str, str] = {}  # delivered relay id → the peer's machine id
        self._machine_ids: dict[str, str] = {}  # peer url → its machine id (from /api/meta)
        # With a NATS bus: the fleet's work queues (telepty.relay.nats_queue.FleetQueue),
        # used for every host that is a machine of the fleet; None: HTTP only.
        self.fleet = fleet

    # -- targets ------------------------------------------------------------------------

    def is_local(self, host: str | None) -> bool:
        return self.resolver.is_local(host)

    async def check_remote(self, target: str, hop_in: int) -> tuple[str, Peer] | None:
        """``s@host`` on another machine → (pseudo-session id, peer); a local target → None.

        Raises ``hop_limit`` (508) past the limit and ``unknown_peer`` (404): both before
        any record exists."""
        sid, host = split_target(target)
        if host is None or self.is_local(host):
            return None
        if hop_in + 1 > self.config.hop_limit:
            raise HopLimit(HOP_LIMIT, f"{target!r} arrived after {hop_in} hop(s); forwarding it again "
                           f"would pass the hop limit of {self.config.hop_limit} (a relay loop?)")
        if self.fleet is not None and await self.fleet.knows(host):
            return f"{sid}@{host.lower()}", Peer(name=host, url=f"nats:{host.lower()}", source="nats")
        peer = await self.resolver.resolve(host)
        assert peer is not None
        return f"{sid}@{host.lower()}", peer

    def note_hop(self, delivery_id: str, hop: int) -> None:
        self._hops[delivery_id] = hop

    def hop_for(self, d: Delivery) -> int:
        """The hop count to send: noted at submit, else what an earlier attempt recorded
        (after a restart the in-memory note is gone, the record is not)."""
        if d.id in self._hops:
            return self._hops[d.id]
        recorded = d.evidence.get("relay", {}).get("hop") if isinstance(d.evidence, dict) else None
        return recorded if isinstance(recorded, int) and recorded > 0 else 1

    def note_written_on(self, delivery_id: str, machine_id: str) -> None:
        """The machine a relayed delivery was written on (its ``inject_written`` says so)."""
        self._written_on[delivery_id] = machine_id

    def forget(self, d: Delivery) -> None:
        self._hops.pop(d.id, None)

    async def machine_id_of(self, peer: Peer) -> str:
        """The peer's own machine id (asked once), else the name it was addressed by."""
        known = self._machine_ids.get(peer.url)
        if known is None:
            try:
                status, meta = await self.http.call(peer, "GET", "/api/meta", timeout=3.0)
            except PeerDown:
                return peer.name
            if status != 200 or not isinstance(meta, dict) or not isinstance(meta.get("machine_id"), str):
                return peer.name
            known = self._machine_ids[peer.url] = meta["machine_id"]
        return known

    def emitter(self, bus: EventBus) -> Callable[..., Awaitable[int]]:
        """The engine's ``emit``: a relayed delivery's ``inject_written`` carries the
        ``source_host`` of the peer whose terminal it was written into."""
        async def emit(kind: str, *, target: str | None = None, **fields: Any) -> int:
            host = None
            if kind == "inject_written":
                host = self._written_on.pop(str(fields.get("inject_id")), None)
            if host is None:
                return int(await bus.emit(kind, target=target, **fields))
            seq, _ = await bus.publish(make_event(kind, source_host=host, target=target, **fields))
            return int(seq)
        return emit

    def pseudo_session(self, session_id: str) -> Session:
        sid, host = split_target(session_id)
        now = utc_now()
        return Session(id=f"{sid}@{(host or '').lower()}", type=SessionType.PANE, command="relay",
                       cwd="", created_at=now, updated_at=now, agent="other",
                       meta={"relay": {"session": sid, "host": host}})

    def registry(self, real: SessionRegistry) -> RelayRegistry:
        """The engine's view of ``real``: ``id@host`` names are relay pseudo-sessions."""
        return RelayRegistry(real, self)

    def transport_for(self, session: Session) -> Transport | None:
        """The transport of a relay pseudo-session (``TransportResolver``'s ``remote``);
        None for a session of this machine."""
        if "relay" not in session.meta:
            return None
        http = PeerForwarder(self, session)
        forwarder: Forwarder = http if self.fleet is None else self.fleet.forwarder(http)
        return RelayTransport(forwarder)

    # -- peers and their sessions -------------------------------------------------------

    async def peer_status(self, peer: Peer) -> dict[str, Any]:
        return await probe_peer(peer, lambda path: self.http.call(peer, "GET", path, timeout=PROBE_TIMEOUT_S))

    async def peers_status(self) -> list[dict[str, Any]]:
        peers = list(self.resolver.peers().values())
        return list(await asyncio.gather(*(self.peer_status(p) for p in peers)))

    async def peer_sessions(self, query: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every peers.json peer's sessions; one that fails to answer is listed as such."""
        path = "/api/sessions" + ("?" + urllib.parse.urlencode(query) if query else "")

        async def one(peer: Peer) -> dict[str, Any]:
            out: dict[str, Any] = {**peer.public(), "reachable": False, "sessions": []}
            try:
                status, body = await self.http.call(peer, "GET", path, timeout=3.0)
            except PeerDown as exc:
                out["error"] = f"{PEER_UNREACHABLE}: {exc}"
                return out
            if status != 200 or not isinstance(body, list):
                out["error"] = PEER_UNAUTHORIZED if status in (401, 403) else f"HTTP {status}"
                return out
            out["reachable"] = True
            out["sessions"] = body
            return out
        peers = list(self.resolver.peers().values())
        return list(await asyncio.gather(*(one(p) for p in peers)))

    async def close(self) -> None:
        await self.http.close()


class RelayRegistry:
    """The engine's view of the registry: ``id@host`` names are relay pseudo-sessions."""

    def __init__(self, real: SessionRegistry, relay: Relay) -> None:
        self._real = real
        self._relay = relay

    def resolve(self, name: str, *, live_only: bool = False) -> Session:
        if "@" in name:
            return self._relay.pseudo_session(name)
        return self._real.resolve(name, live_only=live_only)

    def get(self, session_id: str) -> Session | None:
        if "@" in session_id:
            return self._relay.pseudo_session(session_id)
        return self._real.get(session_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class PeerForwarder:
    """Forwards one delivery to the peer daemon over HTTP and mirrors the peer's outcome."""

    def __init__(self, relay: Relay, session: Session) -> None:
        self.relay = relay
        self.session = session
        info = session.meta["relay"]
        self.remote_session: str = info["session"]
        self.host: str = info["host"]
        self.peer: Peer | None = None

    async def reachable(self) -> None:
        try:
            self.peer = await self.relay.resolver.resolve(self.host)
        except NotFound as exc:
            raise DeliveryError(UNKNOWN_PEER, exc.detail, stage=STAGE_CHECK_READY) from None
        if self.peer is None:
            raise DeliveryError(NO_TRANSPORT, f"{self.host!r} is now this machine; inject locally",
                                stage=STAGE_CHECK_READY)

    async def forward(self, d: Delivery, on_stage: StageCallback) -> DeliveryOutcome:
        peer = self.peer
        assert peer is not None, "reachable() comes first"
        hop = self.relay.hop_for(d)
        body = {**self.forward_body(d, d.no_enter), "wait": True, "timeout": FORWARD_WAIT}
        headers = {
            HOP_HEADER: str(hop),
            RELAY_FROM_HEADER: self.relay.config.machine_id,
            "Idempotency-Key": f"relay:{self.relay.config.machine_id}:{d.id}",
        }
        evidence: dict[str, Any] = {"relay": {"peer": peer.name, "url": peer.url, "hop": hop,
                                              "remote_session": self.remote_session}}
        d.evidence = evidence  # persisted with the forward stage: a restart re-sends this hop
        await on_stage(STAGE_FORWARD)
        path = f"/api/sessions/{urllib.parse.quote(self.remote_session, safe='')}/inject"
        try:
            status, data = await self.relay.http.call(peer, "POST", path, body, headers=headers,
                                                      timeout=FORWARD_WAIT + CALL_TIMEOUT)
        except PeerDown as exc:
            # Nothing answered; the idempotency key makes a retry safe even if the peer
            # had accepted it before the connection broke.
            raise DeliveryError(PEER_UNREACHABLE, f"peer {peer.name} ({peer.url}): {exc}",
                                stage=STAGE_FORWARD, retryable=True, evidence=evidence) from None
        if status == 401:
            raise DeliveryError(PEER_UNAUTHORIZED, f"peer {peer.name} refused the relay's credentials "
                                "(HTTP 401): set its token in peers.json", stage=STAGE_FORWARD,
                                evidence=evidence)
        if not isinstance(data, dict) or "delivery_id" not in data:
            code = data.get("error") if isinstance(data, dict) else None
            detail = data.get("detail") if isinstance(data, dict) else data
            if code is None and status >= 500:
                raise DeliveryError(PEER_UNREACHABLE, f"peer {peer.name} answered HTTP {status}",
                                    stage=STAGE_FORWARD, retryable=True, evidence=evidence)
            raise DeliveryError(str(code or f"peer_http_{status}"), f"on peer {peer.name}: {detail}",
                                stage=STAGE_FORWARD, evidence=evidence)
        evidence["relay"]["remote_delivery_id"] = data["delivery_id"]
        evidence["relay"]["machine_id"] = await self.relay.machine_id_of(peer)
        if data.get("status") not in ("delivered", "failed", "cancelled"):
            data = await self._poll(peer, data["delivery_id"], evidence)
        return self._mirror(d, peer, data, evidence)

    def forward_body(self, d: Delivery, no_enter: bool) -> dict[str, Any]:
        """The inject body the target machine gets (over HTTP, or in a NATS work item)."""
        return {
            "prompt": self._without_footer(d).decode("utf-8"),
            "from": d.sender, "reply_to": self._reply_to(d), "thread_id": d.thread_id,
            "reply_expected": d.reply_expected, "no_enter": no_enter, "force": d.force, "raw": d.raw,
            "quiet_ms": d.quiet_ms,
        }

    def _reply_to(self, d: Delivery) -> str | None:
        """A reply address that is a live session here becomes ``id@<this machine>`` on the
        peer, so the peer's reply footer (and its ``telepty reply``) points back here."""
        if d.reply_to and "@" not in d.reply_to and self.relay.local_registry is not None:
            if self.relay.local_registry.find_live(d.reply_to) is not None:
                return f"{d.reply_to}@{self.relay.config.machine_id}"
        return d.reply_to

    def _without_footer(self, d: Delivery) -> bytes:
        """The peer adds the reply footer itself; a footer already here would be doubled."""
        if d.reply_expected and d.reply_to:
            footer = reply_footer(d.reply_to).encode("utf-8")
            if d.prompt.endswith(footer):
                return d.prompt[: -len(footer)]
        return d.prompt

    async def _poll(self, peer: Peer, remote_id: str, evidence: dict[str, Any]) -> dict[str, Any]:
        delay = 0.05
        lost_since: float | None = None
        give_up = max(60.0, 2 * sum(self.relay.config.retry_schedule))
        path = f"/api/deliveries/{urllib.parse.quote(remote_id, safe='')}"
        while True:
            await asyncio.sleep(delay)  # the poll interval: the peer's delivery is still running
            delay = min(delay * 2, 0.5)
            try:
                status, data = await self.relay.http.call(peer, "GET", path)
            except PeerDown as exc:
                now = time.monotonic()
                lost_since = lost_since or now
                if now - lost_since > give_up:
                    # Accepted there, outcome unknown: not retried (it may have landed).
                    raise DeliveryError(PEER_UNREACHABLE, f"lost peer {peer.name} after it accepted "
                                        f"delivery {remote_id}: {exc}", stage=STAGE_FORWARD,
                                        evidence=evidence) from None
                continue
            lost_since = None
            if status == 401:
                raise DeliveryError(PEER_UNAUTHORIZED, f"peer {peer.name} refused to report delivery "
                                    f"{remote_id} (HTTP 401)", stage=STAGE_FORWARD, evidence=evidence)
            if status == 200 and isinstance(data, dict):
                if data.get("status") in ("delivered", "failed", "cancelled"):
                    return data
                continue
            raise DeliveryError("remote_delivery_lost", f"peer {peer.name} answered HTTP {status} for "
                                f"delivery {remote_id}", stage=STAGE_FORWARD, evidence=evidence)

    def _mirror(self, d: Delivery, peer: Peer, remote: dict[str, Any],
                evidence: dict[str, Any]) -> DeliveryOutcome:
        info = evidence["relay"]
        info.update(remote_status=remote.get("status"), remote_session_id=remote.get("session_id"),
                    remote_attempts=remote.get("attempts"), remote_confirmed=remote.get("confirmed"))
        if remote.get("status") == "delivered":
            if info.get("machine_id"):
                self.relay.note_written_on(d.id, str(info["machine_id"]))
            return DeliveryOutcome(confirmed=str(remote.get("confirmed") or "unverified"),
                                   detail={**evidence, "remote_evidence": remote.get("evidence") or {}})
        reason = str(remote.get("reason") or remote.get("status") or "failed")
        raise DeliveryError(reason, f"on peer {peer.name}: {remote.get('detail') or reason}",
                            stage=STAGE_FORWARD, evidence=evidence)

