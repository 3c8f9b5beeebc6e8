#!/usr/bin/env bash
# bcm's chunk store on the storage nodes' disks against the same in Garage (an
# S3 object store), on the same data set, in one run on this machine.
#
#   bench/s3-vs-local.sh                   # 1.4 GB, Garage on 3 nodes (rf 3)
#   SIZE_MB=300 GARAGE_NODES=1 bench/s3-vs-local.sh   # quicker; one Garage node
#
# Builds bcm (release), installs a release build of Garage 2.5.0 into
# target/bench-tools when GARAGE_BIN is not given (cargo install, about 12
# minutes once), and prints one table with the garage/local ratio. Writes
# target/bench/s3-results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${GARAGE_BIN:-}" ] && [ ! -x target/bench-tools/bin/garage ]; then
  cargo install --locked garage --version 2.5.0 --no-default-features \
    --features bundled-libs,lmdb --root target/bench-tools
fi
cargo build --release --bin bcm
exec python3 bench/s3_vs_local.py "$@"
