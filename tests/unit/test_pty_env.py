from telepty.pty.env import DEFAULT_TERM, STRIPPED_ENV_KEYS, child_env

EXPECTED = {
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_SSE_PORT",
    "CODEX_CI",
    "CODEX_SANDBOX",
    "CODEX_SANDBOX_NETWORK_DISABLED",
    "CODEX_THREAD_ID",
    "GEMINI_CLI",
    "TELEPTY_SESSION_ID",
    "TELEPTY_SESSION_TOKEN",
    "TMUX",
    "TMUX_PANE",
}


def test_stripped_keys() -> None:
    assert EXPECTED <= set(STRIPPED_ENV_KEYS)


def test_strips_nesting_markers_and_keeps_the_rest() -> None:
    base = {k: "1" for k in EXPECTED} | {"PATH": "/usr/bin", "HOME": "/root", "TERM": "screen"}
    env = child_env(base, None)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "TERM": "screen"}
    assert "CLAUDECODE" in base  # the input is not modified


def test_extra_is_applied_after_stripping() -> None:
    base = {"TELEPTY_SESSION_ID": "parent", "TELEPTY_SESSION_TOKEN": "parent-token", "A": "1"}
    env = child_env(base, {"TELEPTY_SESSION_ID": "child", "A": "2", "B": "3"})
    assert env["TELEPTY_SESSION_ID"] == "child"
    assert "TELEPTY_SESSION_TOKEN" not in env
    assert env["A"] == "2" and env["B"] == "3"


def test_term_defaults_when_absent_or_empty() -> None:
    assert child_env({}, None)["TERM"] == DEFAULT_TERM == "xterm-256color"
    assert child_env({"TERM": ""})["TERM"] == DEFAULT_TERM
    assert child_env({"TERM": "dumb"})["TERM"] == "dumb"
    assert child_env({}, {"TERM": "vt100"})["TERM"] == "vt100"
