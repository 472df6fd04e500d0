"""tmux faults under delivery: servers killed, panes killed, tmux leaving PATH, the
control-mode client dying. Real tmux servers on private sockets, the fake agent in the
panes, and a real daemon (a subprocess wherever the point is "the daemon stays up").

What each fault must end in (the classification these tests pin down):

- the tmux server is gone (``kill-server`` or SIGKILL) → ``failed / pane_dead``: a pane
  cannot outlive its server, and tmux says so plainly ("no server running", "error
  connecting … (Connection refused)", "server exited unexpectedly"); the liveness
  check marks the session ``exited`` with ``exit_reason: pane_dead``;
- a pane killed → ``failed / pane_dead`` for the delivery in flight and every one
  queued behind it, in order, without waiting out the retry schedule;
- the tmux binary gone from PATH while its server lives → ``failed / tmux_unavailable``
  (a prompt reaches tmux only through ``load-buffer``'s stdin, which needs a new tmux
  client, so the persistent control client cannot carry it); new injects get 503
  ``tmux_unavailable`` and no record. Binary and server both gone: also
  ``tmux_unavailable``, since without a tmux binary a dead server cannot be told from a
  live one, and the liveness check leaves pane sessions alone until it can;
- the control-mode client killed, server alive → the next commands reconnect or fork,
  and the prompt is delivered exactly once.

In every case: no delivery stays queued or in flight, none is reported delivered that
was not, no 5xx, and the daemon keeps serving (health, and a delivery into a pane on a
different, live tmux server lands byte for byte).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import libtmux
import psutil
import pytest

from telepty.api import keys
from telepty.config import Config
from telepty.daemon import create_app
from tests.helpers import DaemonProcess, client_delivery, client_finals, wait_until, wait_until_sync
from tests.integration.agents import AgentPane, agent_argv, agent_files, start_agent_pane

TMUX = shutil.which("tmux")
pytestmark = [pytest.mark.integration, pytest.mark.skipif(TMUX is None, reason="needs tmux")]

KILLS = ["kill-server", "sigkill"]


# -- tmux ---------------------------------------------------------------------------------


def kill_tmux(server: libtmux.Server, how: str) -> None:
    """Take the whole tmux server down, politely or not, and wait until it is gone."""
    pid = int(server.cmd("display-message", "-p", "#{pid}").stdout[0])
    if how == "kill-server":
        server.cmd("kill-server")
    else:
        os.kill(pid, signal.SIGKILL)  # leaves its socket file behind: "connection refused"
    wait_until_sync(lambda: not _running(pid), message=f"tmux server {pid} gone")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def ready_pane(session: libtmux.Session, tmp_path: Path, name: str, *, busy: bool = False) -> AgentPane:
    ap = start_agent_pane(session, tmp_path, name, busy=busy)
    marker = "working" if busy else "ready>"
    wait_until_sync(lambda: marker in ap.screen(), message=f"{name} agent {marker!r}")
    return ap


@pytest.fixture
def other_session(TestServer: type[libtmux.Server]) -> libtmux.Session:
    """A session on a second tmux server (reaped by libtmux's ``TestServer``)."""
    return TestServer().new_session(session_name="other")


# -- a daemon subprocess ----------------------------------------------------------------------


def register(d: DaemonProcess, ap: AgentPane, sid: str) -> None:
    status, body = d.request("POST", "/api/sessions/register", {
        "type": "pane", "session_id": sid, "tmux_pane": ap.pane_id,
        "tmux_socket": ap.socket_path, "command": "fake_agent", "agent": "other",
    })
    assert status == 201, body


def inject(d: DaemonProcess, sid: str, **body: Any) -> tuple[int, Any]:
    return d.request("POST", f"/api/sessions/{sid}/inject", body, timeout=60)


def accepted(d: DaemonProcess, sid: str, **body: Any) -> str:
    status, out = inject(d, sid, **body)
    assert status == 202, out
    return str(out["delivery_id"])


def is_at(d: DaemonProcess, did: str, status: str, stage: str | None = None) -> bool:
    r = d.delivery(did)
    return r["status"] == status and (stage is None or r["stage"] == stage)


def count(d: DaemonProcess) -> int:
    status, rows = d.request("GET", "/api/deliveries?limit=1000")
    assert status == 200
    return len(rows)


def session_state(d: DaemonProcess, sid: str) -> tuple[str, str | None]:
    status, s = d.request("GET", f"/api/sessions/{sid}")
    assert status == 200, s
    return s["state"], s["meta"].get("exit_reason")


def assert_serving(d: DaemonProcess) -> None:
    assert d.proc is not None and d.proc.poll() is None, d.log_path.read_text()
    status, body = d.request("GET", "/api/health")
    assert status == 200 and body["status"] == "ok", body


def framed(prompts: list[str]) -> bytes:
    """What the fake agent reads for these prompts: tmux's bracketed paste, then Enter."""
    return b"".join(b"\x1b[200~" + p.encode() + b"\x1b[201~\r" for p in prompts)


def assert_lands(d: DaemonProcess, sid: str, ap: AgentPane, prompt: str, before: list[str]) -> None:
    """A prompt into a live pane is delivered, and the agent read exactly it, once."""
    status, body = inject(d, sid, prompt=prompt, wait=True, timeout=20)
    assert status == 200 and body["status"] == "delivered", body
    wait_until_sync(lambda: ap.files.submissions() == [*before, prompt], 10,
                    message="exact submission in the live pane")
    assert ap.files.raw_bytes() == framed([*before, prompt])


def assert_in_order(recs: list[dict[str, Any]]) -> None:
    """FIFO per session: finished in the order they were accepted."""
    by_seq = sorted(recs, key=lambda r: r["seq"])
    assert [r["finished_at"] for r in by_seq] == sorted(r["finished_at"] for r in by_seq)


def clean_log(d: DaemonProcess) -> None:
    text = d.log_path.read_text()
    assert "Traceback" not in text and "delivery attempt crashed" not in text, text[-4000:]


# -- 1. the tmux server killed under waiting, queued and two-pane deliveries -------------------


@pytest.mark.parametrize("how", KILLS)
def test_server_killed_under_waiting_and_queued_deliveries(
    how: str, server: libtmux.Server, session: libtmux.Session, other_session: libtmux.Session,
    daemon_factory: Any, tmp_path: Path,
) -> None:
    busy = ready_pane(session, tmp_path, "busy", busy=True)
    idle = ready_pane(session, tmp_path, "idle")
    live = ready_pane(other_session, tmp_path, "live")
    # Long waits: the dead panes must fail well before the schedule would retry or the
    # guard would end. (The daemon's liveness check runs every 2 s.)
    d = daemon_factory(TELEPTY_RETRY_SCHEDULE="30").start()
    register(d, busy, "a1")
    register(d, idle, "a2")
    register(d, live, "b1")
    assert_lands(d, "b1", live, "before the fault", [])

    a1 = [accepted(d, "a1", prompt=f"busy {i}") for i in range(3)]  # head parked, two queued
    a2 = [accepted(d, "a2", prompt="guarded", quiet_ms=20000),  # head inside a 20 s quiet guard
          accepted(d, "a2", prompt="behind the guard")]
    wait_until_sync(lambda: is_at(d, a1[0], "retrying"), message="a1 head on the retry schedule")
    wait_until_sync(lambda: is_at(d, a2[0], "delivering", "quiet_guard"), message="a2 head guarding")
    assert d.delivery(a1[1])["status"] == "queued" and d.delivery(a2[1])["status"] == "queued"

    started = time.monotonic()
    kill_tmux(server, how)
    recs = d.finals(a1 + a2, 20)
    assert time.monotonic() - started < 15  # neither the 30 s retry wait nor the 20 s guard
    for r in recs:
        assert (r["status"], r["reason"]) == ("failed", "pane_dead"), r
        assert r["confirmed"] is None
    assert recs[3]["stage"] == "quiet_guard"  # the guard saw the server go, mid-window
    assert_in_order(recs[:3])
    assert_in_order(recs[3:])
    assert idle.files.raw_bytes() == b"" and busy.files.raw_bytes() == b""

    for sid in ("a1", "a2"):
        wait_until_sync(lambda sid=sid: session_state(d, sid) == ("exited", "pane_dead"),  # type: ignore[misc]
                        message=f"{sid} marked exited")
    # A new prompt for a session on the dead server fails at once, classified, no 5xx.
    status, body = inject(d, "a1", prompt="too late", wait=True, timeout=10)
    assert (status, body["status"], body["reason"]) == (422, "failed", "pane_dead"), body
    status, body = d.request("POST", "/api/sessions/a2/keys", {"keys": ["Enter"], "wait": True})
    assert (status, body["reason"]) == (422, "pane_dead"), body
    for path in ("/api/sessions/a1/screen", "/api/sessions/a1/explain", "/api/sessions"):
        status, body = d.request("GET", path)
        assert status < 500, (path, status, body)

    assert_serving(d)
    assert_lands(d, "b1", live, "after the fault", ["before the fault"])
    assert session_state(d, "b1") == ("running", None)
    clean_log(d)


# -- 2. the tmux server killed while a 1 MiB prompt is being pasted -----------------------------


def _big_prompt(size: int) -> str:
    line = "a line of a very large prompt: ünïcødé ✓ $(not run) 'q' \"dq\"\tend\n"
    text = line * (size // len(line.encode()) + 1)
    return text.encode()[:size].decode("utf-8", errors="ignore")


@pytest.mark.parametrize("how", KILLS)
def test_server_killed_mid_paste_of_a_large_prompt(
    how: str, server: libtmux.Server, session: libtmux.Session, other_session: libtmux.Session,
    daemon_factory: Any, tmp_path: Path,
) -> None:
    doomed = ready_pane(session, tmp_path, "doomed")
    live = ready_pane(other_session, tmp_path, "live")
    # A long settle keeps the delivery in its paste stage (load-buffer, paste-buffer, the
    # settle before the submit key) long enough to be caught there by polling.
    d = daemon_factory(TELEPTY_SETTLE_MS="1500").start()
    register(d, doomed, "big")
    register(d, live, "b1")
    prompt = _big_prompt(1024 * 1024)
    did = accepted(d, "big", prompt=prompt)
    behind = accepted(d, "big", prompt="queued behind the big one")
    wait_until_sync(lambda: is_at(d, did, "delivering", "paste"), 20, interval=0.005,
                    message="the big prompt in its paste stage")
    kill_tmux(server, how)

    first, second = d.finals([did, behind], 20)
    # Killed before the submit key: nothing was submitted, so nothing may claim it was.
    assert (first["status"], first["reason"]) == ("failed", "pane_dead"), first
    assert first["stage"] in {"load_buffer", "paste_buffer", "send_keys", "capture"}, first
    assert first["attempts"] == 1  # never pasted a second time
    assert (second["status"], second["reason"]) == ("failed", "pane_dead"), second
    assert doomed.files.submissions() == []
    assert_serving(d)
    assert_lands(d, "b1", live, "still delivering", [])
    clean_log(d)


# -- 3. tmux missing from PATH ------------------------------------------------------------------


def test_daemon_started_without_tmux_on_path(
    session: libtmux.Session, daemon_factory: Any, tmp_path: Path,
) -> None:
    """The PATH flavour of ``test_tmux_missing_is_503_for_pane_targets`` (a bad
    ``tmux_bin`` there), against a daemon process that must keep serving."""
    ap = ready_pane(session, tmp_path, "agent")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    d = daemon_factory(PATH=str(empty)).start()
    register(d, ap, "p1")
    for _ in range(2):
        status, body = inject(d, "p1", prompt="hello")
        assert (status, body["error"]) == (503, "tmux_unavailable"), body
    assert count(d) == 0
    assert_serving(d)
    assert ap.files.raw_bytes() == b""
    clean_log(d)


@pytest.fixture
def tmux_on_path(tmp_path: Path) -> Path:
    """A bin directory whose only entry is a ``tmux`` symlink; the test removes it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "tmux").symlink_to(str(TMUX))
    return bindir


def test_tmux_leaves_path_while_deliveries_are_queued(
    server: libtmux.Server, session: libtmux.Session, daemon_factory: Any, tmp_path: Path,
    tmux_on_path: Path,
) -> None:
    link = tmux_on_path / "tmux"
    busy = ready_pane(session, tmp_path, "busy", busy=True)
    idle = ready_pane(session, tmp_path, "idle")
    d = daemon_factory(PATH=str(tmux_on_path)).start()  # python is run by absolute path
    register(d, busy, "busy")
    register(d, idle, "idle")
    assert_lands(d, "idle", idle, "tmux is here", [])  # the control client is attached now

    # Binary gone, server alive: the queue drains, every delivery tmux_unavailable.
    queued = [accepted(d, "busy", prompt=f"queued {i}") for i in range(3)]
    wait_until_sync(lambda: is_at(d, queued[0], "retrying"), message="head on the retry schedule")
    link.unlink()
    for r in d.finals(queued, 15):
        assert (r["status"], r["reason"]) == ("failed", "tmux_unavailable"), r
    status, body = inject(d, "idle", prompt="refused")
    assert (status, body["error"]) == (503, "tmux_unavailable"), body
    assert count(d) == 4
    assert_serving(d)
    # The control client still sees the panes: the sessions are not declared dead.
    for sid in ("busy", "idle"):
        assert session_state(d, sid) == ("running", None)

    # tmux comes back: deliveries work again.
    link.symlink_to(str(TMUX))
    assert_lands(d, "idle", idle, "tmux is back", ["tmux is here"])

    # Binary and server both gone.
    queued = [accepted(d, "busy", prompt=f"again {i}") for i in range(3)]
    wait_until_sync(lambda: is_at(d, queued[0], "retrying"), message="head on the retry schedule")
    link.unlink()
    kill_tmux(server, "kill-server")
    for r in d.finals(queued, 15):
        # Without a tmux binary nobody can tell a dead server from a live one.
        assert (r["status"], r["reason"]) == ("failed", "tmux_unavailable"), r
    status, body = inject(d, "idle", prompt="refused again")
    assert (status, body["error"]) == (503, "tmux_unavailable"), body
    assert busy.files.raw_bytes() == b""
    assert idle.files.submissions() == ["tmux is here", "tmux is back"]
    assert_serving(d)
    clean_log(d)


# -- in-process daemon app: finer-grained cases -------------------------------------------------


async def _register(client: Any, ap: AgentPane, sid: str) -> None:
    resp = await client.post("/api/sessions/register", json={
        "type": "pane", "session_id": sid, "tmux_pane": ap.pane_id, "tmux_socket": ap.socket_path,
        "command": "fake_agent", "agent": "other"})
    assert resp.status == 201, await resp.text()


async def _inject(client: Any, sid: str, **body: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post(f"/api/sessions/{sid}/inject", json=body)
    return resp.status, await resp.json()


async def _at(client: Any, did: str, status: str, stage: str | None = None) -> bool:
    r = await client_delivery(client, did)
    return bool(r["status"] == status and (stage is None or r["stage"] == stage))


# -- 4. a pane killed mid-delivery, more queued behind it ----------------------------------------


@pytest.mark.parametrize("where", ["retry_wait", "quiet_guard"])
async def test_pane_killed_fails_the_whole_queue_fast_and_in_order(
    where: str, aiohttp_client: Any, config: Config, session: libtmux.Session, tmp_path: Path,
) -> None:
    """``test_pane_killed_mid_queue_fails_pane_dead`` (test_inject_e2e) with a 0.3 s
    schedule cannot tell "at once" from "at the next retry"; a 60 s schedule (and a
    20 s quiet guard) can."""
    client = await aiohttp_client(create_app(config.with_(retry_schedule=(60.0,))))
    ap = ready_pane(session, tmp_path, "agent", busy=where == "retry_wait")
    neighbour = ready_pane(session, tmp_path, "neighbour")
    await _register(client, ap, "p1")
    await _register(client, neighbour, "p2")
    head_body: dict[str, Any] = {"prompt": "head"}
    if where == "quiet_guard":
        head_body["quiet_ms"] = 20000
    ids = [(await _inject(client, "p1", **head_body))[1]["delivery_id"]]
    ids += [(await _inject(client, "p1", prompt=f"queued {i}"))[1]["delivery_id"] for i in range(3)]
    if where == "retry_wait":
        await wait_until(lambda: _at(client, ids[0], "retrying"), message="head parked for 60 s")
    else:
        await wait_until(lambda: _at(client, ids[0], "delivering", "quiet_guard"),
                         message="head in its 20 s quiet guard")

    started = time.monotonic()
    ap.pane.kill()  # type: ignore[attr-defined]
    recs = await client_finals(client, ids, 10)
    assert time.monotonic() - started < 10  # neither the 60 s retry wait nor the 20 s guard
    for r in recs:
        assert (r["status"], r["reason"]) == ("failed", "pane_dead"), r
    assert recs[0]["stage"] == ("quiet_guard" if where == "quiet_guard" else "check_ready")
    assert_in_order(recs)
    assert ap.files.raw_bytes() == b""
    # The neighbour pane on the same server is untouched.
    status, body = await _inject(client, "p2", prompt="neighbour still fine", wait=True, timeout=15)
    assert status == 200 and body["status"] == "delivered", body
    await wait_until(lambda: neighbour.files.submissions() == ["neighbour still fine"],
                     message="neighbour submission")


# -- 5. the control-mode client dies, the server lives ------------------------------------------


async def test_control_client_killed_between_and_during_deliveries(
    aiohttp_client: Any, config: Config, session: libtmux.Session, tmp_path: Path,
) -> None:
    client = await aiohttp_client(create_app(config))
    ap = ready_pane(session, tmp_path, "agent")
    await _register(client, ap, "p1")
    tmx = client.app[keys.TMUX].server(ap.socket_path)
    sent: list[str] = []

    async def deliver(prompt: str) -> None:
        status, body = await _inject(client, "p1", prompt=prompt, wait=True, timeout=20)
        assert status == 200 and body["status"] == "delivered", body
        sent.append(prompt)
        await wait_until(lambda: ap.files.submissions() == sent, message=f"{prompt!r} submitted")

    def kill_control() -> int:
        assert tmx.control is not None
        pid = tmx.control.pid
        assert pid is not None, "no control client attached"
        os.kill(pid, signal.SIGKILL)
        return pid

    await deliver("first, over the control client")
    first_pid = kill_control()
    await deliver("second, after the control client was killed")

    # Killed while a delivery sits in its quiet guard, between two captures.
    async def control_up() -> bool:
        return tmx.control is not None and tmx.control.pid not in (None, first_pid)

    await wait_until(control_up, message="a new control client")
    status, body = await _inject(client, "p1", prompt="third, guard interrupted", quiet_ms=1500)
    assert status == 202, body
    did = body["delivery_id"]
    await wait_until(lambda: _at(client, did, "delivering", "quiet_guard"), message="guarding")
    kill_control()
    (r,) = await client_finals(client, [did], 20)
    assert (r["status"], r["attempts"]) == ("delivered", 1), r
    sent.append("third, guard interrupted")
    await wait_until(lambda: ap.files.submissions() == sent, message="third submitted once")
    assert ap.files.submissions() == sent  # each exactly once
    assert ap.files.raw_bytes() == framed(sent)
    assert tmx.transport_counts["control"] > 0


# -- known gap (outside telepty/tmux): "cannot run tmux" is not "the pane is gone" --------------


async def _state(client: Any, sid: str) -> str:
    resp = await client.get(f"/api/sessions/{sid}")
    assert resp.status == 200
    return str((await resp.json())["state"])


async def test_pane_sessions_outlive_a_daemon_that_cannot_run_tmux(
    aiohttp_client: Any, config: Config, session: libtmux.Session, tmp_path: Path,
) -> None:
    """Not being able to run tmux says nothing about the pane. The fix belongs in
    ``pane_alive``: only ``pane_info() -> None`` (tmux said the pane or server is gone)
    means dead; a ``TmuxError`` there means "could not look" and should keep the session."""
    client = await aiohttp_client(create_app(config.with_(tmux_bin=str(tmp_path / "none" / "tmux"))))
    ap = ready_pane(session, tmp_path, "agent")
    await _register(client, ap, "p1")
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    resp = await client.post("/api/sessions/register",
                             json={"session_id": "w1", "command": "claude", "pid": gone.pid})
    assert resp.status == 201, await resp.text()
    # w1 was registered after p1, so once w1 is found gone a liveness pass has looked at p1.
    await wait_until(lambda: _state_is(client, "w1", "exited"), message="a liveness pass")
    assert await _state(client, "p1") == "running"
    assert "ready>" in ap.screen()  # the pane is alive: only tmux could not be run


async def _state_is(client: Any, sid: str, state: str) -> bool:
    return await _state(client, sid) == state


class ReusedSocket:
    """A private tmux server that is killed and started again on the same socket."""

    def __init__(self, tmp_path: Path) -> None:
        self.sock = str(tmp_path / "reused.sock")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    def start(self, files: Any) -> str:
        """A new server whose first pane runs the fake agent; that pane's id."""

        def started() -> bool:
            try:  # the old server may still be letting go of the socket
                self.tmux("new-session", "-d", "-x", "120", "-y", "30", shlex.join(agent_argv(files)))
            except subprocess.CalledProcessError:
                return False
            return True

        wait_until_sync(started, message="tmux server started")
        pane = self.tmux("display-message", "-p", "#{pane_id}")
        wait_until_sync(lambda: "ready>" in self.tmux("capture-pane", "-p", "-t", pane), message="agent up")
        return pane

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True)


def test_a_pane_id_reused_by_a_restarted_tmux_server_is_not_the_session(daemon_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """tmux restarted on the same socket while the daemon was down numbers its panes from
    %0 again: the session's old id now names someone else's terminal."""
    srv = ReusedSocket(tmp_path)
    old, new = agent_files(tmp_path, "old"), agent_files(tmp_path, "new")
    try:
        pane = srv.start(old)
        d = daemon_factory().start()
        status, body = d.request("POST", "/api/sessions/register", {
            "type": "pane", "session_id": "p1", "tmux_pane": pane, "tmux_socket": srv.sock,
            "command": "fake_agent"})
        assert status == 201, body
        assert body["meta"]["tmux_pane_pid"] == int(srv.tmux("display-message", "-p", "#{pane_pid}"))
        d.stop()
        srv.kill()
        assert srv.start(new) == pane  # the same id, another terminal

        d2 = daemon_factory().start()
        session = d2.request("GET", "/api/sessions/p1")[1]
        assert (session["state"], session["meta"]["exit_reason"]) == ("exited", "pane_dead"), session
        status, body = d2.request("POST", "/api/sessions/p1/inject",
                                  {"prompt": "not for you", "force": True, "wait": True})
        assert status == 422 and body["reason"] == "pane_dead", body
        assert new.submissions() == [] and new.raw_bytes() == b""
        d2.stop()
    finally:
        srv.kill()


async def test_delivery_refuses_a_reused_pane_id_before_liveness_notices(
    aiohttp_client: Any, config: Config, tmp_path: Path,
) -> None:
    """The same restart between two liveness passes: the transport itself refuses the pane."""
    srv = ReusedSocket(tmp_path)
    old, new = agent_files(tmp_path, "old"), agent_files(tmp_path, "new")
    try:
        pane = await asyncio.to_thread(srv.start, old)
        client = await aiohttp_client(create_app(config.with_(liveness_interval=3600.0)))
        resp = await client.post("/api/sessions/register", json={
            "type": "pane", "session_id": "p1", "tmux_pane": pane, "tmux_socket": srv.sock,
            "command": "fake_agent"})
        assert resp.status == 201
        await asyncio.to_thread(srv.kill)
        assert await asyncio.to_thread(srv.start, new) == pane
        resp = await client.post("/api/sessions/p1/inject", json={"prompt": "not for you", "force": True,
                                                                  "wait": True})
        body = await resp.json()
        assert (resp.status, body["reason"]) == (422, "pane_dead"), body
        assert "now runs another process" in body["detail"]
        assert new.submissions() == [] and new.raw_bytes() == b""
    finally:
        await asyncio.to_thread(srv.kill)
