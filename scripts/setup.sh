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

# Test mode: the real agent CLIs the real-agent tests run, at the versions pinned in
# scripts/agent-versions.txt, in .cache/agents (ignored by git). Reinstalled only when
# the pins change. Node.js 20+ and npm come from apt-get when missing.
if [ "$EXTRA" = "test" ]; then
  AGENTS_DIR="${TELEPTY_AGENTS_DIR:-$ROOT/.cache/agents}"
  PINS="$(grep -v '^[[:space:]]*#' "$ROOT/scripts/agent-versions.txt" | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//')"
  if [ "$(cat "$AGENTS_DIR/.pins" 2>/dev/null)" != "$PINS" ]; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
      echo "setup: installing nodejs and npm with apt-get" >&2
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
    fi
    NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$NODE_MAJOR" -lt 20 ]; then
      echo "setup: the agent CLIs need Node.js 20 or newer; this machine has $(node --version)." >&2
      echo "setup: install a newer one (https://nodejs.org, or NodeSource's apt repository) and rerun." >&2
      exit 1
    fi
    echo "setup: installing $PINS into $AGENTS_DIR" >&2
    mkdir -p "$AGENTS_DIR"
    # shellcheck disable=SC2086  # one word per package
    npm install --no-audit --no-fund --loglevel=error --prefix "$AGENTS_DIR" $PINS >/dev/null
    echo "$PINS" > "$AGENTS_DIR/.pins"
  fi
fi
