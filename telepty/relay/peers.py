"""Where ``@host`` points: this machine, a named peer, a Tailscale node, or ``ip[:port]``.

Resolution order (SPEC §6): the local ``machine_id`` (and loopback names) mean "here";
then a name in ``$TELEPTY_HOME/peers.json`` (``{"name": {"url": ..., "token": ...}}``);
then a literal ``ip[:port]`` (port 3848 unless given); then a Tailscale MagicDNS name
or IP, looked up with ``tailscale status --json`` only when that binary exists (no
Tailscale is not an error: the name is simply unknown).

A peer's token is the only credential the relay ever sends to it; the local daemon
token never leaves this machine. ``Peer.__repr__`` hides the token so it cannot end
up in a log line by accident.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telepty.config import DEFAULT_PORT
from telepty.errors import BadRequest, ErrorCode, NotFound

log = logging.getLogger("telepty.relay")

UNKNOWN_PEER = ErrorCode.UNKNOWN_PEER
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
TAILSCALE_TTL = 30.0
_HOST_PORT_RE = re.compile(
    r"^\[(?P<v6>[0-9A-Fa-f:.]+)\](?::(?P<p6>\d{1,5}))?$|^(?P<v4>[0-9.]+)(?::(?P<p4>\d{1,5}))?$"
)


@dataclass(frozen=True)
class Peer:
    name: str  # as the caller wrote it (the peers.json key, the Tailscale name, the ip[:port])
    url: str  # base URL, no trailing slash
    token: str | None = field(default=None, repr=False)
    source: str = "peers"  # "peers" | "tailscale" | "address"

    def public(self) -> dict[str, Any]:
        """What the API may show: never the token, only whether there is one."""
        return {"name": self.name, "url": self.url, "source": self.source, "has_token": bool(self.token)}


def load_peers(path: Path) -> dict[str, Peer]:
    """peers.json → peers by lower-cased name. A missing file is no peers; a broken one
    is logged and ignored entry by entry, never fatal for the daemon."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("cannot read peers file %s: %s", path, exc)
        return {}
    if not isinstance(raw, dict):
        log.warning("peers file %s must hold a JSON object of name → {url, token}", path)
        return {}
    peers: dict[str, Peer] = {}
    for name, entry in raw.items():
        if isinstance(entry, str):
            entry = {"url": entry}
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(url, str) or not url.startswith(("http://", "https://")):
            log.warning("peers file %s: entry %r needs a url starting with http:// or https://", path, name)
            continue
        token = entry.get("token")
        peers[name.lower()] = Peer(name=name, url=url.rstrip("/"),
                                   token=token if isinstance(token, str) and token else None)
    return peers


def address_peer(host: str) -> Peer | None:
    """``1.2.3.4``, ``1.2.3.4:3849``, ``[fd7a::1]:3848`` → a Peer; anything else None."""
    m = _HOST_PORT_RE.match(host)
    if m is None:
        return None
    ip_text = m.group("v6") or m.group("v4")
    port_text = m.group("p6") or m.group("p4")
    try:
        ip = ipaddress.ip_address(ip_text)
    except ValueError:
        return None
    port = int(port_text) if port_text else DEFAULT_PORT
    if not 0 < port < 65536:
        raise BadRequest(ErrorCode.INVALID_TARGET, f"port {port} in {host!r} is out of range")
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    return Peer(name=host, url=f"http://{netloc}:{port}", source="address")


def parse_tailscale_status(data: Any) -> dict[str, str]:
    """``tailscale status --json`` → {name or IP (lower-case): first Tailscale IP}."""
    out: dict[str, str] = {}
    if not isinstance(data, dict):
        return out
    nodes = [data.get("Self"), *(data.get("Peer") or {}).values()]
    for node in nodes:
        if not isinstance(node, dict):
            continue
        ips = [ip for ip in node.get("TailscaleIPs") or [] if isinstance(ip, str)]
        if not ips:
            continue
        v4 = next((ip for ip in ips if ":" not in ip), ips[0])
        names = set(ips)
        dns = node.get("DNSName")
        if isinstance(dns, str) and dns:
            dns = dns.rstrip(".")
            names.add(dns)
            names.add(dns.split(".", 1)[0])
        host = node.get("HostName")
        if isinstance(host, str) and host:
            names.add(host)
        for n in names:
            out.setdefault(n.lower(), v4)
    return out


class PeerResolver:
    """host → Peer (or None for this machine). peers.json is re-read on every lookup."""

    def __init__(self, peers_path: Path, machine_id: str, *, tailscale_bin: str = "tailscale") -> None:
        self.peers_path = peers_path
        self.machine_id = machine_id
        self.tailscale_bin = tailscale_bin
        self._tailscale: dict[str, str] = {}
        self._tailscale_at = -TAILSCALE_TTL

    def is_local(self, host: str | None) -> bool:
        if not host:
            return True
        h = host.lower()
        return h == self.machine_id.lower() or h in LOOPBACK_NAMES

    def peers(self) -> dict[str, Peer]:
        # Read each time: the file is tiny, and an mtime cache can miss an edit made
        # within the filesystem's timestamp granularity.
        return load_peers(self.peers_path)

    async def resolve(self, host: str) -> Peer | None:
        """None when ``host`` is this machine; raises NotFound ``unknown_peer``."""
        if self.is_local(host):
            return None
        peer = self.peers().get(host.lower())
        if peer is not None:
            return peer
        peer = address_peer(host)
        if peer is not None:
            return peer
        ip = (await self._tailscale_names()).get(host.lower())
        if ip is not None:
            netloc = f"[{ip}]" if ":" in ip else ip
            return Peer(name=host, url=f"http://{netloc}:{DEFAULT_PORT}", source="tailscale")
        raise NotFound(UNKNOWN_PEER, f"no peer named {host!r}: not this machine ({self.machine_id!r}), "
                       f"not in {self.peers_path}, not an ip[:port], not a Tailscale name")

    async def _tailscale_names(self) -> dict[str, str]:
        if time.monotonic() - self._tailscale_at < TAILSCALE_TTL:
            return self._tailscale
        self._tailscale_at = time.monotonic()
        exe = shutil.which(self.tailscale_bin)
        if exe is None:
            self._tailscale = {}
            return self._tailscale
        proc = None
        try:
            proc = await asyncio.create_subprocess_exec(
                exe, "status", "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )
            async with asyncio.timeout(5):
                out, _ = await proc.communicate()
            self._tailscale = parse_tailscale_status(json.loads(out)) if proc.returncode == 0 else {}
        except (OSError, ValueError, TimeoutError) as exc:
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
            log.info("tailscale status failed: %s", exc)
            self._tailscale = {}
        return self._tailscale


def split_target(target: str) -> tuple[str, str | None]:
    """``id@host`` → (id, host); a plain id → (id, None)."""
    if "@" not in target:
        return target, None
    sid, _, host = target.rpartition("@")
    return sid, host


class PeerDown(Exception):
    """The peer could not be reached (refused, reset, timed out): nothing was answered."""


PROBE_TIMEOUT_S = 3.0
PeerGet = Callable[[str], Awaitable[tuple[int, Any]]]


async def probe_peer(peer: Peer, get: PeerGet) -> dict[str, Any]:
    """What ``GET /api/peers`` (and ``telepty doctor``) says of one peer.

    ``get(path)`` asks the peer with the peer's own token and answers (status, JSON),
    raising ``PeerDown`` when nothing answers. The daemon asks over its relay client,
    doctor with the daemon down over urllib: the verdict is made here for both.
    """
    out: dict[str, Any] = {**peer.public(), "reachable": False}
    started = time.monotonic()
    try:
        status, health = await get("/api/health")
        out["rtt_ms"] = round((time.monotonic() - started) * 1000, 1)
        if status != 200 or not isinstance(health, dict):
            out["error"] = f"health answered HTTP {status}"
            return out
        out["reachable"] = True
        out["version"] = health.get("version")
        status, meta = await get("/api/meta")
    except PeerDown as exc:
        out["reachable"] = False
        out["error"] = f"peer_unreachable: {exc}"
        return out
    out["authorized"] = status == 200 and isinstance(meta, dict)
    if out["authorized"]:
        out["machine_id"] = meta.get("machine_id")
    else:
        out["error"] = "peer_unauthorized" if status in (401, 403) else f"meta answered HTTP {status}"
    return out
