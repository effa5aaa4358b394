#!/usr/bin/env bash
# Prepares a fresh Debian machine with Node 20 for the demo and the tests: checks Node,
# installs nats-server when it is missing (through apt-get when run as root, otherwise it
# says how), and installs the npm dependencies from the lock file. With --tests it also
# installs Debian's chromium, which the inspector's browser test drives headless.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

for_tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) for_tests=1 ;;
    *) say "unknown argument: $arg (use --tests to also prepare the tests)"; exit 2 ;;
  esac
done

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  say "Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))."
  exit 1
fi

find_nats_server() {
  if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then echo "$NATS_SERVER_BIN"; return; fi
  if command -v nats-server >/dev/null 2>&1; then command -v nats-server; return; fi
  if [ -x /usr/sbin/nats-server ]; then echo /usr/sbin/nats-server; return; fi
}

bin=$(find_nats_server || true)
if [ -z "$bin" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "nats-server is missing; installing Debian's nats-server package"
    apt_install nats-server
    bin=$(find_nats_server || true)
  fi
  if [ -z "$bin" ]; then
    say "nats-server is missing. Install it with:"
    say "    sudo apt-get install -y nats-server"
    say "or download it from the NATS project and set NATS_SERVER_BIN=/path/to/nats-server."
    exit 1
  fi
fi
say "using $("$bin" --version 2>&1 | head -n 1) at $bin"

if [ "$for_tests" -eq 1 ]; then
  chromium_bin=${CHROMIUM_BIN:-/usr/bin/chromium}
  if [ ! -x "$chromium_bin" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "chromium is missing (the inspector's browser test needs it); installing Debian's chromium package"
      apt_install chromium
    fi
    if [ ! -x "$chromium_bin" ]; then
      say "chromium is missing; the inspector's browser test needs it. Install it with:"
      say "    sudo apt-get install -y chromium"
      say "or set CHROMIUM_BIN=/path/to/chromium."
      exit 1
    fi
  fi
  say "using $("$chromium_bin" --version 2>/dev/null | head -n 1) at $chromium_bin"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
