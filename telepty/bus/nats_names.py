"""Where things live on a NATS JetStream bus: stream names and subjects.

One stream, ``telepty-events``, holds every daemon's events under
``telepty.events.<machine>.<kind>``: the machine is the daemon that published (so a
server can allow each machine to publish only under its own name), the kind is the
envelope's. Each machine has its own work queue, stream ``telepty-work-<machine>`` on
subject ``telepty.work.<machine>``, which only that machine's daemon consumes: prompts
for ``id@machine`` wait there while its daemon is down.

A machine id becomes one subject token and a valid stream-name suffix: lower-cased
(``@host`` is matched case-insensitively), with every character outside ``a-z 0-9 -``
written as ``_`` and two hex digits per UTF-8 byte. That is reversible, so ``telepty
doctor`` can name the machines of a fleet from its streams. A kind keeps its dots (each
part one subject token, an empty part written ``_``), so ``telepty.events.*.<kind>``
selects exactly one kind and subscriptions read naturally.
"""

from __future__ import annotations

import re

EVENTS_STREAM = "telepty-events"
EVENTS_PREFIX = "telepty.events"
EVENTS_ALL = f"{EVENTS_PREFIX}.>"
WORK_PREFIX = "telepty.work"
WORK_STREAM_PREFIX = "telepty-work-"
WORKER = "telepty-worker"  # the durable consumer of a machine's work queue

_PLAIN = re.compile(r"[a-z0-9-]")
_ESCAPED = re.compile(r"_([0-9a-f]{2})")


def machine_token(machine_id: str) -> str:
    out = []
    for ch in machine_id.lower():
        if _PLAIN.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"_{b:02x}" for b in ch.encode("utf-8"))
    return "".join(out) or "_"


def machine_of_token(token: str) -> str:
    """``machine_token`` undone (lower-cased, as routing compares machine ids)."""
    data = bytearray()
    i = 0
    while i < len(token):
        m = _ESCAPED.match(token, i)
        if m is not None:
            data.append(int(m.group(1), 16))
            i = m.end()
        else:
            data.extend(token[i].encode("utf-8"))
            i += 1
    return data.decode("utf-8", errors="replace")


def kind_tokens(kind: str) -> str:
    return ".".join(part or "_" for part in kind.split("."))


def event_subject(machine_id: str, kind: str) -> str:
    return f"{EVENTS_PREFIX}.{machine_token(machine_id)}.{kind_tokens(kind)}"


def events_filter(*, machine_id: str | None = None, kind: str | None = None) -> str:
    """The subject filter for one machine's events and/or one kind's (all: ``telepty.events.>``)."""
    machine = "*" if machine_id is None else machine_token(machine_id)
    if kind is None:
        return EVENTS_ALL if machine_id is None else f"{EVENTS_PREFIX}.{machine}.>"
    return f"{EVENTS_PREFIX}.{machine}.{kind_tokens(kind)}"


def machine_of_subject(subject: str) -> str:
    """The machine that published an event, from its subject."""
    parts = subject.split(".", 3)
    return machine_of_token(parts[2]) if len(parts) >= 3 else ""


def work_stream(machine_id: str) -> str:
    return WORK_STREAM_PREFIX + machine_token(machine_id)


def work_subject(machine_id: str) -> str:
    return f"{WORK_PREFIX}.{machine_token(machine_id)}"


def machine_of_work_stream(stream: str) -> str | None:
    if not stream.startswith(WORK_STREAM_PREFIX):
        return None
    return machine_of_token(stream[len(WORK_STREAM_PREFIX):])
