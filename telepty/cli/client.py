"""The CLI's way to the daemon of its home: small synchronous HTTP, token always attached.

Synchronous urllib on purpose: a CLI call is one request, and importing aiohttp
would double the start-up time of every ``telepty list``.

Which daemon: the one ``$TELEPTY_HOME/daemon.json`` names (written by that home's
daemon, removed when it stops), or ``TELEPTY_URL`` when set. Never a guessed
address: a CLI whose home has no running daemon says so (exit 3) instead of talking
to whatever listens on the default port, which may be another home's daemon. And
before the first request the daemon must show, in ``GET /api/meta``, the id of this
home (``telepty.home_id``): a stale ``daemon.json`` whose port another daemon has
taken since, or a ``TELEPTY_URL`` pointing at another home's daemon, is refused.
A daemon that is not this implementation at all (the Node.js telepty: no home in its
meta) is named as such, and only the commands that can work there go on
(``telepty.cli.node_daemon``).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telepty.cli.node_daemon import ForeignDaemon, identify, node_error
from telepty.cli.wording import CLI_WORDS, Vocabulary
from telepty.config import Config
from telepty.home_id import read_home_id
from telepty.runtime_file import read_runtime
from telepty.session_token import SESSION_TOKEN_HEADER
from telepty.sessions.liveness import pid_alive
from telepty.token_file import TOKEN_HEADER, read_token

if TYPE_CHECKING:
    import urllib.error

EXIT_FAILED = 1  # the command ran and failed (a delivery failed, the daemon refused)
EXIT_USAGE = 2  # bad arguments or configuration: nothing was sent
EXIT_NO_DAEMON = 3  # this home's daemon is not reachable (or another home's answered)
EXIT_PENDING = 4  # --wait ran out while the delivery is still pending (it goes on)
EXIT_INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    """A failure the CLI prints as one line and turns into a non-zero exit."""

    def __init__(
        self, message: str, code: str = "error", exit_code: int = EXIT_FAILED, body: Any = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code
        self.body = body  # the daemon's JSON answer, when there was one
        self.hint = hint  # what to do about it, said once
        self.status: int | None = None  # the HTTP status, when the daemon answered one

    def line(self) -> str:
        """The one line a person reads: what happened, and what to do about it."""
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "hint": self.hint, "exit": self.exit_code}


class NoDaemon(CliError, ConnectionError):
    """This home's daemon cannot be reached. A ConnectionError too, so code that retries
    on connection failures (the wrapper's link) retries on this as well."""

    def __init__(self, message: str, code: str, hint: str) -> None:
        CliError.__init__(self, message, code=code, exit_code=EXIT_NO_DAEMON, hint=hint)


START_HINT = "start it with `telepty daemon`"


class DaemonNotRunning(NoDaemon):
    def __init__(self, home: Path) -> None:
        super().__init__(
            f"no telepty daemon is running for TELEPTY_HOME={home}", "daemon_not_running",
            f"{START_HINT}, or point TELEPTY_HOME at the home of the daemon you mean",
        )


class DaemonDown(NoDaemon):
    def __init__(self, url: str) -> None:
        super().__init__(f"telepty daemon is not running at {url}", "daemon_unreachable", START_HINT)


class WrongDaemon(NoDaemon):
    """A daemon answered, but it serves another home."""

    def __init__(self, url: str, config: Config, theirs: str | None) -> None:
        where = f"TELEPTY_HOME={theirs}" if theirs else "another home"
        hint = "start this home's daemon with `telepty daemon`"
        if config.url:
            hint += ", or unset TELEPTY_URL (it points there)"
        hint += f", or set TELEPTY_HOME={theirs} to use that daemon" if theirs else ""
        super().__init__(
            f"the daemon at {url} serves {where}, not this CLI's TELEPTY_HOME={config.home}",
            "wrong_daemon", hint,
        )


class ForeignDaemonError(NoDaemon):
    """A daemon answered that is not this implementation, for a command that needs ours."""

    def __init__(self, foreign: ForeignDaemon, config: Config) -> None:
        hint = "start this home's daemon with `telepty daemon` for everything else"
        if config.url:
            hint += " (and unset TELEPTY_URL, which points there)"
        super().__init__(foreign.refusal(), "foreign_daemon", hint)


def daemon_url(config: Config) -> str:
    """TELEPTY_URL, else where this home's running daemon says it listens.

    Raises DaemonNotRunning when neither exists: there is no default address to fall
    back on, because whatever answers there is not known to be this home's daemon.
    """
    if config.url:
        return config.url.rstrip("/")
    address = read_runtime(config.runtime_path)
    if address is not None and pid_alive(address.pid):
        return address.url
    raise DaemonNotRunning(config.home)


def daemon_endpoint(config: Config) -> tuple[str, str | None]:
    """(base http url, token) for a long-lived client (``telepty wrap``, ``attach``): re-read
    on every attempt, as a restarted daemon may listen elsewhere and the token file may
    have appeared since."""
    return daemon_url(config), read_token(config.token_path)


def serves_home(meta: Any, config: Config) -> bool:
    """Whether ``GET /api/meta``'s answer comes from the daemon of ``config``'s home."""
    if not isinstance(meta, dict):
        return False
    theirs = meta.get("home_id")
    if isinstance(theirs, str) and theirs:
        return theirs == read_home_id(config.home)
    # A daemon from before home ids: its home's path must be ours.
    home = meta.get("home")
    return isinstance(home, str) and _same_path(Path(home), config.home)


def _same_path(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


@dataclass
class Client:
    config: Config
    timeout: float = 10.0
    words: Vocabulary = CLI_WORDS  # how the daemon's errors are put to this client's user
    # The command can also work against a daemon that is not this implementation (the
    # Node.js telepty); it then reads ``foreign`` and speaks that daemon's shapes.
    foreign_ok: bool = False
    foreign: ForeignDaemon | None = field(default=None, init=False, repr=False)
    _base: str | None = field(default=None, init=False, repr=False)
    _meta: dict[str, Any] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The verified address of this home's daemon (found and checked on first use)."""
        if self._base is None:
            self._connect()
        assert self._base is not None
        return self._base

    @property
    def meta(self) -> dict[str, Any]:
        """The daemon's ``GET /api/meta``, as it answered when it was verified."""
        if self._meta is None:
            self._connect()
        assert self._meta is not None
        return self._meta

    @property
    def token(self) -> str | None:
        return read_token(self.config.token_path)

    def forget(self) -> None:
        """Find and verify the daemon again on the next request (it may have restarted)."""
        self._base = self._meta = None

    def _connect(self) -> None:
        base = daemon_url(self.config)
        try:
            meta = self._send(base, "GET", "/api/meta", None, timeout=self.timeout)
        except CliError as exc:
            if isinstance(exc, NoDaemon):
                raise
            if exc.status == 404:  # no /api/meta: an older Node.js daemon has only health
                health = self._health(base)
                foreign = identify(base, None, health)
                if foreign is not None:
                    self._accept_foreign(base, foreign, health)
                    return
            if exc.status != 401:
                raise
            # Our token was refused: whoever answers is not this home's daemon.
            raise WrongDaemon(base, self.config, None) from None
        foreign = identify(base, meta)
        if foreign is not None:
            self._accept_foreign(base, foreign, meta)
            return
        if not serves_home(meta, self.config):
            theirs = meta.get("home") if isinstance(meta, dict) else None
            raise WrongDaemon(base, self.config, theirs if isinstance(theirs, str) else None)
        self._base, self._meta = base, meta

    def _health(self, base: str) -> Any:
        try:
            return self._send(base, "GET", "/api/health", None, timeout=self.timeout)
        except CliError:
            return None

    def _accept_foreign(self, base: str, foreign: ForeignDaemon, meta: Any) -> None:
        if not self.foreign_ok:
            raise ForeignDaemonError(foreign, self.config)
        self._base, self._meta, self.foreign = base, dict(meta), foreign

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
        if query:
            clean = {k: v for k, v in query.items() if v is not None}
            if clean:
                path += "?" + urllib.parse.urlencode(clean)
        try:
            return self._send(base, method, path, body, timeout=timeout or self.timeout, headers=headers)
        except NoDaemon:
            self.forget()  # a long-lived client (bus tail, mcp) finds a restarted daemon next time
            raise

    def _send(self, base: str, method: str, path: str, body: Any, *, timeout: float,
              headers: dict[str, str] | None = None) -> Any:
        # Loaded with the first request (http.client, email, ssl: a third of the CLI's
        # start-up), so `--help`, completion and usage errors never pay for it.
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        token = self.token
        if token:
            req.add_header(TOKEN_HEADER, token)
        if self.config.session_token:
            # Inside a wrapped/spawned session: prove which session is asking.
            req.add_header(SESSION_TOKEN_HEADER, self.config.session_token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError | OSError) and "timed out" in str(reason):
                raise CliError(f"daemon at {base} did not answer in time", "timeout") from None
            raise DaemonDown(base) from None
        return json.loads(raw) if raw else None

    def _http_error(self, exc: urllib.error.HTTPError) -> CliError:
        raw = exc.read()
        try:
            err = json.loads(raw)
        except ValueError:
            err = None
        if not isinstance(err, dict):
            text = raw.decode(errors="replace")[:200]
            if self.foreign is not None:  # its unknown routes answer an HTML page
                text = f"{self.foreign.name} cannot do this (HTTP {exc.code})"
            err = {"error": f"http_{exc.code}", "detail": text}
        elif self.foreign is not None:
            err = node_error(err)
        code = str(err.get("error") or f"http_{exc.code}")
        detail = self.words.detail(str(err.get("detail") or ""))
        message = f"{code}: {detail}" if detail else code
        error = CliError(message, code=code, body=err, hint=self.words.hint(code, detail))
        error.status = exc.code
        return error
