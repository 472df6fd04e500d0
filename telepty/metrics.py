"""Prometheus text exposition (format 0.0.4), written out by hand.

Plain code rather than ``prometheus_client``: the daemon needs one histogram and a
handful of gauges computed at scrape time, which is less code than adapting a
process-global client registry to per-app state (tests build many apps per process).

Only what is measured *live* is kept here (delivery latency). Everything that has a
record (sessions, deliveries, the event log) is counted from that record when
``/metrics`` is scraped, so a restart never resets or skews those numbers.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from telepty.clock import from_iso
from telepty.delivery.model import FINAL, Delivery

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds from accepted to final. A delivery waits at least the quiet guard (2 s by
# default) and a busy target is retried after 30/180/600 s, so the buckets run from
# sub-second forced injections to a fully exhausted retry schedule.
DELIVERY_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0,
)

Labels = tuple[tuple[str, str], ...]


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels) + "}"


@dataclass
class Family:
    """One metric family: its HELP and TYPE lines and its samples."""

    name: str
    type: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)  # (suffix, labels, value)

    def add(self, value: float, suffix: str = "", **labels: str) -> Family:
        self.samples.append((suffix, tuple(labels.items()), value))
        return self

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.type}"]
        for suffix, labels, value in self.samples:
            lines.append(f"{self.name}{suffix}{_labels_text(labels)} {format_value(value)}")
        return "\n".join(lines) + "\n"


def render(families: Iterable[Family]) -> str:
    return "".join(f.render() for f in families)


def gauge_by(
    name: str, help: str, label: str, counts: Mapping[str, int], known: Iterable[str] = ()
) -> Family:
    """A gauge per label value; ``known`` values appear as 0 so a series never vanishes."""
    fam = Family(name, "gauge", help)
    for value in sorted(set(known) | set(counts)):
        fam.add(counts.get(value, 0), **{label: value})
    return fam


class Histogram:
    """Cumulative buckets per label set, as Prometheus wants them."""

    def __init__(self, name: str, help: str, buckets: tuple[float, ...], label: str) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("buckets must be strictly increasing")
        self.name = name
        self.help = help
        self.buckets = buckets
        self.label = label
        self._counts: dict[str, list[int]] = {}  # label value → per-bucket (not cumulative) + overflow
        self._sums: dict[str, float] = {}

    def declare(self, label_value: str) -> None:
        """Make a label value's series exist (at zero) before its first observation."""
        self._counts.setdefault(label_value, [0] * (len(self.buckets) + 1))
        self._sums.setdefault(label_value, 0.0)

    def observe(self, value: float, label_value: str) -> None:
        self.declare(label_value)
        counts = self._counts[label_value]
        counts[bisect_left(self.buckets, value)] += 1  # le is inclusive: value == bound lands in it
        self._sums[label_value] = self._sums.get(label_value, 0.0) + value

    def count(self, label_value: str) -> int:
        return sum(self._counts.get(label_value, ()))

    def family(self) -> Family:
        fam = Family(self.name, "histogram", self.help)
        for label_value in sorted(self._counts):
            counts = self._counts[label_value]
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                fam.add(running, "_bucket", **{self.label: label_value, "le": format_value(bound)})
            fam.add(self._sums[label_value], "_sum", **{self.label: label_value})
            fam.add(running, "_count", **{self.label: label_value})
        return fam


class DaemonMetrics:
    """What the daemon measures as it happens, kept per app (never process-global)."""

    def __init__(self) -> None:
        self.delivery_seconds = Histogram(
            "telepty_delivery_seconds",
            "Seconds from a delivery being accepted to it becoming final, by final status.",
            DELIVERY_BUCKETS,
            "status",
        )
        for status in sorted(FINAL):
            self.delivery_seconds.declare(str(status))

    def observe_delivery(self, d: Delivery) -> None:
        """The delivery engine's ``on_final`` hook: one observation per final delivery."""
        if not d.finished_at:
            return
        try:
            seconds = from_iso(d.finished_at) - from_iso(d.created_at)
        except ValueError:
            return
        self.delivery_seconds.observe(max(0.0, seconds), str(d.status))
