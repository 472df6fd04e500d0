"""Host resolution for ``id@host``: local, peers.json, ip[:port], Tailscale (when present)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from telepty.config import Config
from telepty.errors import NotFound, TeleptyError
from telepty.relay.peers import (
    Peer,
    PeerResolver,
    address_peer,
    load_peers,
    parse_tailscale_status,
    split_target,
)
from telepty.relay.service import HopLimit, Relay, incoming_hop

TAILSCALE_STATUS = {
    "Self": {"HostName": "me", "DNSName": "me.tail1234.ts.net.", "TailscaleIPs": ["100.64.0.1", "fd7a::1"]},
    "Peer": {
        "nodekey:1": {"HostName": "Box", "DNSName": "box.tail1234.ts.net.",
                      "TailscaleIPs": ["fd7a:115c:a1e0::2", "100.101.102.103"]},
        "nodekey:2": {"HostName": "noip", "TailscaleIPs": []},
    },
}


def test_load_peers(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    assert load_peers(path) == {}
    path.write_text("{not json")
    assert load_peers(path) == {}
    path.write_text(json.dumps({
        "Box": {"url": "http://100.1.2.3:3848/", "token": "sekret"},
        "plain": "http://10.0.0.2:4000",
        "broken": {"token": "x"},
        "ftp": {"url": "ftp://x"},
    }))
    peers = load_peers(path)
    assert set(peers) == {"box", "plain"}
    assert peers["box"] == Peer(name="Box", url="http://100.1.2.3:3848", token="sekret")
    assert peers["plain"].token is None
    assert "sekret" not in repr(peers["box"]) and "sekret" not in json.dumps(peers["box"].public())


@pytest.mark.parametrize(("host", "url"), [
    ("10.0.0.7", "http://10.0.0.7:3848"),
    ("10.0.0.7:4001", "http://10.0.0.7:4001"),
    ("[fd7a::5]:4002", "http://[fd7a::5]:4002"),
    ("[::1]", "http://[::1]:3848"),
])
def test_address_peer(host: str, url: str) -> None:
    peer = address_peer(host)
    assert peer is not None and (peer.url, peer.source, peer.token) == (url, "address", None)


@pytest.mark.parametrize("host", ["box", "999.1.1.1", "box:3848", "1.2.3"])
def test_not_an_address(host: str) -> None:
    assert address_peer(host) is None


def test_parse_tailscale_status() -> None:
    names = parse_tailscale_status(TAILSCALE_STATUS)
    assert names["box"] == "100.101.102.103"
    assert names["box.tail1234.ts.net"] == "100.101.102.103"
    assert names["fd7a:115c:a1e0::2"] == "100.101.102.103"
    assert "noip" not in names
    assert parse_tailscale_status("garbage") == {}


def test_split_target() -> None:
    assert split_target("s") == ("s", None)
    assert split_target("s@B") == ("s", "B")


async def test_resolver_order(tmp_path: Path) -> None:
    (tmp_path / "peers.json").write_text(json.dumps({"box": {"url": "http://127.0.0.1:5000"}}))
    r = PeerResolver(tmp_path / "peers.json", "Here", tailscale_bin="telepty-no-such-tailscale")
    assert await r.resolve("here") is None and await r.resolve("localhost") is None
    assert (await r.resolve("BOX")).url == "http://127.0.0.1:5000"  # type: ignore[union-attr]
    assert (await r.resolve("10.1.1.1:9")).url == "http://10.1.1.1:9"  # type: ignore[union-attr]
    with pytest.raises(NotFound) as exc:
        await r.resolve("elsewhere")  # no tailscale binary: simply unknown
    assert exc.value.code == "unknown_peer"
    # peers.json is re-read when it changes
    (tmp_path / "peers.json").write_text(json.dumps({"elsewhere": {"url": "http://127.0.0.1:5001"}}))
    assert (await r.resolve("elsewhere")).url == "http://127.0.0.1:5001"  # type: ignore[union-attr]


async def test_resolver_asks_tailscale_when_present(tmp_path: Path) -> None:
    fake = tmp_path / "tailscale"
    fake.write_text(f"#!/bin/sh\necho '{json.dumps(TAILSCALE_STATUS)}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    r = PeerResolver(tmp_path / "peers.json", "me", tailscale_bin=str(fake))
    peer = await r.resolve("box")
    assert peer is not None and (peer.url, peer.source) == ("http://100.101.102.103:3848", "tailscale")


async def test_hop_limit(tmp_path: Path) -> None:
    (tmp_path / "peers.json").write_text(json.dumps({"b": {"url": "http://127.0.0.1:5000"}}))
    relay = Relay(Config(home=tmp_path, machine_id="A", hop_limit=3))
    assert await relay.check_remote("s", 0) is None
    assert await relay.check_remote("s@a", 5) is None  # local: no relay, no hop check
    sid, peer = await relay.check_remote("s@B", 2)  # type: ignore[misc]
    assert (sid, peer.name) == ("s@b", "b")
    with pytest.raises(HopLimit) as exc:
        await relay.check_remote("s@B", 3)
    assert (exc.value.code, exc.value.status) == ("hop_limit", 508)
    assert incoming_hop(None) == 0 and incoming_hop("2") == 2
    with pytest.raises(TeleptyError):
        incoming_hop("x")
    await relay.close()


def test_registry_view_makes_pseudo_sessions(tmp_path: Path) -> None:
    relay = Relay(Config(home=tmp_path, machine_id="A"))

    class Real:
        def get(self, sid: str) -> str:
            return f"real:{sid}"

        def find_live(self, name: str) -> None:
            return None

    view = relay.registry(Real())
    pseudo = view.get("s@B")
    assert pseudo is not None and pseudo.id == "s@b" and pseudo.meta["relay"] == {"session": "s", "host": "B"}
    assert view.get("s") == "real:s"
    assert view.find_live("x") is None
