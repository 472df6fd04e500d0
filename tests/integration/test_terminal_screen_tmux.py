"""The terminal model's expected screens (tests/unit/test_terminal_screen.py) are tmux's.

Each case's bytes go to a real tmux pane of the case's size (``stty -opost``: exactly
those bytes reach the terminal), and tmux's capture and cursor row must be what the
unit test expects from ``TerminalScreen``. So the unit test pins the model to tmux,
where pane captures come from, not to what someone believed a terminal does.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import libtmux
import pytest

from tests.helpers import wait_until_sync
from tests.unit.test_terminal_screen import CASES

pytestmark = pytest.mark.integration


def tmux_shows(server: libtmux.Server, folder: Path, name: str, data: bytes, cols: int,
               rows: int) -> tuple[list[str], int]:
    stream, done = folder / f"{name}.bin", folder / f"{name}.done"
    stream.write_bytes(data)
    script = (f"stty -opost -echo; cat {shlex.quote(str(stream))}; : > {shlex.quote(str(done))}; "
              "exec sleep 600")
    server.cmd("new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows), "sh", "-c", script)
    server.cmd("set-option", "-t", name, "status", "off")
    server.cmd("resize-window", "-t", name, "-x", str(cols), "-y", str(rows))
    wait_until_sync(done.exists, 10, message=f"{name}: the bytes written")

    def capture() -> tuple[tuple[str, ...], str]:
        screen = tuple(server.cmd("capture-pane", "-p", "-t", name).stdout)
        return screen, server.cmd("display-message", "-p", "-t", name, "#{cursor_y}").stdout[0]

    last: list[tuple[tuple[str, ...], str]] = []

    def settled() -> bool:  # tmux parses what cat wrote a moment later: two equal looks
        last.append(capture())
        return len(last) > 1 and last[-1] == last[-2]

    wait_until_sync(settled, 10, interval=0.05, message=f"{name}: tmux to draw it")
    screen, cursor_y = last[-1]
    server.cmd("kill-session", "-t", name)
    lines = [line.rstrip() for line in screen]
    while lines and not lines[-1]:
        lines.pop()
    return lines, int(cursor_y)


def test_tmux_shows_what_the_model_is_expected_to(server: libtmux.Server, session: libtmux.Session,
                                                   tmp_path: Path) -> None:
    for i, (name, data, cols, rows, screen, cursor_row) in enumerate(CASES):
        assert tmux_shows(server, tmp_path, f"case{i}", data, cols, rows) == (screen, cursor_row), name
