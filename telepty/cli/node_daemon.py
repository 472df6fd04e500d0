"""This CLI in front of a daemon that is not this implementation (the Node.js telepty).

A fleet mixes both for a while, and ``TELEPTY_URL`` can point this CLI at a Node.js
daemon. Its ``GET /api/meta`` has no ``home_id`` (older ones have no ``/api/meta`` at
all, only ``/api/health``), its answers have other shapes, and its unknown routes answer
an HTML page. So the client recognises it once, before the first request, and then:

* the commands that can work there (``inject``, ``list``, ``spawn``, ``kill``,
  ``bus publish``) send what that daemon reads and read what it answers, through the
  adapters below;
* every other command stops with one line saying which daemon this is and which
  commands work against it, before anything is sent.

What cannot be had there is said, not faked: the Node.js daemon keeps no delivery
records, so an inject is "written", never "delivered" (``--wait`` has nothing to wait
for), and a publish has no ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "NODE_COMMANDS",
    "ForeignDaemon",
    "identify",
    "node_error",
    "node_sessions",
]

NODE_COMMANDS: Final = ("inject", "list", "spawn", "kill", "bus publish")
_NODE_NAMES: Final = ("aigentry-telepty", "@dmsdc-ai/")

# healthStatus → our session state (telepty.api.node_dialect maps the other way).
_STATES: Final = {"CONNECTED": "running", "DISCONNECTED": "disconnected", "RECONNECTING": "disconnected",
                  "STALE": "exited"}


@dataclass(frozen=True)
class ForeignDaemon:
    """A daemon that answered but is not this implementation."""

    url: str
    name: str  # how it is named to the user: "the Node.js telepty 0.1.96"

    def refusal(self) -> str:
        return (f"the daemon at {self.url} is {self.name}, not this implementation; "
                f"against it only {', '.join(NODE_COMMANDS[:-1])} and {NODE_COMMANDS[-1]} work")


def identify(url: str, meta: Any, health: Any = None) -> ForeignDaemon | None:
    """Who answered, from ``/api/meta`` (or, where there is none, ``/api/health``).

    This implementation always names its home (``home_id``, or ``home`` before home
    ids existed); an answer without either is another implementation.
    """
    info = meta if isinstance(meta, dict) else health if isinstance(health, dict) else None
    if info is None:
        return None
    if isinstance(meta, dict) and (meta.get("home_id") or meta.get("home")):
        return None
    name = str(info.get("name") or "")
    version = info.get("version")
    suffix = f" {version}" if isinstance(version, str) and version else ""
    if isinstance(meta, dict) and not any(n in name for n in _NODE_NAMES) and name not in ("", "telepty"):
        return ForeignDaemon(url, f"{name}{suffix}")
    return ForeignDaemon(url, f"the Node.js telepty{suffix}")


def node_sessions(answer: Any) -> list[dict[str, Any]]:
    """The Node.js daemon's session list in our record's shape (what ``list`` prints)."""
    from telepty.sessions.agents import detect_agent  # the process walk: only for this daemon's lists

    out: list[dict[str, Any]] = []
    for s in answer if isinstance(answer, list) else []:
        if not isinstance(s, dict) or not isinstance(s.get("id"), str):
            continue
        command = str(s.get("command") or "")
        idle = s.get("idleSeconds")
        out.append({
            "id": s["id"],
            "type": str(s.get("type") or "spawned"),
            "agent": detect_agent(command),
            "state": _STATES.get(str(s.get("healthStatus") or ""), "running"),
            "command": command,
            "cwd": s.get("cwd"),
            "tmux_pane": None,
            "idle_seconds": idle if isinstance(idle, int | float) and not isinstance(idle, bool) else None,
            "clients": s.get("active_clients") or 0,
            "locator": s.get("locator") if isinstance(s.get("locator"), dict) else {},
            "created_at": s.get("createdAt"),
            "health": s.get("healthStatus"),
        })
    return out


def node_error(err: dict[str, Any]) -> dict[str, Any]:
    """A Node.js error body (``{success: false, code, error: <text>}`` or just
    ``{error: <text>}``) as ours: ``{error: <code>, detail: <text>}``."""
    if err.get("success") is False and isinstance(err.get("code"), str):
        return {"error": err["code"].lower(), "detail": str(err.get("error") or "")}
    if "detail" not in err and isinstance(err.get("error"), str) and " " in err["error"]:
        return {"error": "refused", "detail": err["error"]}
    return err
