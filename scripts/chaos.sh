#!/usr/bin/env bash
# A nemesis run of any length against real bcm processes on loopback:
#
#   scripts/chaos.sh --duration 600 --seed 7        # ten minutes, seed 7
#   scripts/chaos.sh --duration 60 --faults partition,kill --local-reads
#
# Kills, pauses, wipes and partitions nodes (iptables rules on loopback
# addresses of their own: root) while clients read, write and compare-and-set
# config keys through random nodes; then checks the history for
# linearizability, no acknowledged write lost, and every node at one state.
# Its last line: `chaos: ops=N violations=V lost=L faults=kill:a,...`; exit 0
# only when nothing was violated. On a violation the history, a window around
# each violation and every node's log are kept; it says where.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "chaos.sh needs root (the partitions are iptables rules)" >&2
  exit 1
fi
cargo build --quiet --bin bcm --bin bcm-chaos
exec target/debug/bcm-chaos "$@"
