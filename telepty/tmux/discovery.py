"""Which tmux panes are running an agent CLI (for ``telepty panes`` and registration).

A pane's own command is usually a shell; the agent is somewhere below it. The process
walk reads /proc and so runs in a thread, once for all panes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, fields

from telepty.sessions.agents import detect_agents_in_trees
from telepty.tmux.server import PaneInfo, TmuxServer


@dataclass(frozen=True, slots=True)
class DiscoveredPane(PaneInfo):
    """A pane plus the agent kind found in its process tree (None: no agent there)."""

    agent: str | None = None


async def find_panes(
    server: TmuxServer, extra_agent_names: Sequence[str] = ()
) -> list[DiscoveredPane]:
    """Every pane on ``server`` with the agent running in it, if any."""
    panes = await server.list_panes()
    if not panes:
        return []
    pids = [p.pane_pid for p in panes if not p.pane_dead]
    kinds = await asyncio.to_thread(detect_agents_in_trees, pids, tuple(extra_agent_names))
    names = [f.name for f in fields(PaneInfo)]
    return [
        DiscoveredPane(
            **{n: getattr(p, n) for n in names},
            agent=None if p.pane_dead else kinds.get(p.pane_pid),
        )
        for p in panes
    ]
