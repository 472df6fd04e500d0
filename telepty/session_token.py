"""A session's own secret: made by whoever starts the agent, proven by the agent's CLI.

``telepty wrap`` makes the token before its child exists and puts it in the child's
environment; the daemon does the same for the sessions it spawns. Only the sha256 ever
reaches the daemon's memory and database (:mod:`telepty.sessions.identity` keeps and
checks them). Its own module because both ends use it and the wrapper must not import
the daemon's session registry to make a random string.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

__all__ = ["SESSION_ID_ENV", "SESSION_TOKEN_ENV", "SESSION_TOKEN_HEADER", "TOKEN_PREFIX", "is_token_hash",
           "new_session_token", "token_sha256"]

SESSION_TOKEN_HEADER: Final = "x-telepty-session-token"  # how a CLI inside the session presents it
SESSION_TOKEN_ENV: Final = "TELEPTY_SESSION_TOKEN"
SESSION_ID_ENV: Final = "TELEPTY_SESSION_ID"
# A prefix makes a leaked token recognisable (secret scanners, a person reading a log).
TOKEN_PREFIX: Final = "tpst_"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def new_session_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_token_hash(value: object) -> bool:
    return isinstance(value, str) and bool(_SHA256_RE.match(value))
