#!/usr/bin/env bash
# bcm against restic, side by side, in one run on this machine.
#
#   bench/vs-restic.sh              # the full run: a 1.4 GB tree (a few minutes)
#   SIZE_MB=300 bench/vs-restic.sh  # a quicker one
#
# Builds bcm (release), installs restic from Debian when it is missing, writes a
# seeded tree (kept for the next run), backs it up twice and restores it with
# both, checks both restores byte for byte, and prints one table with each figure
# and the bcm/restic ratio. Writes target/bench/restic-results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v restic >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic
  else
    echo "restic is not installed: sudo apt-get install restic" >&2
    exit 1
  fi
fi
cargo build --release --bin bcm
exec python3 bench/vs_restic.py "$@"
