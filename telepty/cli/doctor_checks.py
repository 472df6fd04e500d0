"""The checks behind ``telepty doctor``, each a ✓/✗ with a fix hint.

Each peer in ``peers.json`` gets its own line: reachable (with its version, machine id
and round-trip time), not answering, or answering but refusing the token we hold for
it. Loaded only when doctor runs: the checks reach for tmux, the peers, the profiles
and an event loop, which no other command needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from telepty.cli.client import START_HINT, Client, CliError, NoDaemon
from telepty.config import Config, ConfigError
from telepty.delivery.profiles import load_profiles
from telepty.relay.peers import PROBE_TIMEOUT_S, Peer, PeerDown, load_peers, probe_peer
from telepty.sessions.agent_version import is_newer, running_version
from telepty.tmux import TmuxError
from telepty.tmux.user_servers import tmux_version


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    warning: bool = False  # worth knowing, not a failure (the exit code stays 0)


def check_daemon(client: Client) -> tuple[Check, bool]:
    try:
        meta = client.meta  # found through this home's daemon.json and checked to serve this home
    except CliError as exc:
        # The hint is said once, under the ✗, never also inside the detail.
        hint = exc.hint or "see `telepty status`"
        if isinstance(exc, NoDaemon) and exc.code != "wrong_daemon":
            hint = hint.replace(START_HINT, f"{START_HINT} (`telepty service install` starts it at login)")
        return Check("daemon", False, exc.message, hint), False
    detail = f"telepty {meta.get('version')} at {client.url} (pid {meta.get('pid')})"
    return Check("daemon", True, detail), True


def check_tmux(config: Config) -> Check:
    path = shutil.which(config.tmux_bin)
    if path is None:
        return Check("tmux", False, f"{config.tmux_bin!r} not found on PATH",
                     "install tmux (apt install tmux / brew install tmux) or set TELEPTY_TMUX_BIN")
    try:
        version = tmux_version(path)
    except TmuxError as exc:
        return Check("tmux", False, exc.detail, "reinstall tmux")
    return Check("tmux", True, f"{version} ({path})")


def check_home(config: Config) -> Check:
    home = config.home
    hint = f"create it and make it writable: mkdir -p {home} && chmod 700 {home}"
    if not home.is_dir():
        return Check("home", False, f"TELEPTY_HOME {home} does not exist", hint)
    try:
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("home", False, f"TELEPTY_HOME {home} is not writable: {exc.strerror}", hint)
    return Check("home", True, f"TELEPTY_HOME {home} is writable")


def check_token(config: Config) -> Check:
    path = config.token_path
    try:
        st = path.stat()
    except FileNotFoundError:
        return Check("token", False, f"token file {path} does not exist",
                     "start the daemon once (`telepty daemon`); it creates the token")
    except OSError as exc:
        return Check("token", False, f"cannot read {path}: {exc.strerror}", f"check permissions of {path}")
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o600:
        return Check("token", False, f"token file {path} has mode {mode:04o}, expected 0600",
                     f"chmod 600 {path}")
    return Check("token", True, f"token file {path} has mode 0600")


def check_peers(config: Config) -> Check | None:
    path = config.peers_path
    if not path.exists():
        return None
    hint = f'fix {path}: a JSON object {{"name": {{"url": "http://host:3848", "token": "..."}}}}'
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Check("peers", False, f"cannot read {path}: {exc}", hint)
    if not isinstance(data, dict):
        return Check("peers", False, f"{path} is not a JSON object", hint)
    usable = load_peers(path)
    unusable = [str(name) for name in data if str(name).lower() not in usable]
    if unusable:
        return Check("peers", False, f"{path}: entries without a usable http(s) url: {', '.join(unusable)}",
                     hint)
    return Check("peers", True, f"{path} lists {len(data)} peer(s)")


PEER_HINT_UNREACHABLE = (
    "is the peer's daemon running (`telepty status` there) and listening beyond loopback "
    "(`telepty daemon --host 0.0.0.0`, or its Tailscale IP)? is Tailscale up on both machines "
    "(`tailscale status`)? is the url in peers.json right?"
)


def peer_hint_token(name: str, path: str) -> str:
    return (f"put the peer's token (its $TELEPTY_HOME/token) into {path} as "
            f'"{name}": {{"url": ..., "token": "..."}}')


def peer_check(peer: dict[str, Any], peers_file: str) -> Check:
    """One line for one entry of ``GET /api/peers`` (or the CLI's own probe, same shape)."""
    name = str(peer.get("name", "?"))
    url = peer.get("url", "?")
    rtt = f", {peer['rtt_ms']:.1f} ms" if isinstance(peer.get("rtt_ms"), int | float) else ""
    if not peer.get("reachable"):
        error = peer.get("error") or "no answer"
        return Check(f"peer {name}", False, f"{url} unreachable: {error}", PEER_HINT_UNREACHABLE)
    version = f"telepty {peer.get('version') or '?'}"
    if peer.get("authorized") is False:
        error = peer.get("error") or "refused"
        return Check(f"peer {name}", False, f"{url} answers ({version}) but refuses our token: {error}",
                     peer_hint_token(name, peers_file))
    machine = f", machine {peer['machine_id']}" if peer.get("machine_id") else ""
    return Check(f"peer {name}", True, f"{url} reachable ({version}{machine}{rtt})")


def _urllib_get(peer: Peer, path: str) -> tuple[int, Any]:
    req = urllib.request.Request(peer.url + path, headers={"Accept": "application/json"})
    if peer.token:
        req.add_header("x-telepty-token", peer.token)  # the PEER's token, never ours
    try:
        with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PeerDown(str(getattr(exc, "reason", exc))) from None


async def _probe_all(peers: list[Peer]) -> list[dict[str, Any]]:
    """With the daemon down, doctor asks the peers itself, the way the daemon would."""
    return list(await asyncio.gather(*(
        probe_peer(p, lambda path, p=p: asyncio.to_thread(_urllib_get, p, path)) for p in peers
    )))


def check_peer_reachability(config: Config, client: Client | None) -> list[Check]:
    """A ✓/✗ per configured peer: asked of the daemon (``GET /api/peers``) when it is up,
    else probed from here, since the question is the same: does this machine reach it?"""
    path = str(config.peers_path)
    if client is not None:
        try:
            answer = client.request("GET", "/api/peers", timeout=15.0)
        except CliError as exc:
            return [Check("peer reachability", False, f"cannot ask the daemon about peers: {exc}",
                          "see `telepty peers`")]
        return [peer_check(p, str(answer.get("peers_file") or path)) for p in answer.get("peers") or []]
    peers = list(load_peers(config.peers_path).values())
    if not peers:
        return []
    return [peer_check(p, path) for p in asyncio.run(_probe_all(peers))]


def check_sessions(client: Client) -> list[Check]:
    try:
        sessions = client.request("GET", "/api/sessions")
    except CliError as exc:
        return [Check("sessions", False, f"cannot list sessions: {exc}", "see `telepty status`")]
    live = [s for s in sessions if s.get("state") == "running"]
    checks = [Check("sessions", True, f"{len(live)} live session(s) of {len(sessions)} registered")]
    for s in live:
        sid = s.get("id", "?")
        try:
            info = client.request("GET", f"/api/sessions/{quote(sid, safe='')}/explain",
                                  query={"lines": 1})
        except CliError as exc:
            checks.append(Check(f"session {sid}", False, f"cannot inspect: {exc}",
                                f"see `telepty explain {sid}`; `telepty clean` forgets exited sessions"))
            continue
        version = check_agent_version(sid, info)
        if version is not None:
            checks.append(version)
        transport = info.get("transport", "?")
        if "bracketed" not in info:
            detail = f"{transport}: bracketed paste unknown (tmux frames pastes when the app asks)"
            checks.append(Check(f"session {sid}", True, detail))
        elif info["bracketed"]:
            checks.append(Check(f"session {sid}", True, f"{transport}: bracketed paste on"))
        else:
            checks.append(Check(f"session {sid}", False, f"{transport}: bracketed paste off",
                                "multi-line prompts may submit early; is the agent at its prompt?"))
    return checks


def check_nats(config: Config) -> list[Check]:
    """With TELEPTY_BUS_URL: the NATS connection, the event stream, this machine's work queue."""
    if not config.bus_url:
        return []
    from telepty.bus.nats_probe import probe_nats  # only a NATS bus loads the NATS client

    return [Check(*finding) for finding in asyncio.run(probe_nats(config))]


def check_agent_version(sid: str, info: dict[str, Any]) -> Check | None:
    """A warning when the session's agent is newer than its profile was checked on: its
    screen may have changed in ways the profile's patterns do not know."""
    kind, pid = info.get("agent_detected"), info.get("pid")
    verified = (info.get("profile") or {}).get("verified_version")
    if not kind or not isinstance(pid, int) or not verified:
        return None
    version = running_version(pid, kind)
    if version is None or not is_newer(version, verified):
        return None
    return Check(
        f"agent version {sid}", True,
        f"{kind} {version} is newer than the [{kind}] profile was checked on ({verified})",
        f"if deliveries wait or fail, compare `telepty explain {sid}` with the [{kind}] "
        "patterns and override them in profiles.toml in TELEPTY_HOME",
        warning=True,
    )


def run_checks(config: Config) -> list[Check]:
    token = check_token(config)  # before any request: nothing may touch the file first
    client = Client(config, timeout=3.0)
    daemon, up = check_daemon(client)
    if not up and not token.ok and not config.token_path.exists():
        # The daemon makes the token on its first start: the daemon's fix is this one's too.
        token = Check("token", False, f"token file {config.token_path} does not exist yet "
                      "(the daemon creates it on its first start)")
    checks = [daemon, check_tmux(config), check_home(config), token]
    peers = check_peers(config)
    if peers is not None:
        checks.append(peers)
        checks.extend(check_peer_reachability(config, client if up else None))
    checks.extend(check_nats(config))
    if up:
        with contextlib.suppress(ConfigError):  # the daemon reports a broken file itself
            load_profiles(config.profiles_path)  # so the user's agents are recognised here
        checks.extend(check_sessions(client))
    return checks


__all__ = ["Check", "run_checks"]
