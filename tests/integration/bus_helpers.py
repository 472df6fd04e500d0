"""Helpers for bus tests: a frame collector for a bus socket, and turn_request bodies."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from typing import Any

import aiohttp

from tests.helpers import wait_until


class Frames:
    """Reads every frame of a bus socket in the background, so tests can poll."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))
        self.closed_with = self.ws.close_code

    @property
    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "seq" in f and not str(f.get("kind")).startswith("bus.")]

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("kind") == kind]

    async def wait_for(self, kind: str, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        return await wait_until(lambda: len(self.of(kind)) >= n and self.of(kind), timeout,
                                message=f"{n} {kind} frame(s)")

    async def wait_live(self) -> dict[str, Any]:
        return (await self.wait_for("bus.live"))[0]

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def turn_request(target: str, prompt: str, **fields: Any) -> dict[str, Any]:
    payload = {"turn_id": "t1", "round": 1, "speaker": target, "prompt": prompt,
               "prompt_sha1": sha1(prompt), **fields.pop("payload", {})}
    return {"kind": "turn_request", "target": target, "source": "deliberation:d1",
            "session_id": "d1", "reply_to": "d1", "payload": payload, **fields}
