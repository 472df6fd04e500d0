"""Who may drive the agents: peer trust and the HTTP middleware (the token's file is
:mod:`telepty.token_file`, shared with the clients).

The Node.js telepty trusted every loopback caller and answered with ``CORS *``, so any
web page the user opened could inject prompts into their agents. Everything here
exists to close that door without taxing the local user:

* browsers are recognised by their ``Origin`` header and refused outright;
* loopback is trusted only when the ``Host`` header names this machine, which defeats
  DNS rebinding (an attacker's name resolving to 127.0.0.1);
* Tailscale and allowlisted peers are trusted by address, everyone else needs the token;
* strict mode asks everyone, loopback included, for the token.

The decision itself (:func:`decide`) is a pure function of strings so that every branch
can be tested without a socket; the middleware only gathers those strings.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from telepty.config import Config, ConfigError
from telepty.token_file import TOKEN_HEADER

__all__ = [
    "AUTH_VIA_KEY",
    "TOKEN_HEADER",
    "TS_V4",
    "TS_V6",
    "Decision",
    "IPNetwork",
    "TrustPolicy",
    "auth_middleware",
    "decide",
    "extract_token",
    "in_allowlist",
    "is_loopback",
    "is_tailscale",
    "normalize_origin",
    "parse_allowlist",
    "presented_token",
]

log = logging.getLogger("telepty.auth")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

AUTH_VIA_KEY: Final = web.RequestKey("auth_via", str)

# Tailscale's CGNAT range and its ULA prefix; nothing else is "tailnet".
TS_V4: Final = ipaddress.IPv4Network("100.64.0.0/10")
TS_V6: Final = ipaddress.IPv6Network("fd7a:115c:a1e0::/48")

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOW_TO_SEND = (
    "send the daemon token in the x-telepty-token header, as 'Authorization: Bearer <token>',"
    " or as ?token=<token> (the token lives in the daemon's token file; the telepty CLI"
    " sends it automatically)"
)


# --------------------------------------------------------------------- address logic


def _parse_ip(ip: str | None) -> _IPAddress | None:
    """Parse a peer address, folding IPv4-mapped IPv6 into plain IPv4.

    Dual-stack sockets report IPv4 peers as ``::ffff:a.b.c.d``; without folding, a
    loopback or Tailscale IPv4 peer would silently lose its trust on such a socket.
    """
    if not ip:
        return None
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_loopback(ip: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and their IPv4-mapped forms; False for anything unparsable."""
    addr = _parse_ip(ip)
    return addr is not None and addr.is_loopback


def is_tailscale(ip: str | None) -> bool:
    """True for Tailscale's 100.64.0.0/10 and fd7a:115c:a1e0::/48 (IPv4-mapped too).

    Only these exact ranges: 100.64/10 is shared CGNAT space, so the boundaries matter.
    """
    addr = _parse_ip(ip)
    if isinstance(addr, ipaddress.IPv4Address):
        return addr in TS_V4
    if isinstance(addr, ipaddress.IPv6Address):
        return addr in TS_V6
    return False


def parse_allowlist(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Turn ``TELEPTY_PEER_ALLOWLIST`` entries into networks, failing loudly on typos.

    A silently dropped entry would lock a peer out with no clue why, and a silently
    mis-parsed one could trust the wrong hosts, so a bad entry stops the daemon.
    Host bits in a CIDR are tolerated (``10.0.0.5/24`` means 10.0.0.0/24).
    """
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ConfigError(
                f"TELEPTY_PEER_ALLOWLIST entry {entry!r} is not an IP address or CIDR"
                f" (expected e.g. 192.168.1.20 or 192.168.1.0/24): {exc}"
            ) from exc
        networks.append(net)
    return tuple(networks)


def in_allowlist(ip: str | None, networks: Iterable[IPNetwork]) -> bool:
    """True if ``ip`` falls in any network; garbage or a family mismatch is simply False."""
    addr = _parse_ip(ip)
    if addr is None:
        return False
    return any(addr.version == net.version and addr in net for net in networks)


# ------------------------------------------------------------------ origins and hosts


def normalize_origin(origin: str) -> str | None:
    """Canonical ``scheme://host[:port]`` for comparison, or None if it is no usable origin.

    Browsers and config files disagree on case, default ports and trailing slashes;
    comparing raw strings would make a correct allowlist entry mysteriously fail. The
    opaque ``null`` origin (sandboxed iframes, file: pages) is never a usable origin.
    """
    text = origin.strip()
    if not text or text.lower() == "null":
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if not scheme or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _canonical_hostname(name: str) -> str:
    """Lower-case, drop a trailing dot and brackets, and canonicalise IP literals."""
    host = name.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _host_header_name(host_header: str) -> str:
    """The hostname part of a ``Host`` header: ``[::1]:3848`` → ``::1``, ``a:1`` → ``a``."""
    text = host_header.strip()
    if text.startswith("["):
        end = text.find("]")
        # An unterminated bracket is malformed; returning it whole makes it not match.
        return _canonical_hostname(text[1:end]) if end != -1 else text
    if text.count(":") == 1:
        text = text.partition(":")[0]
    # Two or more colons without brackets: a bare IPv6 literal, keep it whole.
    return _canonical_hostname(text)


def _local_hostnames(config: Config) -> frozenset[str]:
    names = {"localhost", "127.0.0.1", "::1", config.host, config.machine_id}
    try:
        names.add(socket.gethostname())
        names.add(socket.getfqdn())
    except OSError:  # pragma: no cover - resolver trouble must not stop the daemon
        pass
    return frozenset(_canonical_hostname(n) for n in names if n and n.strip())


def _clip(text: str, limit: int = 120) -> str:
    """Echo attacker-supplied header values back only in bounded form."""
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class TrustPolicy:
    """Everything :func:`decide` needs, resolved once at startup.

    Frozen so a request can never alter what the next request is judged by, and
    built from a :class:`Config` so tests construct exactly the policy they mean.
    """

    token: str
    allowed_origins: frozenset[str] = frozenset()
    trust_tailscale: bool = True
    allowlist: tuple[IPNetwork, ...] = ()
    require_token: bool = False
    local_hostnames: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1"})

    @classmethod
    def from_config(cls, config: Config, token: str) -> TrustPolicy:
        """Build the policy; a malformed origin or allowlist entry raises ``ConfigError``."""
        origins: set[str] = set()
        for raw in config.allowed_origins:
            norm = normalize_origin(raw)
            if norm is None:
                raise ConfigError(
                    f"TELEPTY_ALLOWED_ORIGINS entry {raw!r} is not an origin"
                    " (expected e.g. http://localhost:5173)"
                )
            origins.add(norm)
        return cls(
            token=token,
            allowed_origins=frozenset(origins),
            trust_tailscale=config.trust_tailscale,
            allowlist=parse_allowlist(config.peer_allowlist),
            require_token=config.require_token,
            local_hostnames=_local_hostnames(config),
        )


@dataclass(frozen=True)
class Decision:
    """The outcome for one request; ``via`` names the rule that let it in ("" if refused)."""

    allowed: bool
    status: int
    code: str
    detail: str
    via: str = ""


def _allow(via: str) -> Decision:
    return Decision(allowed=True, status=200, code="ok", detail="", via=via)


def _refuse(status: int, code: str, detail: str) -> Decision:
    return Decision(allowed=False, status=status, code=code, detail=detail, via="")


def _token_matches(expected: str, presented: str | None) -> bool:
    # An empty expected token must not turn an empty/absent presented token into a key.
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def _origin_allowed(origin: str, allowed: frozenset[str]) -> bool:
    norm = normalize_origin(origin)
    if norm is None:
        return False
    # Entries are normalised by from_config; normalise again for hand-built policies.
    return any(norm == entry or norm == normalize_origin(entry) for entry in allowed)


def decide(
    policy: TrustPolicy,
    *,
    peer_ip: str | None,
    origin: str | None,
    host_header: str | None,
    presented_token: str | None,
) -> Decision:
    """Judge one request. Order matters and is the security argument:

    1. A foreign ``Origin`` is refused before anything else, even with a valid token,
       because a page that got hold of a token (``?token=`` in a URL) still must not
       drive agents from a browser.
    2. A valid token beats every address rule.
    3. Strict mode stops here: no address is trusted.
    4. Loopback is trusted only with a local ``Host`` (DNS-rebinding defence).
    5. Tailscale (unless disabled), then the allowlist; everyone else needs the token.
    """
    if origin is not None and not _origin_allowed(origin, policy.allowed_origins):
        return _refuse(
            403,
            "origin_forbidden",
            f"requests from browser origin {_clip(origin)!r} are refused: telepty must not"
            " be driven from web pages (add the origin to TELEPTY_ALLOWED_ORIGINS only if"
            " you trust it completely)",
        )

    if _token_matches(policy.token, presented_token):
        return _allow("token")

    wrong = "the token presented is not valid; " if presented_token else ""
    if policy.require_token:
        return _refuse(
            401,
            "token_required",
            f"{wrong}this daemon runs in strict mode (TELEPTY_REQUIRE_TOKEN=1): {_HOW_TO_SEND}",
        )

    if is_loopback(peer_ip):
        if host_header is not None:
            name = _host_header_name(host_header)
            if name not in policy.local_hostnames:
                return _refuse(
                    403,
                    "host_forbidden",
                    f"Host header {_clip(host_header)!r} does not name this machine;"
                    " refused to defeat DNS rebinding (use localhost or 127.0.0.1)",
                )
        return _allow("loopback")

    if policy.trust_tailscale and is_tailscale(peer_ip):
        return _allow("tailscale")

    if in_allowlist(peer_ip, policy.allowlist):
        return _allow("allowlist")

    who = f"peer {peer_ip}" if peer_ip else "this peer"
    return _refuse(401, "unauthorized", f"{wrong}{who} is not trusted by address: {_HOW_TO_SEND}")


# ------------------------------------------------------------------------ middleware


def extract_token(request: web.Request) -> str | None:
    """The token a request presents, from the header, a Bearer credential or ``?token=``.

    The query form exists because browsers' WebSocket API cannot set headers; it is
    the last resort since URLs end up in logs and shell history.
    """
    return presented_token(
        request.headers.get(TOKEN_HEADER), request.headers.get("Authorization"),
        request.query.get("token"),
    )


def presented_token(header: str | None, authorization: str | None, query: str | None) -> str | None:
    """:func:`extract_token` from the raw strings, for a caller that parsed them itself."""
    header = (header or "").strip()
    if header:
        return header
    scheme, _, credential = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return (query or "").strip() or None


def auth_middleware(
    policy: TrustPolicy,
    open_paths: frozenset[str] = frozenset({"/api/health"}),
) -> Middleware:
    """An aiohttp middleware enforcing ``policy`` on every route outside ``open_paths``.

    Open paths skip every check, Origin included: health carries nothing worth
    stealing, and monitors must reach it without credentials.
    """

    @web.middleware
    async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            request[AUTH_VIA_KEY] = "open"
            return await handler(request)
        decision = decide(
            policy,
            peer_ip=request.remote,
            origin=request.headers.get("Origin"),
            host_header=request.headers.get("Host"),
            presented_token=extract_token(request),
        )
        if not decision.allowed:
            log.warning(
                "refused %s %s from %s: %s",
                request.method,
                request.path,
                request.remote,
                decision.code,
            )
            return web.json_response(
                {"error": decision.code, "detail": decision.detail}, status=decision.status
            )
        request[AUTH_VIA_KEY] = decision.via
        return await handler(request)

    return _auth
