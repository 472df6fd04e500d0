"""GET /metrics on a running daemon: parses as Prometheus text, and the numbers are true."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from telepty import __version__
from telepty.api.keys import BUS, REGISTRY
from telepty.sessions.model import SessionState
from tests.helpers import DaemonProcess, wait_until, wait_until_sync
from tests.unit.test_metrics import ParsedFamily, parse_exposition

FAMILIES = {
    "telepty_build_info": "gauge",
    "telepty_sessions": "gauge",
    "telepty_deliveries": "gauge",
    "telepty_delivery_seconds": "histogram",
    "telepty_bus_events_total": "counter",
    "telepty_bus_subscribers": "gauge",
    "telepty_bus_subscribers_dropped_total": "counter",
}


@pytest.fixture
def svc(client):  # type: ignore[no-untyped-def]
    return client.server.app


async def scrape(client) -> dict[str, ParsedFamily]:  # type: ignore[no-untyped-def]
    r = await client.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_exposition(await r.text())


async def register(client, sid: str) -> None:  # type: ignore[no-untyped-def]
    r = await client.post("/api/sessions/register", json={"type": "wrapped", "session_id": sid})
    assert r.status == 201, await r.text()


async def test_exposition_has_every_family_with_its_type(client) -> None:  # type: ignore[no-untyped-def]
    m = await scrape(client)
    assert {name: fam.type for name, fam in m.items()} == FAMILIES
    assert all(fam.help for fam in m.values())
    assert m["telepty_build_info"].value(version=__version__) == 1
    for state in ("running", "disconnected", "exited"):
        assert m["telepty_sessions"].value(state=state) == 0
    for status in ("queued", "delivering", "delivered", "retrying", "failed", "cancelled"):
        assert m["telepty_deliveries"].value(status=status) == 0
    for status in ("delivered", "failed", "cancelled"):
        assert m["telepty_delivery_seconds"].value("telepty_delivery_seconds_count", status=status) == 0


async def test_sessions_by_state(client, svc) -> None:  # type: ignore[no-untyped-def]
    for sid in ("a", "b", "c"):
        await register(client, sid)
    await svc[REGISTRY].set_state("c", SessionState.EXITED, reason="process_gone")
    sessions = (await scrape(client))["telepty_sessions"]
    assert [sessions.value(state=s) for s in ("running", "disconnected", "exited")] == [2, 0, 1]


async def _status(client, delivery_id: str) -> str:  # type: ignore[no-untyped-def]
    return (await (await client.get(f"/api/deliveries/{delivery_id}")).json())["status"]


async def test_deliveries_by_status_and_latency_histogram(client) -> None:  # type: ignore[no-untyped-def]
    # A wrapped session whose wrapper never connects: deliveries retry on the (short)
    # schedule, 0.3 s then 0.6 s, and fail with retry_exhausted; another one is cancelled.
    await register(client, "w1")
    r = await client.post("/api/sessions/w1/inject", json={"prompt": "will fail"})
    failing = (await r.json())["delivery_id"]
    r = await client.post("/api/sessions/w1/inject", json={"prompt": "will be cancelled"})
    cancelled = (await r.json())["delivery_id"]
    assert (await client.delete(f"/api/deliveries/{cancelled}")).status == 200

    async def failed() -> bool:
        return await _status(client, failing) == "failed"

    await wait_until(failed, 10, message="the delivery to fail")
    m = await scrape(client)
    deliveries = m["telepty_deliveries"]
    assert (deliveries.value(status="failed"), deliveries.value(status="cancelled")) == (1, 1)
    assert deliveries.value(status="queued") + deliveries.value(status="retrying") == 0
    listed = await (await client.get("/api/deliveries")).json()
    assert sorted(d["status"] for d in listed) == ["cancelled", "failed"]

    h = m["telepty_delivery_seconds"]
    name = "telepty_delivery_seconds"
    assert h.value(f"{name}_count", status="failed") == 1
    assert h.value(f"{name}_bucket", status="failed", le="0.5") == 0  # it waited out 0.3 + 0.6 s
    assert h.value(f"{name}_bucket", status="failed", le="5") == 1
    assert 0.9 <= h.value(f"{name}_sum", status="failed") < 5
    assert h.value(f"{name}_count", status="cancelled") == 1
    assert h.value(f"{name}_count", status="delivered") == 0


async def test_bus_traffic_and_subscribers(client, svc) -> None:  # type: ignore[no-untyped-def]
    def bus(m: dict[str, ParsedFamily]) -> tuple[float, float, float]:
        ev = m["telepty_bus_events_total"]
        return ev.value(direction="in"), ev.value(direction="out"), m["telepty_bus_subscribers"].value()

    before = bus(await scrape(client))
    subs = [svc[BUS].subscribe(), svc[BUS].subscribe(frozenset({"test.ping"})),
            svc[BUS].subscribe(frozenset({"something.else"}))]
    await svc[BUS].emit("test.ping", note="hello")
    after = bus(await scrape(client))
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (1, 2, 3)
    for s in subs:
        svc[BUS].unsubscribe(s)
    assert bus(await scrape(client))[2] == before[2]


async def test_metrics_follow_the_auth_rules(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/metrics", headers={"Origin": "https://evil.example"})
    assert r.status == 403


def _scrape_process(d: DaemonProcess) -> dict[str, ParsedFamily]:
    with urllib.request.urlopen(d.url + "/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_exposition(resp.read().decode())


def test_recorded_counts_survive_a_restart_live_latency_restarts(daemon: DaemonProcess) -> None:
    assert daemon.request("POST", "/api/sessions/register", {"type": "wrapped", "session_id": "w1"})[0] == 201
    status, body = daemon.request("POST", "/api/sessions/w1/inject", {"prompt": "p"})
    assert status == 202

    def final() -> dict[str, Any] | None:
        d = daemon.request("GET", f"/api/deliveries/{body['delivery_id']}")[1]
        return d if d["status"] == "failed" else None

    wait_until_sync(final, 10, message="the delivery to fail")
    m = _scrape_process(daemon)
    assert m["telepty_delivery_seconds"].value("telepty_delivery_seconds_count", status="failed") == 1
    daemon.stop()

    d2 = DaemonProcess(home=daemon.home, env=daemon.env).start()
    m = _scrape_process(d2)
    assert m["telepty_deliveries"].value(status="failed") == 1  # counted from the store
    assert m["telepty_sessions"].value(state="disconnected") == 1  # waiting for its wrapper
    assert m["telepty_delivery_seconds"].value("telepty_delivery_seconds_count", status="failed") == 0
    d2.stop()
