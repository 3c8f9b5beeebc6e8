#!/usr/bin/env bash
# bcm against etcd 3.4, side by side, in one run on this machine.
#
#   bench/vs-etcd.sh                  # the full run (about 7 minutes)
#   DURATION=3 FAILOVERS=2 bench/vs-etcd.sh   # a quicker one
#
# Builds bcm (release), installs etcd from Debian when it is missing, starts a
# 3-node bcm cluster and a 3-node etcd cluster on loopback (both fsync every write,
# both with their shipped timing), drives both with `bcm bench`, and prints one
# table with each figure and the bcm/etcd ratio. Writes target/bench/results.json
# and target/bench/latency.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcd >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client
  else
    echo "etcd is not installed: sudo apt-get install etcd-server etcd-client" >&2
    exit 1
  fi
fi
cargo build --release --bin bcm
exec python3 bench/vs_etcd.py "$@"
