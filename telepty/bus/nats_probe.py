"""What ``telepty doctor`` says about a NATS bus: the connection, the fleet's event
stream, and this machine's work queue. Asked from the CLI with the same settings the
daemon uses, so it answers whether the daemon is up or not."""

from __future__ import annotations

from typing import Any

from telepty.bus.nats_link import INSTALL_HINT, NatsLink, NatsMissing, NatsUnreachable
from telepty.bus.nats_names import (
    EVENTS_STREAM,
    WORK_STREAM_PREFIX,
    WORKER,
    machine_of_work_stream,
    work_stream,
)
from telepty.config import Config

Finding = tuple[str, bool, str, str]  # name, ok, detail, hint
START_HINT = "start a daemon with this TELEPTY_BUS_URL (`telepty daemon`); it makes the streams"


async def probe_nats(config: Config, *, deadline_s: float = 3.0) -> list[Finding]:
    try:
        link = NatsLink(config)
    except NatsMissing as exc:
        return [("nats", False, str(exc), INSTALL_HINT)]
    try:
        await link.connect(deadline_s=deadline_s)
    except NatsUnreachable as exc:
        detail, _, hint = str(exc).partition("; ")
        return [("nats", False, detail, hint or "start nats-server -js (see docs/fleet.md)")]
    try:
        return [_connected(link, config), *await _streams(link, config)]
    finally:
        await link.close()


def _connected(link: NatsLink, config: Config) -> Finding:
    version = getattr(link.nc, "connected_server_version", None) or "?"
    return ("nats", True, f"connected to {config.bus_url} (nats-server {version}, JetStream on, "
            f"max_payload {link.max_payload} bytes)", "")


async def _streams(link: NatsLink, config: Config) -> list[Finding]:
    streams: list[Any] = await link.js.streams_info()
    names = {s.config.name: s for s in streams}
    machines = sorted(m for m in (machine_of_work_stream(n) for n in names
                                  if n.startswith(WORK_STREAM_PREFIX)) if m)
    out: list[Finding] = []
    events = names.get(EVENTS_STREAM)
    if events is None:
        out.append(("nats events", False, f"no stream {EVENTS_STREAM} on the server yet", START_HINT))
    else:
        st = events.state
        span = f"seq {st.first_seq}..{st.last_seq}" if st.messages else f"empty, last seq {st.last_seq}"
        out.append(("nats events", True, f"{EVENTS_STREAM} holds {st.messages} event(s) ({span}); "
                    f"machines of the fleet: {', '.join(machines) or 'none yet'}", ""))
    own = names.get(work_stream(config.machine_id))
    if own is None:
        out.append(("nats work queue", False, f"no work queue {work_stream(config.machine_id)} for "
                     f"machine {config.machine_id!r} yet", START_HINT))
        return out
    try:
        worker = await link.js.consumer_info(own.config.name, WORKER)
        taken = int(worker.num_ack_pending or 0)
    except Exception:
        taken = 0
    waiting = int(own.state.messages or 0) - taken
    out.append(("nats work queue", True, f"{own.config.name}: {waiting} waiting, {taken} being delivered "
                f"(prompts for {config.machine_id!r} from other machines)", ""))
    return out
