"""The environment a spawned or wrapped agent starts with.

The daemon and the wrapper usually run inside another agent's shell, a tmux pane or a
previous telepty session, and several agent CLIs change behaviour when they see their
own markers in the environment (refusing to start "nested", switching to CI output,
reusing a parent's IDE socket or sandbox). A fresh agent must look like one a person
started in a plain terminal, so those markers are removed before exec.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_TERM = "xterm-256color"

STRIPPED_ENV_KEYS: frozenset[str] = frozenset(
    {
        # Claude Code sets this in its child shells; a Claude started under it refuses
        # to run ("cannot be launched inside another Claude Code session").
        "CLAUDECODE",
        # Tells Claude Code how it was launched (cli, sdk, …); inheriting a parent's
        # value would make the child report and behave as the wrong entrypoint.
        "CLAUDE_CODE_ENTRYPOINT",
        # Port of the parent's IDE/SSE bridge; a child would connect to the parent's IDE
        # integration instead of its own.
        "CLAUDE_CODE_SSE_PORT",
        # Codex marks commands it runs as non-interactive CI; an interactive Codex that
        # inherits it disables its TUI behaviour.
        "CODEX_CI",
        # Codex's sandbox markers describe the *parent's* sandbox (seatbelt/landlock,
        # network off); a child seeing them assumes restrictions it does not have or
        # skips setting up its own.
        "CODEX_SANDBOX",
        "CODEX_SANDBOX_NETWORK_DISABLED",
        # The parent Codex conversation id; a child would attribute itself to it.
        "CODEX_THREAD_ID",
        # Gemini CLI sets this in its child shells to detect nesting.
        "GEMINI_CLI",
        # Per-session telepty identity (SPEC §6): a child must get its own id/token
        # (passed in ``extra``), never silently reuse the parent's and be able to inject
        # as it.
        "TELEPTY_SESSION_ID",
        "TELEPTY_SESSION_TOKEN",
        # The daemon's PTY is not a tmux pane. Keeping these would make tmux-aware tools
        # in the child (and telepty's own pane detection) address the parent's pane.
        "TMUX",
        "TMUX_PANE",
    }
)


def child_env(base: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` minus the nesting markers, plus ``extra`` (which wins, even for them).

    ``extra`` is applied after stripping on purpose: that is how a new session gets
    its own ``TELEPTY_SESSION_ID``/``TELEPTY_SESSION_TOKEN``. TERM defaults to
    xterm-256color because a daemon started from a service manager often has no TERM,
    and agent TUIs fall back to no colour or refuse to draw without one.
    """
    env = {k: v for k, v in base.items() if k not in STRIPPED_ENV_KEYS}
    if extra:
        env.update(extra)
    if not env.get("TERM"):
        env["TERM"] = DEFAULT_TERM
    return env
