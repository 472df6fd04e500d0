"""Printing for people (aligned tables) and for programs (``--json``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    sys.stdout.write(table(rows, headers) + "\n")


def human_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    v = int(value)
    if v < 60:
        return f"{v}s"
    if v < 3600:
        return f"{v // 60}m{v % 60:02d}s"
    return f"{v // 3600}h{(v % 3600) // 60:02d}m"
