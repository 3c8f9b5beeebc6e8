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

# Debian packages the suites need are installed here when they are missing (as
# root, which CI is; elsewhere the missing package is named and the run stops).
apt_updated=false
need_package() { # need_package <probe-command> <package>...
  if ! eval "$1" >/dev/null 2>&1; then
    shift
    if [ "$(id -u)" != 0 ]; then
      echo "missing: $* (install it: apt-get install $*)" >&2
      exit 1
    fi
    echo "== installing $*"
    if [ "$apt_updated" = false ]; then
      apt-get update -qq
      apt_updated=true
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}
# The Postgres tests start their own server from these binaries.
need_package "ls /usr/lib/postgresql/*/bin/initdb" postgresql
# ... and the TLS test makes its certificates with openssl.
need_package "command -v openssl" openssl

# The compose test runs where a Docker engine answers; it builds its images from
# local parts, the first time with debootstrap (scripts/local-images.sh).
run_compose=false
if [ $# -eq 0 ] || [[ "$*" == *compose* ]]; then
  if docker info >/dev/null 2>&1; then
    run_compose=true
    need_package "command -v debootstrap" debootstrap
  fi
fi
# The web UI tests (e2e::ui) drive Debian's Chromium through chromedriver.
need_package "command -v chromedriver && command -v chromium" chromium chromium-driver

# The chaos tests cut links between nodes with iptables (as root; elsewhere
# they skip, saying so).
if [ "$(id -u)" = 0 ]; then
  need_package "command -v iptables" iptables
fi

# The object-store tests (e2e::s3) run a real Garage cluster. No Debian package
# has it: built from crates.io once (a debug build, about 4 minutes on two
# cores; the tests need no speed from it) into ~/.cargo/bin.
if [ $# -eq 0 ] || [[ "$*" == *s3* ]]; then
  if ! command -v garage >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/garage" ] \
    && [ -z "${BCM_GARAGE_BIN:-}" ]; then
    echo "== installing garage 2.5.0 (cargo install, debug build)"
    cargo install --locked --debug garage --version 2.5.0 \
      --no-default-features --features bundled-libs,lmdb
  fi
fi

# The OpenAPI fuzz test (e2e::schemathesis) runs schemathesis from PyPI, in a
# virtualenv of its own made once and kept (pinned: a new release finds new
# things, which should be a change of its own). Outside CI a failed install
# only makes that test skip, saying so.
if [ $# -eq 0 ] || [[ "$*" == *schemathesis* ]]; then
  venv="${BCM_VENV:-$HOME/.cache/bcm-venv}"
  schemathesis_version=4.32.5
  if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$schemathesis_version"; then
    need_package "command -v python3 && python3 -c 'import venv, ensurepip'" python3-venv
    echo "== installing schemathesis $schemathesis_version (PyPI) into $venv"
    if ! { python3 -m venv "$venv" \
      && "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$schemathesis_version"; }; then
      [ "${CI:-}" = "true" ] && exit 1
      echo "schemathesis could not be installed: e2e::schemathesis will skip"
    fi
  fi
  export BCM_SCHEMATHESIS="$venv/bin/schemathesis"
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

echo "== chaos: two minutes of every fault, and the checker tested (root: iptables)"
cargo test -p bcm-tests --test chaos -- --test-threads=1 "$@" 2>&1 | tee -a "$log"

echo "== docker compose stack (docker-compose.yml in containers, the failover demo's cluster)"
if [ "$run_compose" = true ]; then
  cargo test -p bcm-tests --test compose -- --test-threads=1 "$@" 2>&1 | tee -a "$log"
elif [ $# -gt 0 ] && [[ "$*" != *compose* ]]; then
  echo "skipped: only the end-to-end tests matching '$*' were asked for"
else
  echo "skipped: no Docker engine answers here (docker info failed)"
fi

# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
