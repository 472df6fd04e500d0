"""The auth middleware on a real aiohttp server reached over loopback TCP.

The test client always connects from 127.0.0.1, so these tests cover what only a live
server can show (headers as sent on the wire, JSON bodies, open paths, WebSockets);
Tailscale and allowlist trust are covered through ``decide()`` in the unit tests.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from telepty.api.auth import AUTH_VIA_KEY, TrustPolicy, auth_middleware
from telepty.config import Config
from telepty.token_file import ensure_token

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

EVIL_ORIGIN = "https://evil.example.com"


async def meta(request: web.Request) -> web.Response:
    return web.json_response({"via": request[AUTH_VIA_KEY]})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(request[AUTH_VIA_KEY])
    await ws.close()
    return ws


def make_app(policy: TrustPolicy) -> web.Application:
    app = web.Application(middlewares=[auth_middleware(policy)])
    app.router.add_get("/api/meta", meta)
    app.router.add_post("/api/meta", meta)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/ws", ws_echo)
    return app


@pytest.fixture
def token(tmp_path: Path) -> str:
    return ensure_token(tmp_path / "token")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(home=tmp_path, host="127.0.0.1", machine_id="devbox")


@pytest.fixture
async def client(aiohttp_client: ClientFactory, config: Config, token: str) -> TestClient:
    return await aiohttp_client(make_app(TrustPolicy.from_config(config, token)))


@pytest.fixture
async def strict_client(aiohttp_client: ClientFactory, config: Config, token: str) -> TestClient:
    policy = TrustPolicy.from_config(config.with_(require_token=True), token)
    return await aiohttp_client(make_app(policy))


async def test_plain_loopback_request_is_trusted(client: TestClient) -> None:
    resp = await client.get("/api/meta")
    assert resp.status == 200
    assert await resp.json() == {"via": "loopback"}


async def test_loopback_with_valid_token_is_recorded_as_token(
    client: TestClient, token: str
) -> None:
    resp = await client.get("/api/meta", headers={"x-telepty-token": token})
    assert resp.status == 200
    assert await resp.json() == {"via": "token"}


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_foreign_origin_is_refused(client: TestClient, method: str) -> None:
    resp = await client.request(method, "/api/meta", headers={"Origin": EVIL_ORIGIN})
    assert resp.status == 403
    body = await resp.json()
    assert body["error"] == "origin_forbidden"
    assert "evil.example.com" in body["detail"]
    assert set(body) == {"error", "detail"}


async def test_foreign_origin_is_refused_even_with_token(client: TestClient, token: str) -> None:
    resp = await client.get(
        "/api/meta", headers={"Origin": EVIL_ORIGIN, "x-telepty-token": token}
    )
    assert resp.status == 403
    body = await resp.json()
    assert body["error"] == "origin_forbidden"
    assert token not in body["detail"]


async def test_null_origin_is_refused(client: TestClient) -> None:
    resp = await client.get("/api/meta", headers={"Origin": "null"})
    assert resp.status == 403
    assert (await resp.json())["error"] == "origin_forbidden"


async def test_allowed_origin_is_accepted(
    aiohttp_client: ClientFactory, config: Config, token: str
) -> None:
    policy = TrustPolicy.from_config(
        config.with_(allowed_origins=("http://localhost:5173",)), token
    )
    client = await aiohttp_client(make_app(policy))
    ok = await client.get("/api/meta", headers={"Origin": "http://localhost:5173"})
    assert ok.status == 200
    assert await ok.json() == {"via": "loopback"}
    other = await client.get("/api/meta", headers={"Origin": "http://localhost:5174"})
    assert other.status == 403


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:3848"])
async def test_foreign_host_is_refused(client: TestClient, host: str) -> None:
    resp = await client.get("/api/meta", headers={"Host": host})
    assert resp.status == 403
    body = await resp.json()
    assert body["error"] == "host_forbidden"
    assert "evil.example.com" in body["detail"]


@pytest.mark.parametrize("host", ["localhost:3848", "[::1]:3848", "devbox", "127.0.0.1"])
async def test_local_host_names_are_accepted(client: TestClient, host: str) -> None:
    resp = await client.get("/api/meta", headers={"Host": host})
    assert resp.status == 200
    assert await resp.json() == {"via": "loopback"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Origin": EVIL_ORIGIN}, {"Host": "evil.example.com"}, {"x-telepty-token": "wrong"}],
    ids=["plain", "bad-origin", "bad-host", "wrong-token"],
)
async def test_health_is_open(
    client: TestClient, strict_client: TestClient, headers: dict[str, str]
) -> None:
    for c in (client, strict_client):
        resp = await c.get("/api/health", headers=headers)
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/api/healthz", "/api/health/x", "/api/HEALTH"])
async def test_only_the_exact_health_path_is_open(client: TestClient, path: str) -> None:
    resp = await client.get(path, headers={"Origin": EVIL_ORIGIN})
    assert resp.status == 403
    assert (await resp.json())["error"] == "origin_forbidden"


async def test_strict_mode_refuses_loopback_without_token(strict_client: TestClient) -> None:
    resp = await strict_client.get("/api/meta")
    assert resp.status == 401
    body = await resp.json()
    assert body["error"] == "token_required"
    assert "x-telepty-token" in body["detail"]


async def test_strict_mode_refuses_wrong_token(strict_client: TestClient, token: str) -> None:
    resp = await strict_client.get("/api/meta", headers={"x-telepty-token": token + "x"})
    assert resp.status == 401
    body = await resp.json()
    assert body["error"] == "token_required"
    assert token not in body["detail"]


@pytest.mark.parametrize("transport", ["header", "bearer", "query"])
async def test_strict_mode_accepts_each_token_transport(
    strict_client: TestClient, token: str, transport: str
) -> None:
    if transport == "header":
        resp = await strict_client.get("/api/meta", headers={"x-telepty-token": token})
    elif transport == "bearer":
        resp = await strict_client.get("/api/meta", headers={"Authorization": f"Bearer {token}"})
    else:
        resp = await strict_client.get("/api/meta", params={"token": token})
    assert resp.status == 200
    assert await resp.json() == {"via": "token"}


async def test_strict_mode_websocket_with_query_token(
    strict_client: TestClient, token: str
) -> None:
    ws = await strict_client.ws_connect(f"/api/ws?token={token}")
    assert await ws.receive_str() == "token"
    await ws.close()


async def test_strict_mode_websocket_without_token_is_refused(strict_client: TestClient) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await strict_client.ws_connect("/api/ws")
    assert info.value.status == 401


async def test_refusals_are_logged_without_tokens(
    strict_client: TestClient, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "presented-but-wrong-token"
    with caplog.at_level(logging.WARNING, logger="telepty.auth"):
        resp = await strict_client.get("/api/meta", headers={"x-telepty-token": wrong})
    assert resp.status == 401
    records = [r for r in caplog.records if r.name == "telepty.auth"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "token_required" in message
    assert "127.0.0.1" in message
    assert token not in message
    assert wrong not in message


async def test_allowed_requests_are_not_logged_as_refusals(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="telepty.auth"):
        resp = await client.get("/api/meta")
    assert resp.status == 200
    assert [r for r in caplog.records if r.name == "telepty.auth"] == []
