"""Requests the API fuzzers (test_api_schemathesis.py, test_api_fuzz.py) found mishandled,
replayed in-process: each must get the documented 4xx, never a 500 or a hang.

Each answer is also checked against the OpenAPI document: its status must be one the
operation lists.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from telepty.api.openapi import build_document
from telepty.config import Config
from telepty.daemon import create_app
from telepty.pty.spawned import _check_exec_args

DOC = build_document()


def _documented(method: str, path: str) -> set[str]:
    """The statuses the document lists for the operation serving ``path``."""
    for template, item in DOC["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path.split("?")[0]) and method.lower() in item:
            return set(item[method.lower()]["responses"])
    raise AssertionError(f"{method} {path} is not documented")


CASES: list[tuple[str, str, Any, int, str]] = [
    # keys: a name that is a newline tripped an assert in the key-name parser (500)
    ("POST", "/api/sessions/s1/keys", {"keys": ["\n"]}, 400, "invalid_keys"),
    ("POST", "/api/sessions/s1/keys", {"keys": ["a\n"]}, 400, "invalid_keys"),
    # injects: instants outside what a datetime holds (500)
    ("GET", "/api/injects?since=1e300", None, 400, "invalid_query"),
    ("GET", "/api/injects?since=99999999999999w", None, 400, "invalid_query"),
    ("GET", "/api/injects?until=0001-01-01T00:00:00%2B14:00", None, 400, "invalid_query"),
    ("GET", "/api/injects?since=9999-12-31T23:59:59-14:00", None, 400, "invalid_query"),
    ("GET", "/api/injects?since=%D9%A3h", None, 400, "invalid_query"),  # an Arabic-Indic digit
    # bus: a seq past SQLite's INTEGER (500)
    ("GET", "/api/bus/events?since=9223372036854775808", None, 400, "invalid_query"),
    # register / handoffs: integers past SQLite's INTEGER (500)
    ("POST", "/api/sessions/register", {"pid": 18446744073709551615}, 400, "invalid_field"),
    ("POST", "/api/handoffs", {"task_count": 18446744073709551615}, 400, "invalid_field"),
    # ids with a trailing newline passed the "$"-anchored patterns
    ("POST", "/api/sessions/register", {"session_id": "s2\n"}, 400, "invalid_session_id"),
    ("POST", "/api/sessions/register", {"type": "pane", "tmux_pane": "%3\n"}, 400, "invalid_field"),
    ("POST", "/api/handoffs", {"task_count": 0, "handoff_id": "h1\n"}, 400, "invalid_field"),
    ("POST", "/api/bus/publish", {"kind": "note\n"}, 400, "invalid_kind"),
    ("POST", "/api/bus/publish", {"kind": "note", "message_id": "m1\n"}, 400, "invalid_field"),
    ("POST", "/api/bus/publish", {"kind": "turn_request", "target": "s1@host\n", "payload": {"prompt": "x"}},
     400, "invalid_target"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), CASES)
async def test_fuzz_finding_is_a_documented_4xx(
    aiohttp_client: Any, config: Config, method: str, path: str, body: Any, status: int, code: str
) -> None:
    client = await aiohttp_client(create_app(config))
    resp = await client.request(method, path, json=body)
    answer = await resp.json()
    assert (resp.status, answer.get("error")) == (status, code), answer
    assert str(resp.status) in _documented(method, path)


@pytest.mark.parametrize(("argv", "env"), [
    (["/bin/true", "a\x00b"], {}),  # NUL in an argument
    (["/bin/tr\x00ue"], {}),  # NUL in the program
    (["/bin/true", "\ud800"], {}),  # a lone surrogate: not encodable
    (["/bin/true"], {"A=B": "x"}),  # '=' in a variable name
    (["/bin/true"], {"": "x"}),  # an empty variable name
    (["/bin/true"], {"A": "x\x00"}),  # NUL in a value
])
def test_spawn_refuses_what_execve_would_raise_on(argv: list[str], env: dict[str, str]) -> None:
    # These made execve raise ValueError in the forked child, which ptyprocess does not
    # report: the child (a copy of the daemon) lived on and the spawn request hung.
    with pytest.raises(ValueError):
        _check_exec_args(argv, env)


def test_spawn_still_takes_ordinary_arguments() -> None:
    _check_exec_args(["/bin/echo", "", "é", "a b"], {"PATH": "/bin", "LANG": "C.UTF-8", "X": ""})
