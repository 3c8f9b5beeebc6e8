#!/usr/bin/env python3
"""A/B of bcm builds on one machine: the same 3-member cluster layout and load as
bench/vs_etcd.py (whose functions it uses), builds alternating round by round so
that the machine's drift falls on all of them alike.

    bench/ab.py main=/path/to/bcm branch=target/release/bcm

Environment: ROUNDS (default 3), DURATION (seconds per point, default 10), CLIENTS
(default "1 64"; one client writes through the leader, more are spread over the
members). Prints each round's (ops/s, p50 ms, p99 ms) per build and client count,
then all of it as JSON.
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_etcd as v  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = float(os.environ.get("DURATION", "10"))
CLIENTS = [int(c) for c in os.environ.get("CLIENTS", "1 64").split()]


def main():
    builds = [a.split("=", 1) for a in sys.argv[1:]]
    if not builds or any(len(b) != 2 for b in builds):
        sys.exit("usage: bench/ab.py NAME=BCM_BINARY [NAME=BCM_BINARY ...]")
    results = {name: [] for name, _ in builds}
    for r in range(ROUNDS):
        for name, binary in builds:
            v.BCM = binary
            work = tempfile.mkdtemp(prefix="bcm-ab-", dir=os.environ.get("BENCH_DIR"))
            c = v.Bcm(work)
            try:
                v.start_all(c)
                leader = c.leader()
                row = {}
                for n in CLIENTS:
                    servers = [c.api[leader]] if n == 1 else None
                    o = v.bench(c, "put", n, DURATION, servers=servers)
                    row[n] = (round(o["throughput"]), o["p50_ms"], o["p99_ms"])
                results[name].append(row)
                print(f"round {r + 1} {name}: {row}", flush=True)
            finally:
                v.stop_all(c)
                shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
