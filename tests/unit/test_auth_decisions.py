"""Every trust decision telepty makes, as tables: addresses, origins, hosts, tokens, files."""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from telepty import token_file
from telepty.api import auth
from telepty.api.auth import (
    Decision,
    TrustPolicy,
    decide,
    extract_token,
    in_allowlist,
    is_loopback,
    is_tailscale,
    normalize_origin,
    parse_allowlist,
)
from telepty.config import Config, ConfigError
from telepty.token_file import ensure_token, read_token

TOKEN = "s3cret-token-value-XYZ"

GARBAGE_IPS = [
    None,
    "",
    " ",
    "localhost",
    "not-an-ip",
    "999.1.1.1",
    "1.2.3",
    "127.0.0.1:3848",
    "::ffff::1::",
    "100.64.0.0/10",
]


# ------------------------------------------------------------------ address tables


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.0", True),
        ("127.1.2.3", True),
        ("127.255.255.255", True),
        ("::1", True),
        ("[::1]", True),
        ("0:0:0:0:0:0:0:1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:127.9.9.9", True),
        ("126.255.255.255", False),
        ("128.0.0.0", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::2", False),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("100.64.0.1", False),
        ("fd7a:115c:a1e0::1", False),
        ("8.8.8.8", False),
    ],
)
def test_is_loopback(ip: str, expected: bool) -> None:
    assert is_loopback(ip) is expected


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("100.64.0.0", True),
        ("100.64.0.1", True),
        ("100.100.100.100", True),
        ("100.127.255.255", True),
        ("100.63.255.255", False),
        ("100.128.0.1", False),
        ("100.128.0.0", False),
        ("10.0.0.1", False),
        ("192.168.1.1", False),
        ("8.8.8.8", False),
        ("127.0.0.1", False),
        ("fd7a:115c:a1e0::1", True),
        ("fd7a:115c:a1e0::", True),
        ("fd7a:115c:a1e0:ffff:ffff:ffff:ffff:ffff", True),
        ("fd7a:115c:a1e1::1", False),
        ("fd7a:115c:a1df:ffff::1", False),
        ("fd00::1", False),
        ("::1", False),
        ("::ffff:100.64.0.1", True),
        ("::ffff:100.127.255.255", True),
        ("::ffff:100.63.255.255", False),
        ("::ffff:100.128.0.1", False),
    ],
)
def test_is_tailscale(ip: str, expected: bool) -> None:
    assert is_tailscale(ip) is expected


@pytest.mark.parametrize("ip", GARBAGE_IPS)
def test_garbage_addresses_are_never_trusted_and_never_raise(ip: str | None) -> None:
    nets = parse_allowlist(["0.0.0.0/0", "::/0"])
    assert is_loopback(ip) is False
    assert is_tailscale(ip) is False
    assert in_allowlist(ip, nets) is False


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["192.168.1.20"], ["192.168.1.20/32"]),
        (["fd00::5"], ["fd00::5/128"]),
        (["10.9.0.0/16"], ["10.9.0.0/16"]),
        (["10.9.3.4/16"], ["10.9.0.0/16"]),
        (["fd00::/64", "192.168.1.20"], ["fd00::/64", "192.168.1.20/32"]),
        ([" 10.0.0.1 ", "", "  "], ["10.0.0.1/32"]),
        ([], []),
    ],
)
def test_parse_allowlist(entries: list[str], expected: list[str]) -> None:
    assert parse_allowlist(entries) == tuple(ipaddress.ip_network(e) for e in expected)


@pytest.mark.parametrize(
    "bad", ["10.0.0.256", "not-an-ip", "10.0.0.0/33", "1.2.3.4/abc", "fd00::/129", "host.lan"]
)
def test_parse_allowlist_rejects_invalid_entries_clearly(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_allowlist(["10.0.0.1", bad])
    assert isinstance(info.value, ValueError)
    assert repr(bad) in str(info.value)
    assert "TELEPTY_PEER_ALLOWLIST" in str(info.value)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("192.168.1.20", True),
        ("::ffff:192.168.1.20", True),
        ("192.168.1.21", False),
        ("10.9.0.0", True),
        ("10.9.255.255", True),
        ("10.10.0.0", False),
        ("10.8.255.255", False),
        ("fd00::1234", True),
        ("fd01::1", False),
        ("8.8.8.8", False),
    ],
)
def test_in_allowlist(ip: str, expected: bool) -> None:
    nets = parse_allowlist(["192.168.1.20", "10.9.0.0/16", "fd00::/64"])
    assert in_allowlist(ip, nets) is expected


def test_in_allowlist_empty_trusts_nobody() -> None:
    assert in_allowlist("127.0.0.1", ()) is False


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("http://localhost:5173", "http://localhost:5173"),
        ("HTTP://LocalHost:5173", "http://localhost:5173"),
        ("http://localhost:5173/", "http://localhost:5173"),
        ("http://example.com:80", "http://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("https://example.com:80", "https://example.com:80"),
        ("http://[::1]:3848", "http://[::1]:3848"),
        ("null", None),
        ("NULL", None),
        ("", None),
        ("localhost:5173", None),
        ("http://", None),
        ("http://example.com:99999", None),
    ],
)
def test_normalize_origin(origin: str, expected: str | None) -> None:
    assert normalize_origin(origin) == expected


# ------------------------------------------------------------------------- decide()

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "devbox"})
BASE = TrustPolicy(
    token=TOKEN,
    allowed_origins=frozenset({"http://localhost:5173"}),
    trust_tailscale=True,
    allowlist=parse_allowlist(["192.168.1.20", "10.9.0.0/16"]),
    require_token=False,
    local_hostnames=LOCAL_NAMES,
)
STRICT = replace(BASE, require_token=True)
NO_TS = replace(BASE, trust_tailscale=False)

OK = "ok"
# (id, policy, peer_ip, origin, host_header, token, allowed, status, code, via)
CASES = [
    # loopback, all spellings
    ("lo-v4", BASE, "127.0.0.1", None, "127.0.0.1:3848", None, True, 200, OK, "loopback"),
    ("lo-v4-other", BASE, "127.8.9.10", None, None, None, True, 200, OK, "loopback"),
    ("lo-v6", BASE, "::1", None, "[::1]:3848", None, True, 200, OK, "loopback"),
    ("lo-mapped", BASE, "::ffff:127.0.0.1", None, "localhost", None, True, 200, OK, "loopback"),
    ("lo-no-host", BASE, "127.0.0.1", None, None, None, True, 200, OK, "loopback"),
    # Host header / DNS rebinding
    ("host-localhost-port", BASE, "127.0.0.1", None, "localhost:3848", None, True, 200, OK,
     "loopback"),
    ("host-localhost-case", BASE, "127.0.0.1", None, "LocalHost.", None, True, 200, OK,
     "loopback"),
    ("host-v6-bracket", BASE, "127.0.0.1", None, "[::1]:3848", None, True, 200, OK, "loopback"),
    ("host-v6-long", BASE, "::1", None, "[0:0:0:0:0:0:0:1]", None, True, 200, OK, "loopback"),
    ("host-machine-id", BASE, "127.0.0.1", None, "devbox:3848", None, True, 200, OK,
     "loopback"),
    ("host-machine-id-case", BASE, "127.0.0.1", None, "DEVBOX", None, True, 200, OK,
     "loopback"),
    ("host-evil", BASE, "127.0.0.1", None, "evil.example.com", None, False, 403,
     "host_forbidden", ""),
    ("host-evil-port", BASE, "127.0.0.1", None, "evil.example.com:3848", None, False, 403,
     "host_forbidden", ""),
    ("host-evil-v6-peer", BASE, "::1", None, "evil.example.com:3848", None, False, 403,
     "host_forbidden", ""),
    ("host-localhost-suffix", BASE, "127.0.0.1", None, "localhost.evil.example.com", None,
     False, 403, "host_forbidden", ""),
    ("host-machine-prefix", BASE, "127.0.0.1", None, "devbox.evil.example.com:3848", None,
     False, 403, "host_forbidden", ""),
    ("host-empty", BASE, "127.0.0.1", None, "", None, False, 403, "host_forbidden", ""),
    ("host-unclosed-bracket", BASE, "127.0.0.1", None, "[::1:3848", None, False, 403,
     "host_forbidden", ""),
    ("host-other-ip", BASE, "127.0.0.1", None, "10.0.0.1:3848", None, False, 403,
     "host_forbidden", ""),
    # a valid token is not a browser rebinding: it outranks the Host check
    ("host-evil-token", BASE, "127.0.0.1", None, "evil.example.com", TOKEN, True, 200, OK,
     "token"),
    # Origin: refused for everyone, token or not
    ("origin-foreign", BASE, "127.0.0.1", "https://evil.example.com", "localhost:3848", None,
     False, 403, "origin_forbidden", ""),
    ("origin-foreign-token", BASE, "127.0.0.1", "https://evil.example.com", None, TOKEN, False,
     403, "origin_forbidden", ""),
    ("origin-foreign-ts", BASE, "100.64.0.1", "https://evil.example.com", None, None, False,
     403, "origin_forbidden", ""),
    ("origin-localhost-other-port", BASE, "127.0.0.1", "http://localhost:3000", None, None,
     False, 403, "origin_forbidden", ""),
    ("origin-other-scheme", BASE, "127.0.0.1", "https://localhost:5173", None, None, False,
     403, "origin_forbidden", ""),
    ("origin-null", BASE, "127.0.0.1", "null", None, None, False, 403, "origin_forbidden", ""),
    ("origin-null-token", BASE, "8.8.8.8", "null", None, TOKEN, False, 403,
     "origin_forbidden", ""),
    ("origin-empty", BASE, "127.0.0.1", "", None, None, False, 403, "origin_forbidden", ""),
    ("origin-garbage", BASE, "127.0.0.1", "not a url", None, None, False, 403,
     "origin_forbidden", ""),
    ("origin-foreign-strict", STRICT, "127.0.0.1", "https://evil.example.com", None, None,
     False, 403, "origin_forbidden", ""),
    ("origin-allowed", BASE, "127.0.0.1", "http://localhost:5173", "localhost:3848", None,
     True, 200, OK, "loopback"),
    ("origin-allowed-case", BASE, "127.0.0.1", "HTTP://LOCALHOST:5173", None, None, True, 200,
     OK, "loopback"),
    ("origin-allowed-token", BASE, "8.8.8.8", "http://localhost:5173", None, TOKEN, True, 200,
     OK, "token"),
    ("origin-allowed-stranger", BASE, "8.8.8.8", "http://localhost:5173", None, None, False,
     401, "unauthorized", ""),
    # tokens
    ("token-stranger", BASE, "8.8.8.8", None, "evil.example.com", TOKEN, True, 200, OK,
     "token"),
    ("token-wrong-stranger", BASE, "8.8.8.8", None, None, "nope", False, 401, "unauthorized",
     ""),
    ("token-prefix-stranger", BASE, "8.8.8.8", None, None, TOKEN[:-1], False, 401,
     "unauthorized", ""),
    ("token-longer-stranger", BASE, "8.8.8.8", None, None, TOKEN + "x", False, 401,
     "unauthorized", ""),
    ("token-empty-stranger", BASE, "8.8.8.8", None, None, "", False, 401, "unauthorized", ""),
    ("token-none-stranger", BASE, "8.8.8.8", None, None, None, False, 401, "unauthorized", ""),
    ("token-non-ascii", BASE, "8.8.8.8", None, None, "tökén", False, 401, "unauthorized", ""),
    ("token-wrong-loopback", BASE, "127.0.0.1", None, None, "nope", True, 200, OK, "loopback"),
    ("token-loopback", BASE, "127.0.0.1", None, None, TOKEN, True, 200, OK, "token"),
    ("policy-empty-token-empty", replace(BASE, token=""), "8.8.8.8", None, None, "", False,
     401, "unauthorized", ""),
    ("policy-empty-token-none", replace(BASE, token=""), "8.8.8.8", None, None, None, False,
     401, "unauthorized", ""),
    # strict mode
    ("strict-loopback-none", STRICT, "127.0.0.1", None, "localhost", None, False, 401,
     "token_required", ""),
    ("strict-loopback-v6-none", STRICT, "::1", None, None, None, False, 401,
     "token_required", ""),
    ("strict-loopback-token", STRICT, "127.0.0.1", None, "localhost", TOKEN, True, 200, OK,
     "token"),
    ("strict-loopback-wrong", STRICT, "127.0.0.1", None, None, "nope", False, 401,
     "token_required", ""),
    ("strict-loopback-empty", STRICT, "127.0.0.1", None, None, "", False, 401,
     "token_required", ""),
    ("strict-tailscale-none", STRICT, "100.64.0.1", None, None, None, False, 401,
     "token_required", ""),
    ("strict-allowlist-none", STRICT, "192.168.1.20", None, None, None, False, 401,
     "token_required", ""),
    ("strict-stranger-token", STRICT, "8.8.8.8", None, None, TOKEN, True, 200, OK, "token"),
    # tailscale
    ("ts-v4-low", BASE, "100.64.0.0", None, "evil.example.com", None, True, 200, OK,
     "tailscale"),
    ("ts-v4-high", BASE, "100.127.255.255", None, None, None, True, 200, OK, "tailscale"),
    ("ts-v6", BASE, "fd7a:115c:a1e0::1", None, None, None, True, 200, OK, "tailscale"),
    ("ts-mapped", BASE, "::ffff:100.64.0.1", None, None, None, True, 200, OK, "tailscale"),
    ("ts-below", BASE, "100.63.255.255", None, None, None, False, 401, "unauthorized", ""),
    ("ts-above", BASE, "100.128.0.1", None, None, None, False, 401, "unauthorized", ""),
    ("ts-v6-neighbour", BASE, "fd7a:115c:a1e1::1", None, None, None, False, 401,
     "unauthorized", ""),
    ("ts-off", NO_TS, "100.64.0.1", None, None, None, False, 401, "unauthorized", ""),
    ("ts-off-v6", NO_TS, "fd7a:115c:a1e0::1", None, None, None, False, 401, "unauthorized",
     ""),
    ("ts-off-token", NO_TS, "100.64.0.1", None, None, TOKEN, True, 200, OK, "token"),
    ("ts-off-loopback", NO_TS, "127.0.0.1", None, None, None, True, 200, OK, "loopback"),
    # allowlist
    ("allow-ip", BASE, "192.168.1.20", None, None, None, True, 200, OK, "allowlist"),
    ("allow-ip-neighbour", BASE, "192.168.1.21", None, None, None, False, 401,
     "unauthorized", ""),
    ("allow-cidr", BASE, "10.9.3.4", None, None, None, True, 200, OK, "allowlist"),
    ("allow-cidr-outside", BASE, "10.10.0.1", None, None, None, False, 401, "unauthorized",
     ""),
    ("allow-mapped", BASE, "::ffff:10.9.0.1", None, None, None, True, 200, OK, "allowlist"),
    ("allow-ts-off", NO_TS, "10.9.3.4", None, None, None, True, 200, OK, "allowlist"),
    # strangers and garbage
    ("stranger-lan", BASE, "192.168.1.1", None, None, None, False, 401, "unauthorized", ""),
    ("stranger-v6", BASE, "2001:db8::1", None, None, None, False, 401, "unauthorized", ""),
    ("peer-none", BASE, None, None, None, None, False, 401, "unauthorized", ""),
    ("peer-garbage", BASE, "not-an-ip", None, None, None, False, 401, "unauthorized", ""),
    ("peer-empty", BASE, "", None, None, None, False, 401, "unauthorized", ""),
    ("peer-garbage-token", BASE, "not-an-ip", None, None, TOKEN, True, 200, OK, "token"),
]


@pytest.mark.parametrize(
    ("policy", "peer_ip", "origin", "host", "token", "allowed", "status", "code", "via"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_decide(
    policy: TrustPolicy,
    peer_ip: str | None,
    origin: str | None,
    host: str | None,
    token: str | None,
    allowed: bool,
    status: int,
    code: str,
    via: str,
) -> None:
    got = decide(policy, peer_ip=peer_ip, origin=origin, host_header=host, presented_token=token)
    assert (got.allowed, got.status, got.code, got.via) == (allowed, status, code, via)
    assert TOKEN not in got.detail
    if allowed:
        assert got.detail == ""
    else:
        assert got.detail


@pytest.mark.parametrize("policy", [BASE, STRICT], ids=["unauthorized", "token_required"])
def test_refusal_detail_explains_all_three_token_transports(policy: TrustPolicy) -> None:
    got = decide(
        policy, peer_ip="8.8.8.8", origin=None, host_header=None, presented_token=None
    )
    assert not got.allowed
    assert "x-telepty-token" in got.detail
    assert "Authorization: Bearer" in got.detail
    assert "?token=" in got.detail
    assert "not valid" not in got.detail


@pytest.mark.parametrize("policy", [BASE, STRICT], ids=["unauthorized", "token_required"])
def test_wrong_token_is_called_out_without_echoing_either_token(policy: TrustPolicy) -> None:
    presented = "wrong-token-abcdef"
    got = decide(
        policy, peer_ip="8.8.8.8", origin=None, host_header=None, presented_token=presented
    )
    assert not got.allowed
    assert "not valid" in got.detail
    assert presented not in got.detail
    assert TOKEN not in got.detail


def test_decision_is_frozen() -> None:
    got = decide(BASE, peer_ip="127.0.0.1", origin=None, host_header=None, presented_token=None)
    assert got == Decision(allowed=True, status=200, code="ok", detail="", via="loopback")
    with pytest.raises(AttributeError):
        got.allowed = False  # type: ignore[misc]


def test_token_comparison_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    got = decide(BASE, peer_ip="8.8.8.8", origin=None, host_header=None, presented_token=TOKEN)
    assert got.via == "token"
    assert calls == [(TOKEN.encode(), TOKEN.encode())]


# -------------------------------------------------------------------- from_config


@pytest.fixture
def fixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth.socket, "gethostname", lambda: "Box-Short")
    monkeypatch.setattr(auth.socket, "getfqdn", lambda: "box-short.corp.example.")


def test_from_config_builds_the_whole_policy(tmp_path: Path, fixed_names: None) -> None:
    config = Config(
        home=tmp_path,
        host="100.101.102.103",
        machine_id="Devbox",
        allowed_origins=("HTTPS://App.Example.com:443", "http://localhost:5173/"),
        trust_tailscale=False,
        peer_allowlist=("192.168.1.20", "10.9.0.0/16"),
        require_token=True,
    )
    policy = TrustPolicy.from_config(config, TOKEN)
    assert policy.token == TOKEN
    assert policy.allowed_origins == frozenset({"https://app.example.com", "http://localhost:5173"})
    assert policy.trust_tailscale is False
    assert policy.require_token is True
    assert policy.allowlist == parse_allowlist(["192.168.1.20", "10.9.0.0/16"])
    assert policy.local_hostnames == frozenset(
        {
            "localhost",
            "127.0.0.1",
            "::1",
            "100.101.102.103",
            "devbox",
            "box-short",
            "box-short.corp.example",
        }
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("box-short", True),
        ("box-short.corp.example:3848", True),
        ("100.101.102.103:3848", True),
        ("devbox", True),
        ("box-short.evil.example", False),
    ],
)
def test_from_config_hostnames_pass_the_host_check(
    tmp_path: Path, fixed_names: None, host: str, expected: bool
) -> None:
    config = Config(home=tmp_path, host="100.101.102.103", machine_id="devbox")
    policy = TrustPolicy.from_config(config, TOKEN)
    got = decide(policy, peer_ip="127.0.0.1", origin=None, host_header=host, presented_token=None)
    assert got.allowed is expected


def test_from_config_origin_with_default_port_matches_browser_origin(tmp_path: Path) -> None:
    config = Config(home=tmp_path, allowed_origins=("https://app.example.com:443",))
    policy = TrustPolicy.from_config(config, TOKEN)
    ok = decide(
        policy,
        peer_ip="127.0.0.1",
        origin="https://app.example.com",
        host_header="localhost",
        presented_token=None,
    )
    assert ok.allowed and ok.via == "loopback"


@pytest.mark.parametrize("bad", ["null", "app.example.com", "http://"])
def test_from_config_rejects_unusable_origins(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="TELEPTY_ALLOWED_ORIGINS"):
        TrustPolicy.from_config(Config(home=tmp_path, allowed_origins=(bad,)), TOKEN)


def test_from_config_rejects_bad_allowlist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        TrustPolicy.from_config(Config(home=tmp_path, peer_allowlist=("10.0.0.300",)), TOKEN)


def test_default_policy_has_no_allowed_origins(tmp_path: Path) -> None:
    policy = TrustPolicy.from_config(Config(home=tmp_path), TOKEN)
    assert policy.allowed_origins == frozenset()
    assert policy.trust_tailscale is True
    assert policy.require_token is False
    got = decide(
        policy,
        peer_ip="127.0.0.1",
        origin="http://localhost:5173",
        host_header="localhost",
        presented_token=None,
    )
    assert got.code == "origin_forbidden"


# ----------------------------------------------------------------- extract_token


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/api/meta", {}, None),
        ("/api/meta", {"x-telepty-token": "hdr"}, "hdr"),
        ("/api/meta", {"X-Telepty-Token": " hdr "}, "hdr"),
        ("/api/meta", {"Authorization": "Bearer bear"}, "bear"),
        ("/api/meta", {"Authorization": "bearer  bear "}, "bear"),
        ("/api/meta", {"Authorization": "Basic dXNlcjpwYXNz"}, None),
        ("/api/meta", {"Authorization": "Bearer"}, None),
        ("/api/meta", {"Authorization": "Bearer "}, None),
        ("/api/meta?token=q", {}, "q"),
        ("/api/meta?token=", {}, None),
        ("/api/meta?token=q", {"Authorization": "Bearer bear"}, "bear"),
        ("/api/meta?token=q", {"x-telepty-token": "hdr", "Authorization": "Bearer b"}, "hdr"),
        ("/api/meta?token=q", {"x-telepty-token": ""}, "q"),
        ("/api/meta?token=q", {"Authorization": "Basic abc"}, "q"),
    ],
)
def test_extract_token(path: str, headers: dict[str, str], expected: str | None) -> None:
    request = make_mocked_request("GET", path, headers=headers)
    assert extract_token(request) == expected


# ------------------------------------------------------------------ token file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_token_creates_private_file_and_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "token"
    token = ensure_token(path)
    assert len(token) >= 40
    assert path.read_text().strip() == token
    assert _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["token"]  # no temp leftovers


def test_ensure_token_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "token"
    first = ensure_token(path)
    assert ensure_token(path) == first
    assert read_token(path) == first


def test_ensure_token_tokens_differ_between_homes(tmp_path: Path) -> None:
    assert ensure_token(tmp_path / "one" / "token") != ensure_token(tmp_path / "two" / "token")


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o666, 0o700, 0o604])
def test_ensure_token_tightens_loose_file(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "token"
    path.write_text("existing-token\n")
    path.chmod(loose)
    assert ensure_token(path) == "existing-token"
    assert _mode(path) == 0o600


def test_ensure_token_leaves_stricter_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("existing-token\n")
    path.chmod(0o400)
    assert ensure_token(path) == "existing-token"
    assert _mode(path) == 0o400


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_ensure_token_mode_is_exact_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        ensure_token(tmp_path / "token")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "token") == 0o600


def test_ensure_token_replaces_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  \n")
    token = ensure_token(path)
    assert token
    assert path.read_text().strip() == token
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]


def test_ensure_token_loses_race_and_returns_winners_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    real_link = os.link

    def other_process_wins(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        fd = os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, b"winner-token\n")
        os.close(fd)
        real_link(src, dst)

    monkeypatch.setattr(token_file.os, "link", other_process_wins)
    assert ensure_token(path) == "winner-token"
    assert path.read_text() == "winner-token\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]


def test_ensure_token_falls_back_when_hard_links_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(token_file.os, "link", no_links)
    path = tmp_path / "token"
    token = ensure_token(path)
    assert path.read_text().strip() == token
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]


def test_read_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    assert read_token(path) is None
    path.write_text("")
    assert read_token(path) is None
    path.write_text(" abc \n")
    assert read_token(path) == "abc"
    assert read_token(tmp_path) is None  # a directory is unreadable as a token
    path.write_bytes(b"\xff\xfe\x00")
    assert read_token(path) is None
