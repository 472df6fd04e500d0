#!/usr/bin/env bash
# Shared by scripts/run and scripts/test: make whatever is missing, quietly, idempotently.
# Sourced, not executed; leaves $VENV pointing at the project's virtualenv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
EXTRA="${1:-}"

# tmux is what telepty drives; curl is what the README's tutorial (and its test) use.
# The tests also run the NATS bus against a real nats-server (Debian puts it in /usr/sbin);
# running the daemon never needs it.
MISSING=""
for tool in tmux curl; do
  command -v "$tool" >/dev/null 2>&1 || MISSING="$MISSING $tool"
done
if [ "$EXTRA" = "test" ] && ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  MISSING="$MISSING nats-server"
fi
if [ -n "$MISSING" ]; then
  echo "setup: installing$MISSING with apt-get" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  # shellcheck disable=SC2086  # one word per package
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi

# Reinstall only when pyproject.toml changed since the last install.
STAMP="$VENV/.telepty-installed${EXTRA:+-$EXTRA}"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  echo "setup: installing telepty${EXTRA:+[$EXTRA]} into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT${EXTRA:+[$EXTRA]}"
  touch "$STAMP"
fi
