"""kill -9 the daemon with deliveries queued and retrying: none lost, none doubled."""

from __future__ import annotations

from tests.helpers import FINAL_STATUSES as FINAL
from tests.helpers import DaemonProcess, wait_until_sync
from tests.integration.agents import start_agent_pane


def test_kill_9_with_queue_resumes_exactly_once(daemon_factory, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    schedule = ",".join(["0.4"] * 60)
    d = daemon_factory(TELEPTY_RETRY_SCHEDULE=schedule).start()
    ap = start_agent_pane(session, tmp_path, busy=True)
    wait_until_sync(lambda: "working" in ap.screen(), message="agent busy")
    status, _ = d.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": "p1", "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent"})
    assert status == 201
    prompts = [f"prompt {i}\nwith a second line {i}" for i in range(5)]
    ids = []
    for p in prompts:
        status, body = d.request("POST", "/api/sessions/p1/inject", {"prompt": p})
        assert status == 202, body
        ids.append(body["delivery_id"])

    def head_retried_twice() -> bool:
        return d.request("GET", f"/api/deliveries/{ids[0]}")[1]["attempts"] >= 2

    wait_until_sync(head_retried_twice, 10, message="head retrying")
    d.kill9()
    ap.files.stop.touch()  # the agent becomes free while no daemon is running
    wait_until_sync(lambda: "ready>" in ap.screen(), message="agent free")
    assert ap.files.submissions() == []

    d2 = DaemonProcess(home=d.home, env=d.env).start()

    def all_final() -> list[dict] | None:  # type: ignore[type-arg]
        records = [d2.request("GET", f"/api/deliveries/{i}")[1] for i in ids]
        return records if all(r["status"] in FINAL for r in records) else None

    records = wait_until_sync(all_final, 20, message="all deliveries final after restart")
    assert [r["status"] for r in records] == ["delivered"] * 5
    assert records[0]["attempts"] >= 2  # its pre-crash count survived the restart
    wait_until_sync(lambda: len(ap.files.submissions()) == 5, 10, message="five submissions")
    assert ap.files.submissions() == prompts  # each once, in order
    d2.stop()
