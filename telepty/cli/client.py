"""The CLI's way to the daemon: small synchronous HTTP, token always attached.

Synchronous urllib on purpose: a CLI call is one request, and importing aiohttp
would double the start-up time of every ``telepty list``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from telepty.api.auth import read_token
from telepty.config import Config
from telepty.daemon import read_runtime
from telepty.sessions.liveness import pid_alive


class CliError(Exception):
    """A failure the CLI prints as one line and turns into a non-zero exit."""

    def __init__(
        self, message: str, code: str = "error", exit_code: int = 1, body: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code
        self.body = body  # the daemon's JSON answer, when there was one


class DaemonDown(CliError):
    def __init__(self, url: str) -> None:
        super().__init__(
            f"telepty daemon is not running at {url} (start it with `telepty daemon`)",
            code="daemon_unreachable",
            exit_code=3,
        )


def daemon_url(config: Config) -> str:
    """TELEPTY_URL, else where our home's daemon says it listens, else the defaults."""
    if config.url:
        return config.url.rstrip("/")
    info = read_runtime(config)
    if info and isinstance(info.get("url"), str) and pid_alive(info.get("pid")):
        return str(info["url"])
    return config.base_url


@dataclass
class Client:
    config: Config
    timeout: float = 10.0

    @property
    def url(self) -> str:
        return daemon_url(self.config)

    @property
    def token(self) -> str | None:
        return read_token(self.config.token_path)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        base = self.url
        url = base + path
        if query:
            clean = {k: v for k, v in query.items() if v is not None}
            if clean:
                url += "?" + urllib.parse.urlencode(clean)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        token = self.token
        if token:
            req.add_header("x-telepty-token", token)
        if self.config.session_token:
            # Inside a wrapped/spawned session: prove which session is asking (SPEC §6).
            req.add_header("x-telepty-session-token", self.config.session_token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)
            except ValueError:
                err = {"error": f"http_{exc.code}", "detail": raw.decode(errors="replace")[:200]}
            raise CliError(
                f"{err.get('error', 'error')}: {err.get('detail', '')}".rstrip(": "),
                code=str(err.get("error", "error")),
                body=err,
            ) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError | OSError) and "timed out" in str(reason):
                raise CliError(f"daemon at {base} did not answer in time", "timeout") from None
            raise DaemonDown(base) from None
        return json.loads(raw) if raw else None
