"""TELEPTY_BUS_URL and the NATS credentials: parsed, checked, never shown."""

from __future__ import annotations

import pytest

from telepty.config import Config, ConfigError


def test_unset_means_the_sqlite_bus() -> None:
    cfg = Config.from_env({})
    assert cfg.bus_url is None and cfg.nats_token is None


def test_a_loopback_server_needs_no_credentials() -> None:
    cfg = Config.from_env({"TELEPTY_BUS_URL": "nats://127.0.0.1:4222"})
    assert cfg.bus_url == "nats://127.0.0.1:4222"


def test_credentials_are_read_and_kept_out_of_repr() -> None:
    cfg = Config.from_env({
        "TELEPTY_BUS_URL": "nats://nats.tail1234.ts.net:4222, tls://10.0.0.5:4222",
        "TELEPTY_NATS_USER": "telepty", "TELEPTY_NATS_PASSWORD": "s3cret-pw",
        "TELEPTY_NATS_TOKEN": "s3cret-token", "TELEPTY_NATS_NKEY": "/k/user.nk",
        "TELEPTY_NATS_CREDS": "/k/user.creds",
    })
    assert (cfg.nats_user, cfg.nats_password, cfg.nats_nkey, cfg.nats_creds) == (
        "telepty", "s3cret-pw", "/k/user.nk", "/k/user.creds")
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize(("env", "says"), [
    ({"TELEPTY_BUS_URL": "http://127.0.0.1:4222"}, "nats://"),
    ({"TELEPTY_BUS_URL": "nats://"}, "nats://"),
    ({"TELEPTY_BUS_URL": "nats://me:pw@127.0.0.1:4222"}, "must not carry credentials"),
    ({"TELEPTY_BUS_URL": "nats://tok@127.0.0.1:4222"}, "must not carry credentials"),
    ({"TELEPTY_BUS_URL": "nats://127.0.0.1:4222", "TELEPTY_NATS_USER": "u"}, "go together"),
    ({"TELEPTY_BUS_URL": "nats://10.1.2.3:4222"}, "no NATS credentials"),
    ({"TELEPTY_BUS_URL": "nats://127.0.0.1:4222,nats://nats.example:4222"}, "another machine"),
])
def test_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Config.from_env(env)


def test_a_remote_server_with_any_credential_is_accepted() -> None:
    for cred in ("TELEPTY_NATS_TOKEN", "TELEPTY_NATS_NKEY", "TELEPTY_NATS_CREDS"):
        assert Config.from_env({"TELEPTY_BUS_URL": "nats://10.1.2.3:4222", cred: "x"}).bus_url
