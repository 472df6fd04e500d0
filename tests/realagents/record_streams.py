"""Record what the real agent CLIs print, with the screen tmux showed for it.

tests/unit/test_terminal_screen.py feeds each recording to telepty's terminal model
(``telepty.delivery.terminal_screen``) in small chunks and checks, at every checkpoint,
that it shows exactly what tmux showed after the same bytes. A wrapped or spawned
agent's screen is read from that model, so this is what says it is read right.

Each agent runs offline against the mock model (``harness``), in a private tmux pane
whose output tmux copies to a file (``pipe-pane -O``). Checkpoints: ``idle``,
``answered`` (a prompt with a tab and wide characters, answered), ``thought`` (a
prompt the model thought about, answered), ``typed`` (text in the input). After a
version bump of an agent:

    .venv/bin/python -m tests.realagents.record_streams [claude codex gemini]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.helpers import wait_until_sync
from tests.realagents.harness import (
    AGENTS,
    READY_TEXT,
    PrivateTmux,
    agent_bin,
    base_env,
    seed_home,
    start_mock,
)

STREAMS = Path(__file__).resolve().parent / "streams"
QUIET_S = 1.0  # a checkpoint is taken once the output and the screen stood still this long
SETTLE_S = 0.5  # after a paste, before its Enter (what the profiles' settle_ms is for)


def record(agent: str, folder: Path, out: Path) -> list[dict[str, Any]]:
    mock = start_mock(folder / "mock")
    home, project = folder / "home", folder / "project"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**base_env(home), **seed_home(agent, home, project, mock.url)}
    tmux = PrivateTmux(folder)
    stream = out / f"{agent}.bin"
    stream.unlink(missing_ok=True)
    # The agent starts only once tmux copies the pane's output (the Enter below).
    pane = tmux.new_pane(["bash", "-c", f"stty -echo; read _; exec {agent_bin(agent)}"], env, project, agent)
    tmux.run("pipe-pane", "-O", "-t", pane, f"cat >> {stream}")
    wait_until_sync(stream.exists, 10, message="tmux to copy the pane's output")
    tmux.send(pane, "Enter")
    checkpoints: list[dict[str, Any]] = []

    def text() -> str:
        return "\n".join(tmux.screen(pane))

    def checkpoint(name: str) -> None:
        seen = None
        while True:
            time.sleep(QUIET_S)  # the output must have stopped: a quiet window, not a sync
            now = (stream.stat().st_size, text())
            if now == seen:
                break
            seen = now
        cursor_y = int(tmux.run("display-message", "-p", "-t", pane, "#{cursor_y}").strip())
        checkpoints.append({"name": name, "offset": seen[0], "cursor_y": cursor_y,
                            "screen": tmux.screen(pane)})

    def submit(prompt: str, shows: str) -> None:
        tmux.paste(pane, prompt)
        wait_until_sync(lambda: shows in text(), 10, message="the paste to show")
        time.sleep(SETTLE_S)
        tmux.send(pane, "Enter")

    try:
        wait_until_sync(lambda: READY_TEXT[agent] in text(), 60, message=f"{agent} to be ready")
        checkpoint("idle")
        submit("Say hello please.\tWith a tab and 日本語 text.", "日本語")
        wait_until_sync(lambda: len(mock.received()) >= 1, 60, message="the first answer")
        checkpoint("answered")
        submit("Think hard about this one. [mock:slow=3]", "Think hard")
        wait_until_sync(lambda: len(mock.received()) >= 2, 60, message="the second prompt")
        checkpoint("thought")
        wait_until_sync(lambda: mock.answered_at(1) is not None, 60, message="the second answer")
        tmux.send(pane, "half typed, never sent", literal=True)
        checkpoint("typed")
    finally:
        tmux.close()
        mock.stop()
    (out / f"{agent}.json").write_text(json.dumps(checkpoints, indent=1, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return checkpoints


def main(agents: list[str]) -> None:
    for agent in agents or list(AGENTS):
        with tempfile.TemporaryDirectory(prefix=f"telepty-rec-{agent}-") as tmp:
            done = record(agent, Path(tmp), STREAMS)
        size = (STREAMS / f"{agent}.bin").stat().st_size
        print(f"{agent}: {size} bytes, checkpoints {[c['name'] for c in done]}")


if __name__ == "__main__":
    main(sys.argv[1:])
