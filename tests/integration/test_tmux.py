"""telepty.tmux against real tmux servers (one private server per test, libtmux fixtures).

What lands in a pane is checked byte for byte by running a reader in the pane and
reading what it wrote to a file. Cooked-mode readers (``cat``) see tmux's LF→CR paste
conversion turned back into LF by the tty (ICRNL); raw-mode readers see the CRs and
any bracketed-paste markers exactly as the application would.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pathlib
import shlex
import signal
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import libtmux
import pytest

from telepty.clock import monotonic
from telepty.tmux import PaneInfo, TmuxError, TmuxServer
from telepty.tmux.control import ControlClient, ControlCommandError, ControlUnavailable
from telepty.tmux.errors import classify

pytestmark = pytest.mark.integration

MODES = ["control", "fork"]


async def wait_until(
    pred: Callable[[], Any | Awaitable[Any]], timeout: float = 5.0, interval: float = 0.02
) -> Any:
    """Poll ``pred`` (sync or async) until it returns something truthy; fail at the deadline."""
    deadline = monotonic() + timeout
    while True:
        result = pred()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@pytest.fixture(params=MODES)
async def tmx(request: pytest.FixtureRequest, server: libtmux.Server) -> AsyncIterator[TmuxServer]:
    t = TmuxServer(socket_name=server.socket_name, use_control=request.param == "control")
    yield t
    await t.close()


def assert_transport(tmx: TmuxServer) -> None:
    """The control variant must really have used control mode, not silently forked."""
    if tmx.control is not None:
        assert tmx.transport_counts["control"] > 0, tmx.transport_counts
    else:
        assert tmx.transport_counts["control"] == 0


async def start_pane(session: libtmux.Session, shell_command: str) -> str:
    """A new window running ``shell_command`` (through tmux's default shell); its pane id."""

    def new() -> str:
        window = session.new_window(window_shell=shell_command, attach=False)
        pane_id = window.active_pane.pane_id  # type: ignore[union-attr]
        assert pane_id is not None
        return pane_id

    return await asyncio.to_thread(new)


async def foreground_is(tmx: TmuxServer, pane_id: str, command: str) -> bool:
    info = await tmx.pane_info(pane_id)
    return info is not None and info.pane_current_command == command


async def pane_gone(tmx: TmuxServer, pane_id: str) -> bool:
    return await tmx.pane_info(pane_id) is None


async def start_cat(session: libtmux.Session, tmx: TmuxServer, out: pathlib.Path) -> str:
    """A pane whose foreground program is ``cat > out`` on a cooked-mode tty."""
    pane = await start_pane(session, f"cd {shlex.quote(str(out.parent))} && exec cat > {out.name}")
    await wait_until(lambda: foreground_is(tmx, pane, "cat"))
    return pane


async def start_raw_reader(
    session: libtmux.Session, tmx: TmuxServer, out: pathlib.Path, nbytes: int, prelude: str = ""
) -> str:
    """A pane in raw mode copying exactly ``nbytes`` of input to ``out``, then idling.

    The pane must outlive the reader (``capture_after`` looks at it), so the shell
    stays in the foreground and a marker file says when the tty is raw: input sent
    after that is buffered by the tty until ``head`` reads it.
    """
    ready = out.with_name(out.name + ".ready")
    script = (
        f"{prelude}stty raw -echo && : > {shlex.quote(str(ready))}; "
        f"head -c {nbytes} > {shlex.quote(str(out))}; exec sleep 600"
    )
    pane = await start_pane(session, script)
    await wait_until(ready.exists)
    return pane


async def finish_cat(tmx: TmuxServer, pane: str, out: pathlib.Path) -> bytes:
    await tmx.send_keys(pane, "C-d")
    await wait_until(lambda: pane_gone(tmx, pane))
    return out.read_bytes()


PROMPTS = {
    "ascii": b"Please review the diff and reply with LGTM or a list of issues.",
    "utf8": "한국어 프롬프트 테스트 — emoji 🚀🧪 and accents: café, naïve".encode(),
    "tabs_quotes": b"col1\tcol2\t'single' \"double\" back\\slash; semi & amp | pipe",
    "shell_meta": b"$(touch pwned-subst) `touch pwned-tick` ${HOME} $HOME * ~ !! #{pane_id} %1",
    "multiline": b"line one\nline two\n\n    indented line four\nlast line",
}


# -- paste: bytes land exactly ---------------------------------------------------------


@pytest.mark.parametrize("name", list(PROMPTS))
async def test_paste_lands_exact_bytes(
    tmx: TmuxServer, session: libtmux.Session, tmp_path: pathlib.Path, name: str
) -> None:
    data = PROMPTS[name]
    out = tmp_path / "out"
    pane = await start_cat(session, tmx, out)

    await tmx.paste_bytes(pane, data)
    await tmx.send_keys(pane, "Enter")

    # The submit key is a separate key event: cat gets the line terminated by it.
    assert await finish_cat(tmx, pane, out) == data + b"\n"
    assert not list(tmp_path.glob("pwned*")), "prompt text was executed"
    assert_transport(tmx)


async def test_paste_100k_raw_mode_exact(
    tmx: TmuxServer, session: libtmux.Session, tmp_path: pathlib.Path
) -> None:
    line = "0123456789 abcdef 한국어 🚀 $(x) `y` 'z' \"w\"\t".encode()
    data = (line * (100 * 1024 // len(line) + 1))[: 100 * 1024]
    data = data.decode("utf-8", "ignore").encode()  # do not cut a character in half
    data = data.replace(b"w\"\t", b"w\"\n")  # and make it multi-line
    out = tmp_path / "big"
    pane = await start_raw_reader(session, tmx, out, len(data))

    await tmx.paste_bytes(pane, data)

    await wait_until(lambda: out.exists() and out.stat().st_size >= len(data), timeout=10)
    # Raw mode: the application sees tmux's CR line separators untranslated.
    assert out.read_bytes() == data.replace(b"\n", b"\r")


async def test_paste_is_bracketed_by_tmux_when_the_app_asks(
    tmx: TmuxServer, session: libtmux.Session, tmp_path: pathlib.Path
) -> None:
    data = "multi\nline 🚀 paste".encode()
    expected = b"\x1b[200~" + data.replace(b"\n", b"\r") + b"\x1b[201~"
    out = tmp_path / "bracketed"
    pane = await start_raw_reader(
        session, tmx, out, len(expected), prelude="printf '\\033[?2004h'; "
    )

    await tmx.paste_bytes(pane, data)

    await wait_until(lambda: out.exists() and out.stat().st_size >= len(expected))
    assert out.read_bytes() == expected


async def test_prompt_never_on_a_command_line(
    tmx: TmuxServer,
    session: libtmux.Session,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = "TELEPTY-SECRET-PROMPT-7f3a"
    data = f"{marker} $(touch pwned)".encode()
    out = tmp_path / "out"
    pane = await start_cat(session, tmx, out)

    argvs: list[tuple[str, ...]] = []
    control_input: list[bytes] = []
    real_exec = asyncio.create_subprocess_exec

    async def recording_exec(*argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        argvs.append(tuple(argv))
        proc = await real_exec(*argv, **kwargs)
        if "-C" in argv and proc.stdin is not None:
            real_write = proc.stdin.write

            def write(b: bytes) -> None:
                control_input.append(b)
                real_write(b)

            proc.stdin.write = write  # type: ignore[method-assign]
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording_exec)
    if tmx.control is not None:
        await tmx.control.close()  # restart under the recorder
        tmx.control = ControlClient("tmux", tmx.socket_args)

    await tmx.paste_bytes(pane, data)
    await tmx.send_keys(pane, "Enter")

    assert argvs, "nothing recorded"
    assert not any(marker in arg for argv in argvs for arg in argv)
    assert not any(marker.encode() in chunk for chunk in control_input)
    if tmx.control is not None:
        assert control_input, "control client was not used"
    assert await finish_cat(tmx, pane, out) == data + b"\n"


async def test_control_paste_forks_nothing_and_leaves_no_file(
    server: libtmux.Server, session: libtmux.Session, tmp_path: pathlib.Path
) -> None:
    tmx = TmuxServer(socket_name=server.socket_name)
    try:
        out = tmp_path / "out"
        pane = await start_cat(session, tmx, out)
        await tmx.capture_tail(pane)  # the control client is up
        forks = tmx.transport_counts["fork"]
        data = PROMPTS["utf8"] + b"\n" + PROMPTS["shell_meta"]
        await tmx.paste_bytes(pane, data)
        await tmx.send_keys(pane, "Enter")
        assert tmx.transport_counts["fork"] == forks  # load-buffer went over control too
        folder = tmx._buffer_files._dir
        assert folder is not None and (folder.stat().st_mode & 0o777) == 0o700
        assert list(folder.iterdir()) == []  # each file is gone once tmux has read it
        assert await finish_cat(tmx, pane, out) == data + b"\n"
    finally:
        await tmx.close()
    assert not folder.exists()


async def test_load_buffer_falls_back_to_stdin_when_the_file_cannot_be_made(
    server: libtmux.Server, session: libtmux.Session, tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tmx = TmuxServer(socket_name=server.socket_name)
    try:
        out = tmp_path / "out"
        pane = await start_cat(session, tmx, out)
        not_a_dir = tmp_path / "not-a-dir"  # even root cannot create files under it
        not_a_dir.write_text("")
        monkeypatch.setattr(tmx._buffer_files, "_directory", lambda: not_a_dir)
        forks = tmx.transport_counts["fork"]
        await tmx.paste_bytes(pane, PROMPTS["multiline"])
        await tmx.send_keys(pane, "Enter")
        assert tmx.transport_counts["fork"] == forks + 1  # load-buffer - through stdin
        assert await finish_cat(tmx, pane, out) == PROMPTS["multiline"] + b"\n"
    finally:
        await tmx.close()


# -- panes: capture, info, modes, keys ---------------------------------------------------


async def test_capture_tail_reflects_printed_text(
    tmx: TmuxServer, session: libtmux.Session, tmp_path: pathlib.Path
) -> None:
    pane = await start_pane(session, "printf 'one\\ntwo\\nthree\\n'; exec cat")
    await wait_until(lambda: foreground_is(tmx, pane, "cat"))
    await wait_until(lambda: _tail_endswith(tmx, pane, "three"))

    assert await tmx.capture_tail(pane, lines=2) == "two\nthree"
    assert (await tmx.capture_tail(pane)).split("\n")[-3:] == ["one", "two", "three"]

    await tmx.send_keys(pane, "hello 한국어", literal=True)
    await tmx.send_keys(pane, "Enter")
    # cat echoes (tty) and then prints the line back: two identical rows at the bottom.
    await wait_until(lambda: _tail_endswith(tmx, pane, "hello 한국어\nhello 한국어"))
    assert_transport(tmx)


async def _tail_endswith(tmx: TmuxServer, pane: str, text: str) -> bool:
    return (await tmx.capture_tail(pane, lines=8)).endswith(text)


async def test_capture_same_over_control_and_fork(
    server: libtmux.Server, session: libtmux.Session
) -> None:
    async with TmuxServer(socket_name=server.socket_name) as ctl, TmuxServer(
        socket_name=server.socket_name, use_control=False
    ) as fork:
        pane = await start_pane(session, "printf 'tab\\there 한국어 🚀 %%end 1 2 1\\n'; exec cat")
        await wait_until(lambda: _tail_endswith(fork, pane, "🚀 %end 1 2 1"))
        assert await ctl.capture_tail(pane) == await fork.capture_tail(pane)
        assert await ctl.list_panes() == await fork.list_panes()
        assert ctl.transport_counts["control"] >= 2


async def test_pane_info_and_list_panes(tmx: TmuxServer, session: libtmux.Session) -> None:
    pane = await start_pane(session, "exec cat")
    await wait_until(lambda: foreground_is(tmx, pane, "cat"))

    info = await tmx.pane_info(pane)
    assert isinstance(info, PaneInfo)
    assert info.pane_id == pane
    assert info.session_name == session.session_name
    assert info.pane_pid > 0 and info.pane_width > 0 and info.pane_height > 0
    assert info.pane_tty.startswith("/dev/")
    assert not info.pane_dead and not info.pane_in_mode

    panes = await tmx.list_panes()
    assert pane in {p.pane_id for p in panes}
    assert {p.session_name for p in panes} >= {session.session_name}

    await asyncio.to_thread(lambda: session.server.cmd("kill-pane", "-t", pane))
    assert await tmx.pane_info(pane) is None
    assert pane not in {p.pane_id for p in await tmx.list_panes()}
    assert await tmx.pane_info("%99999") is None
    with pytest.raises(ValueError):
        await tmx.pane_info("mysession:1.0")
    assert_transport(tmx)


async def test_list_panes_survives_odd_session_names(
    tmx: TmuxServer, server: libtmux.Server, session: libtmux.Session
) -> None:
    created = await asyncio.to_thread(
        lambda: server.new_session(session_name="it's a \"세션\"; $(x) \\ {z}")
    )
    names = {p.session_name for p in await tmx.list_panes()}
    assert created.session_name in names
    assert_transport(tmx)


async def test_exit_mode_leaves_copy_mode(tmx: TmuxServer, session: libtmux.Session) -> None:
    pane = await start_pane(session, "exec cat")
    await wait_until(lambda: foreground_is(tmx, pane, "cat"))
    await tmx.exit_mode(pane)  # not in a mode: fine

    await tmx.run("copy-mode", "-t", pane)
    assert (await tmx.pane_info(pane)).pane_in_mode  # type: ignore[union-attr]
    await tmx.exit_mode(pane)
    assert not (await tmx.pane_info(pane)).pane_in_mode  # type: ignore[union-attr]


async def test_a_pane_left_out_of_copy_mode_takes_the_paste_and_its_enter(
    tmx: TmuxServer, session: libtmux.Session, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "out"
    pane = await start_cat(session, tmx, out)
    await tmx.run("copy-mode", "-t", pane)

    await tmx.exit_mode(pane)  # what the paste-buffer transport does first (a mode eats the Enter)
    await tmx.paste_bytes(pane, b"submitted despite copy mode")
    await tmx.send_keys(pane, "Enter")

    assert await finish_cat(tmx, pane, out) == b"submitted despite copy mode\n"


async def test_send_keys_names_and_literal(
    tmx: TmuxServer, session: libtmux.Session, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "out"
    pane = await start_cat(session, tmx, out)
    await tmx.send_keys(pane, "a", "b", "Space", "c")
    await tmx.send_keys(pane, "Enter")
    await tmx.send_keys(pane, "-x 'q' \"r\" Enter ;", literal=True)
    await tmx.send_keys(pane, "Enter")
    await tmx.send_keys(pane, "a\\;", "\\", "{", ";", literal=True)
    await tmx.send_keys(pane, "Enter")
    expected = b"ab c\n-x 'q' \"r\" Enter ;\na\\;\\{;\n"
    assert await finish_cat(tmx, pane, out) == expected


async def test_a_paste_is_not_submitted(
    tmx: TmuxServer, session: libtmux.Session, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "out"
    pane = await start_cat(session, tmx, out)
    await tmx.paste_bytes(pane, b"draft")
    await wait_until(lambda: _tail_endswith(tmx, pane, "draft"))
    await tmx.send_keys(pane, "Enter")
    assert await finish_cat(tmx, pane, out) == b"draft\n"


async def test_paste_leaves_no_buffers(
    tmx: TmuxServer, session: libtmux.Session, tmp_path: pathlib.Path
) -> None:
    pane = await start_cat(session, tmx, tmp_path / "out")
    await tmx.paste_bytes(pane, b"x")
    assert await tmx.run("list-buffers", "-F", "#{buffer_name}") == ""


# -- failures are classified -------------------------------------------------------------


async def test_paste_into_killed_pane_is_pane_dead(
    tmx: TmuxServer, session: libtmux.Session
) -> None:
    pane = await start_pane(session, "exec cat")
    await wait_until(lambda: foreground_is(tmx, pane, "cat"))
    await asyncio.to_thread(lambda: session.server.cmd("kill-pane", "-t", pane))

    with pytest.raises(TmuxError) as ei:
        await tmx.paste_bytes(pane, b"hello")
    assert ei.value.code == "pane_dead"
    assert ei.value.stage == "paste_buffer"
    assert ei.value.to_dict()["stage"] == "paste_buffer"

    for call in (tmx.capture_tail(pane), tmx.send_keys(pane, "Enter")):
        with pytest.raises(TmuxError) as ei:
            await call
        assert ei.value.code == "pane_dead"


async def test_dead_remain_on_exit_pane_is_refused_without_crashing_tmux(
    tmx: TmuxServer, session: libtmux.Session, server: libtmux.Server
) -> None:
    # tmux 3.3a crashes the whole server on paste-buffer into a dead pane.
    await asyncio.to_thread(lambda: server.cmd("set-option", "-g", "remain-on-exit", "on"))
    pane = await start_pane(session, "exit 0")
    await wait_until(lambda: _is_dead(tmx, pane))

    with pytest.raises(TmuxError) as ei:
        await tmx.paste_bytes(pane, b"hello")
    assert (ei.value.code, ei.value.stage) == ("pane_dead", "paste_buffer")

    # The paste stage guards itself (the pane may die right after any look at it).
    await tmx.load_buffer("telepty-test", b"hello")
    with pytest.raises(TmuxError) as ei:
        await tmx.paste_buffer("telepty-test", pane)
    assert (ei.value.code, ei.value.stage) == ("pane_dead", "paste_buffer")

    assert await asyncio.to_thread(server.is_alive)
    assert pane in {p.pane_id for p in await tmx.list_panes()}
    await tmx.delete_buffer("telepty-test")
    assert_transport(tmx)


async def _is_dead(tmx: TmuxServer, pane: str) -> bool:
    info = await tmx.pane_info(pane)
    return info is not None and info.pane_dead


async def test_failed_paste_deletes_its_buffer(
    tmx: TmuxServer, session: libtmux.Session, server: libtmux.Server
) -> None:
    await asyncio.to_thread(lambda: server.cmd("set-option", "-g", "remain-on-exit", "on"))
    pane = await start_pane(session, "exit 0")
    await wait_until(lambda: _is_dead(tmx, pane))

    with pytest.raises(TmuxError) as ei:
        await tmx.paste_bytes(pane, b"hello")  # the pane died after a look said it was alive
    assert (ei.value.code, ei.value.stage) == ("pane_dead", "paste_buffer")
    assert await tmx.run("list-buffers", "-F", "#{buffer_name}") == ""
    assert await asyncio.to_thread(server.is_alive)


async def test_server_gone_means_pane_dead(
    tmx: TmuxServer, session: libtmux.Session, server: libtmux.Server
) -> None:
    pane = await start_pane(session, "exec cat")
    await wait_until(lambda: foreground_is(tmx, pane, "cat"))
    await tmx.capture_tail(pane)  # control client (if any) is attached now
    await asyncio.to_thread(server.kill)

    with pytest.raises(TmuxError) as ei:
        await tmx.paste_bytes(pane, b"hello")
    assert ei.value.code == "pane_dead"
    assert ei.value.server_gone
    assert "server" in ei.value.detail
    assert await tmx.list_panes() == []
    assert await tmx.pane_info(pane) is None


async def test_list_panes_without_a_running_server(tmx: TmuxServer) -> None:
    assert await tmx.list_panes() == []
    assert await tmx.pane_info("%0") is None


async def test_tmux_binary_missing() -> None:
    tmx = TmuxServer(socket_name="telepty-never", tmux_bin="/nonexistent/tmux")
    try:
        assert not tmx.available()
        with pytest.raises(TmuxError) as ei:
            await tmx.list_panes()
        assert ei.value.code == "tmux_unavailable"
        with pytest.raises(TmuxError) as ei:
            await tmx.paste_bytes("%1", b"hello")
        assert (ei.value.code, ei.value.stage) == ("tmux_unavailable", "load_buffer")
    finally:
        await tmx.close()
    assert TmuxServer().available()


async def test_hung_tmux_times_out(tmp_path: pathlib.Path) -> None:
    fake = tmp_path / "tmux"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    async with TmuxServer(tmux_bin=str(fake), use_control=False, timeout_s=0.2) as tmx:
        with pytest.raises(TmuxError) as ei:
            await tmx.capture_tail("%1", stage="capture_before")
    assert ei.value.code == "tmux_cmd_failed"
    assert ei.value.stage == "capture_before"
    assert "timed out" in ei.value.detail


@pytest.mark.parametrize(
    ("stderr", "code", "server_gone"),
    [
        ("can't find pane: %99", "pane_dead", False),
        ("can't find window: 7", "pane_dead", False),
        ("no such pane", "pane_dead", False),
        ("no server running on /tmp/tmux-0/x", "pane_dead", True),
        ("error connecting to /tmp/tmux-0/x (No such file or directory)", "pane_dead", True),
        ("error connecting to /tmp/tmux-0/x (Connection refused)", "pane_dead", True),
        ("server exited unexpectedly", "pane_dead", True),
        ("error connecting to /tmp/tmux-0/x (Permission denied)", "tmux_unavailable", False),
        ("no buffer telepty-1", "tmux_cmd_failed", False),
        ("", "tmux_cmd_failed", False),
    ],
)
def test_classify(stderr: str, code: str, server_gone: bool) -> None:
    err = classify("paste_buffer", stderr, 1)
    assert (err.code, err.server_gone, err.stage) == (code, server_gone, "paste_buffer")
    assert err.detail


# -- addressing ----------------------------------------------------------------------------


async def test_from_tmux_env(server: libtmux.Server, session: libtmux.Session) -> None:
    assert TmuxServer.from_tmux_env("/tmp/tmux-0/default,1234,0").socket_path == (
        "/tmp/tmux-0/default"
    )
    assert TmuxServer.from_tmux_env("/tmp/a,b/sock,1,2").socket_path == "/tmp/a,b/sock"
    with pytest.raises(ValueError):
        TmuxServer.from_tmux_env("")
    path = await asyncio.to_thread(
        lambda: server.cmd("display-message", "-p", "#{socket_path}").stdout[0]
    )
    async with TmuxServer.from_tmux_env(f"{path},1,0") as tmx:
        assert session.session_name in {p.session_name for p in await tmx.list_panes()}


# -- control mode ----------------------------------------------------------------------------


@pytest.fixture
async def ctl(server: libtmux.Server, session: libtmux.Session) -> AsyncIterator[ControlClient]:
    cc = ControlClient("tmux", ["-L", server.socket_name or ""])
    yield cc
    await cc.close()


async def test_control_commands_and_framing(ctl: ControlClient, server: libtmux.Server) -> None:
    assert await ctl.command(["display-message", "-p", "hello world"]) == "hello world"
    assert await ctl.command(["display-message", "-p", "a; b;"]) == "a; b;"
    assert ctl.running and ctl.pid

    ids = (await ctl.command(["list-panes", "-a", "-F", "#{pane_id}"])).split("\n")
    expected = await asyncio.to_thread(lambda: server.cmd("list-panes", "-a", "-F", "#{pane_id}"))
    assert ids == expected.stdout

    # One line, two blocks: if-shell runs its branch as a separate command.
    out = await ctl.command(["if-shell", "-F", "1", "display-message -p yes", "display -p no"])
    assert out == "yes"

    with pytest.raises(ControlCommandError, match="can't find pane"):
        await ctl.command(["capture-pane", "-p", "-t", "%99999"])
    assert await ctl.command(["display-message", "-p", "still in step"]) == "still in step"

    results = await asyncio.gather(
        *(ctl.command(["display-message", "-p", f"n{i}"]) for i in range(50))
    )
    assert results == [f"n{i}" for i in range(50)]
    assert ctl.starts == 1


async def test_control_refuses_what_it_cannot_quote(ctl: ControlClient) -> None:
    for args in (["display-message", "-p", "it's"], ["display-message", "-p", "a\nb"],
                 ["display-message", "-p", "한"], ["bad command"]):
        with pytest.raises(ControlUnavailable) as ei:
            await ctl.command(args)
        assert not ei.value.sent


async def test_server_forks_what_control_cannot_quote(tmx: TmuxServer, session: Any) -> None:
    assert await tmx.run("display-message", "-p", "it's 한국어") == "it's 한국어"


async def test_control_recovers_after_its_process_is_killed(
    ctl: ControlClient,
) -> None:
    assert await ctl.command(["display-message", "-p", "a"]) == "a"
    first = ctl.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # A command racing the death either fails fast (it may have been sent) or, if the
    # death was already noticed, restarts the client; it never hangs.
    started = monotonic()
    try:
        assert await ctl.command(["display-message", "-p", "r"], timeout_s=30) == "r"
    except ControlUnavailable:
        pass
    assert monotonic() - started < 5
    await wait_until(lambda: not ctl.running or ctl.pid != first)

    assert await ctl.command(["display-message", "-p", "b"]) == "b"
    assert ctl.pid not in (None, first)
    assert ctl.starts >= 2


async def test_server_survives_control_client_death_mid_stream(
    server: libtmux.Server, session: libtmux.Session
) -> None:
    async with TmuxServer(socket_name=server.socket_name, timeout_s=10) as tmx:
        pane = await start_pane(session, "printf 'ready\\n'; exec cat")
        await wait_until(lambda: _tail_endswith(tmx, pane, "ready"))
        assert tmx.control is not None and tmx.control.pid
        first = tmx.control.pid
        os.kill(first, signal.SIGKILL)
        # Immediately, before anyone noticed: retry-safe queries still answer, and
        # without sitting out the command timeout on a request nobody will answer.
        started = monotonic()
        assert (await tmx.capture_tail(pane)).endswith("ready")
        assert await tmx.pane_info(pane) is not None
        assert monotonic() - started < 5

        # The server holds the client's pipes and may keep answering on them until it
        # notices the client died; after that the next command starts a new client.
        async def restarted() -> bool:
            await tmx.capture_tail(pane)
            return tmx.control is not None and tmx.control.pid not in (None, first)

        await wait_until(restarted)
        assert tmx.control.starts == 2


async def test_control_follows_when_its_session_is_killed(
    ctl: ControlClient, server: libtmux.Server, session: libtmux.Session
) -> None:
    await ctl.command(["display-message", "-p", "x"])
    attached = ctl.session_id
    await asyncio.to_thread(lambda: server.cmd("kill-session", "-t", attached))
    await wait_until(lambda: not ctl.running)
    assert await ctl.command(["display-message", "-p", "y"]) == "y"
    assert ctl.session_id != attached


async def test_control_does_not_resize_or_keep_server_alive(
    ctl: ControlClient, server: libtmux.Server
) -> None:
    before = await asyncio.to_thread(
        lambda: server.cmd("list-windows", "-a", "-F", "#{window_id} #{window_width}x#{window_height}")
    )
    await ctl.command(["display-message", "-p", "x"])
    after = await asyncio.to_thread(
        lambda: server.cmd("list-windows", "-a", "-F", "#{window_id} #{window_width}x#{window_height}")
    )
    assert before.stdout == after.stdout

    await asyncio.to_thread(lambda: server.cmd("kill-server"))
    await wait_until(lambda: not ctl.running)
    with pytest.raises(ControlUnavailable):
        await ctl.command(["display-message", "-p", "x"])


async def test_control_without_any_session_falls_back(server: libtmux.Server) -> None:
    async with TmuxServer(socket_name=server.socket_name) as tmx:
        assert await tmx.list_panes() == []
        assert tmx.control is not None and not tmx.control.running
        assert tmx.transport_counts["fork"] >= 1
