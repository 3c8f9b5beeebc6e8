#!/usr/bin/env bash
# The one test command: sets up what the tests need, builds bcm, runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh e2e::wipe  # only end-to-end tests whose name matches
#
# With CI=true it also checks formatting and clippy first.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Suites that need Debian packages install them here when they are missing.
# The web UI tests (e2e::ui) drive Debian's Chromium through chromedriver.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "== installing chromium and chromium-driver (for the web UI tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "the web UI tests need chromium and chromium-driver: sudo apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi

if [ "${CI:-}" = "true" ]; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
fi

echo "== build"
cargo build --workspace --all-targets

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== unit, property and storage conformance tests"
cargo test --workspace --exclude bcm-tests 2>&1 | tee -a "$log"

echo "== end-to-end tests (real bcm processes on loopback)"
# One at a time: each test runs a whole cluster on a 2-core machine.
cargo test -p bcm-tests --lib --test e2e -- --test-threads=1 "$@" 2>&1 | tee -a "$log"

# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
