"""The Prometheus text exposition: formatting, histograms, and a strict parser to check it.

``parse_exposition`` is a small, strict reader of text format 0.0.4 (no client library
is installed, and none is needed for the daemon). The integration tests reuse it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pytest

from telepty.clock import to_iso
from telepty.delivery.model import Delivery, DeliveryStatus, Origin
from telepty.metrics import (
    DELIVERY_BUCKETS,
    DaemonMetrics,
    Family,
    Histogram,
    escape_label,
    format_value,
    gauge_by,
    render,
)

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE_RE = re.compile(rf"^({_NAME})(\{{.*\}})?\s+(\S+)(?:\s+(-?\d+))?$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@dataclass
class ParsedFamily:
    name: str
    type: str = "untyped"
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, name: str | None = None, **labels: str) -> float:
        found = [v for n, lbl, v in self.samples if n == (name or self.name) and lbl == labels]
        assert len(found) == 1, f"{name or self.name}{labels}: {len(found)} samples in {self.samples}"
        return found[0]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], text)


def _parse_labels(text: str) -> dict[str, str]:
    body = text[1:-1]
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        m = _LABEL_RE.match(body, pos)
        assert m, f"bad label set {text!r}"
        assert m.group(1) not in labels, f"repeated label in {text!r}"
        labels[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return labels


def _parse_value(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise AssertionError(f"bad sample value {text!r}") from None


def _family_of(sample: str, families: dict[str, ParsedFamily]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and families.get(base) and families[base].type in ("histogram", "summary"):
            return base
    return sample


def parse_exposition(text: str) -> dict[str, ParsedFamily]:
    """Parse text format 0.0.4 strictly; assert on anything a Prometheus server would reject."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, ParsedFamily] = {}
    finished: set[str] = set()  # families whose samples are over (they must be contiguous)
    current: str | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert re.fullmatch(_NAME, name), f"bad metric name {name!r}"
                fam = families.setdefault(name, ParsedFamily(name))
                if parts[1] == "TYPE":
                    assert parts[3] in _TYPES, f"bad type in {line!r}"
                    assert not fam.samples, f"TYPE after samples for {name}"
                    fam.type = parts[3]
                else:
                    fam.help = parts[3] if len(parts) > 3 else ""
            continue
        m = _SAMPLE_RE.match(line)
        assert m, f"bad sample line {line!r}"
        name, labels_text, value_text = m.group(1), m.group(2), m.group(3)
        fam_name = _family_of(name, families)
        if current is not None and fam_name != current:
            finished.add(current)
        assert fam_name not in finished, f"samples of {fam_name} are not contiguous"
        current = fam_name
        fam = families.setdefault(fam_name, ParsedFamily(fam_name))
        labels = _parse_labels(labels_text) if labels_text else {}
        fam.samples.append((name, labels, _parse_value(value_text)))
    for fam in families.values():
        if fam.type == "histogram":
            _check_histogram(fam)
        if fam.type == "counter":
            assert all(v >= 0 for _, _, v in fam.samples), f"negative counter {fam.name}"
    return families


def _check_histogram(fam: ParsedFamily) -> None:
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for name, labels, value in fam.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        if name.endswith("_bucket"):
            series.setdefault(key, []).append((_parse_value(labels["le"]), value))
        elif name.endswith("_count"):
            counts[key] = value
    for key, buckets in series.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf, f"{fam.name}{key}: bad le order"
        values = [v for _, v in buckets]
        assert values == sorted(values), f"{fam.name}{key}: buckets are not cumulative"
        assert counts.get(key) == values[-1], f"{fam.name}{key}: +Inf bucket != _count"


# -- the parser itself ----------------------------------------------------------------------


def test_parser_rejects_what_prometheus_would() -> None:
    with pytest.raises(AssertionError):
        parse_exposition("a 1\nb 2\na 3\n")  # not contiguous
    with pytest.raises(AssertionError):
        parse_exposition('a{x="1} 1\n')  # broken label
    with pytest.raises(AssertionError):
        parse_exposition("a one\n")  # not a number
    with pytest.raises(AssertionError):
        parse_exposition(
            "# TYPE h histogram\n"
            'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'
        )  # not cumulative


# -- rendering ------------------------------------------------------------------------------


def test_format_value() -> None:
    values = (0, 3.0, 0.25, math.inf, -math.inf)
    assert [format_value(v) for v in values] == ["0", "3", "0.25", "+Inf", "-Inf"]
    assert format_value(math.nan) == "NaN"


def test_label_values_are_escaped_and_round_trip() -> None:
    odd = 'a "quoted"\\path\nnext'
    assert escape_label(odd) == 'a \\"quoted\\"\\\\path\\nnext'
    text = render([Family("t_info", "gauge", "help with \\ and\nnewline").add(1, v=odd)])
    fam = parse_exposition(text)["t_info"]
    assert fam.value(v=odd) == 1
    assert fam.help == "help with \\\\ and\\nnewline"  # escaped on the wire


def test_gauge_by_keeps_known_series_at_zero() -> None:
    fam = parse_exposition(render([gauge_by("t", "h", "state", {"running": 2}, known=["exited", "running"])]))
    assert fam["t"].type == "gauge"
    assert (fam["t"].value(state="running"), fam["t"].value(state="exited")) == (2, 0)


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    h = Histogram("t_seconds", "h", (0.1, 1.0, 10.0), "status")
    for v in (0.05, 0.1, 0.5, 1.0, 99.0):
        h.observe(v, "delivered")
    h.observe(2.0, "failed")
    fam = parse_exposition(render([h.family()]))["t_seconds"]
    assert fam.type == "histogram"
    b = lambda le, s="delivered": fam.value("t_seconds_bucket", status=s, le=le)  # noqa: E731
    assert [b("0.1"), b("1"), b("10"), b("+Inf")] == [2, 4, 4, 5]
    assert fam.value("t_seconds_count", status="delivered") == 5
    assert fam.value("t_seconds_sum", status="delivered") == pytest.approx(100.65)
    assert [b("1", "failed"), b("10", "failed")] == [0, 1]
    assert h.count("delivered") == 5


def test_histogram_refuses_unsorted_buckets() -> None:
    with pytest.raises(ValueError):
        Histogram("x", "h", (1.0, 0.5), "status")


def _delivery(status: DeliveryStatus, created: float, finished: float | None) -> Delivery:
    return Delivery(session_id="s", target="s", prompt=b"p", origin=Origin.API, status=status,
                    created_at=to_iso(created), finished_at=to_iso(finished) if finished else None)


def test_daemon_metrics_observe_accepted_to_final() -> None:
    m = DaemonMetrics()
    m.observe_delivery(_delivery(DeliveryStatus.DELIVERED, 1000.0, 1002.0))
    m.observe_delivery(_delivery(DeliveryStatus.FAILED, 1000.0, 1000.0 + 700))
    m.observe_delivery(_delivery(DeliveryStatus.DELIVERED, 1000.0, None))  # not final: ignored
    fam = parse_exposition(render([m.delivery_seconds.family()]))["telepty_delivery_seconds"]
    assert fam.value("telepty_delivery_seconds_bucket", status="delivered", le="2.5") == 1
    assert fam.value("telepty_delivery_seconds_bucket", status="delivered", le="1") == 0
    assert fam.value("telepty_delivery_seconds_sum", status="delivered") == pytest.approx(2.0)
    assert fam.value("telepty_delivery_seconds_bucket", status="failed", le="600") == 0
    assert fam.value("telepty_delivery_seconds_bucket", status="failed", le="1800") == 1
    # every final status has a series from the start, so rate() works before the first event
    assert fam.value("telepty_delivery_seconds_count", status="cancelled") == 0
    assert len(DELIVERY_BUCKETS) + 1 == len(
        [s for s in fam.samples if s[0].endswith("_bucket") and s[1]["status"] == "cancelled"]
    )
