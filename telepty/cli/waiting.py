"""``--wait``: follow one delivery until it is final, saying what it waits for.

A spinner alone told a person nothing while a prompt sat ``retrying`` for minutes. So
the CLI follows the record itself (``GET /api/deliveries/{id}``) and shows its
status, reason, attempt and next try: on one redrawn line at a terminal, as a line
per change otherwise (logs, CI). When the wait ends first (``--timeout``, Ctrl-C),
it says the prompt is still pending and how to cancel it: the daemon goes on trying.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from telepty.cli.client import EXIT_INTERRUPTED, EXIT_PENDING, Client, CliError
from telepty.clock import from_iso

FINAL = frozenset({"delivered", "failed", "cancelled"})
POLL_S = 0.25  # how often the record is read: a loopback GET, cheap
FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def describe(record: dict[str, Any], now: float) -> str:
    """``dlv_… retrying (busy: …), attempt 2, next try in 41s``: what a record waits for."""
    text = f"{record.get('delivery_id', '?')} {record.get('status', '?')}"
    reason = record.get("reason")
    if record.get("status") == "delivering" and record.get("stage"):
        text += f" (stage {record['stage']})"  # quiet_guard, paste, submit, confirm…
    elif reason:
        detail = record.get("detail")
        text += f" ({reason}: {detail})" if detail else f" ({reason})"
    attempts = record.get("attempts")
    if isinstance(attempts, int) and attempts > 0:
        text += f", attempt {attempts}"
    when = record.get("next_attempt_at")
    if isinstance(when, str) and record.get("status") not in FINAL:
        try:
            left = max(0.0, from_iso(when) - now)
        except ValueError:
            left = None
        if left is not None and record.get("status") == "held":
            blocked_by = (record.get("evidence") or {}).get("blocked_by")
            text += f", behind {blocked_by}" if blocked_by else ""
            text += f", gives up (held_timeout) in {left:.0f}s"
        elif left is not None:
            text += f", next try in {left:.0f}s" if left >= 1 else ", next try now"
    return text


def still_pending(record: dict[str, Any], why: str) -> str:
    """The line for a wait that ended before the delivery did."""
    did = record.get("delivery_id", "?")
    return (f"{why}; {describe(record, time.time())}: the prompt is still pending and the daemon keeps "
            f"trying; cancel it with `telepty deliveries {did} --cancel`")


class Progress:
    """One status line on stderr: redrawn with a spinner at a terminal, else one line per change."""

    def __init__(self, stream: TextIO, *, live: bool, enabled: bool = True) -> None:
        self.stream = stream
        self.live = live
        self.enabled = enabled
        self.text = ""
        self._key: object = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.enabled and self.live:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def update(self, text: str, key: object = None) -> None:
        """Show ``text``; off a terminal, print it only when ``key`` (default: the text)
        changed, so a countdown in the text does not print a line a second."""
        key = text if key is None else key
        with self._lock:
            changed = key != self._key
            self.text, self._key = text, key
        if changed and self.enabled and not self.live:
            self.stream.write(f"telepty: {text}\n")
            self.stream.flush()

    def _spin(self) -> None:
        for frame in itertools.cycle(FRAMES):
            if self._stop.wait(0.1):
                break
            with self._lock:
                text = self.text
            self.stream.write(f"\r{frame} {text}\x1b[K")
            self.stream.flush()


class StillPending(CliError):
    """The wait ended (timeout or Ctrl-C) while the delivery goes on."""

    def __init__(self, record: dict[str, Any], why: str, exit_code: int) -> None:
        super().__init__(still_pending(record, why), "still_pending", exit_code=exit_code)
        self.record = record

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "delivery": self.record}


def wait_final(
    client: Client, delivery_id: str, timeout: float, *, show: bool,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The delivery's record once final; StillPending when ``timeout`` or Ctrl-C comes first."""
    deadline = clock() + timeout
    record: dict[str, Any] = {"delivery_id": delivery_id, "status": "queued"}
    with Progress(sys.stderr, live=sys.stderr.isatty(), enabled=show) as progress:
        try:
            while True:
                record = client.request("GET", f"/api/deliveries/{delivery_id}")
                if record.get("status") in FINAL:
                    return record
                progress.update(describe(record, time.time()),
                                key=(record.get("status"), record.get("reason"), record.get("attempts")))
                left = deadline - clock()
                if left <= 0:
                    raise StillPending(record, f"stopped waiting after {timeout:g}s", EXIT_PENDING)
                time.sleep(min(POLL_S, left))  # the poll period of a wait with a deadline
        except KeyboardInterrupt:
            raise StillPending(record, "interrupted", EXIT_INTERRUPTED) from None
