"""Bus envelopes (BUS_EVENT_SCHEMA.md, version 2): building the daemon's own events.

``kind`` is canonical; ``type`` is mirrored for consumers written against v1.
"""

from __future__ import annotations

import uuid
from typing import Any

from telepty.clock import utc_now

ENVELOPE_VERSION = 2


def make_event(
    kind: str, *, source_host: str, target: str | None = None, source: str = "daemon",
    **fields: Any,
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "version": ENVELOPE_VERSION,
        "message_id": f"{kind}-{uuid.uuid4()}",
        "kind": kind,
        "type": kind,
        "source": source,
        "source_host": source_host,
        "target": target,
        "ts": utc_now(),
    }
    env.update(fields)
    return env
