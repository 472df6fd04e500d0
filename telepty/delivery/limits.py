"""The numbers a prompt's options are held to, for the daemon and its clients alike.

Kept apart from the request models (``telepty.delivery.request``) so a client that only
needs a limit (the CLI checking ``--quiet-ms`` before it asks) does not load them.
"""

from __future__ import annotations

MAX_QUIET_MS = 600_000
DEFAULT_WAIT_TIMEOUT = 60.0
MAX_WAIT_TIMEOUT = 3600.0
MAX_IDEMPOTENCY_KEY = 200
