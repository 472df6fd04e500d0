"""A paste taller than the screen into an input that shows no placeholder.

prompt_toolkit (as aider and other REPL-style agents use it) draws the whole buffer, so
100 kB scrolls its ``> `` line out of view: the composer cannot be seen, only the end
of the pasted text at the bottom of the screen. That is evidence enough that the paste
is in the input; the submit key goes, and the program receives it whole, once.
"""

from __future__ import annotations

import random

from telepty.config import Config
from tests.helpers import wait_until
from tests.integration.standins import inject, register, start_standin


def prose(size: int) -> str:
    rng = random.Random(size)
    words = ["alpha", "béta", "gamma", "delta", "echo", "quoted 'q'", "中文", "$(x)"]
    lines: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(10))
        lines.append(line)
        total += len(line.encode()) + 1
    return "\n".join(lines)


async def test_a_hundred_kilobytes_into_a_prompt_toolkit_input(aiohttp_client, config: Config, session,  # type: ignore[no-untyped-def]
                                                               tmp_path) -> None:
    from telepty.daemon import create_app

    client = await aiohttp_client(create_app(config.with_(settle_ms=None)))
    sp = start_standin(session, tmp_path, "ptk_input.py", agent="aider")
    await sp.ready(">")
    await register(client, sp, "ptk")
    prompt = prose(100_000)
    status, body = await inject(client, "ptk", prompt=prompt, wait=True, timeout=90)
    assert status == 200, body
    assert body["status"] == "delivered", (body["reason"], body["detail"], body["evidence"].get("tail_after"))
    assert body["evidence"]["paste_seen"] == "tail"
    await wait_until(lambda: sp.submissions() == [prompt], 30, message="the whole prompt, once")
