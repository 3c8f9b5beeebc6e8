#!/usr/bin/env python3
"""CPU per write: how many microseconds of CPU each member of a bcm cluster (the
leader and the followers, thread by thread) and the load generator spend per
client write, read from /proc before and after a `bcm bench` put run. On a
CPU-bound machine this says where throughput goes, which a profile's shares
alone do not.

    cargo build --release --bin bcm && python3 bench/cpu.py
    CLIENTS=64 DURATION=10 LEADER_ONLY=1 python3 bench/cpu.py

Environment: CLIENTS (default 64), DURATION (seconds, default 10), LEADER_ONLY
(1: every client writes through the leader, so nothing is forwarded), BCM_BIN,
BASE_PORT and BENCH_DIR as for bench/vs_etcd.py, whose cluster set-up it uses.
Threads are grouped by name with their digits dropped (tokio's workers are
"tokio-runtime-worker", the Raft runtime's thread "bcm-raft", ...).
"""

import os
import re
import resource
import shutil
import sys
import tempfile
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_etcd as v  # noqa: E402

CLIENTS = int(os.environ.get("CLIENTS", "64"))
DURATION = float(os.environ.get("DURATION", "10"))
LEADER_ONLY = os.environ.get("LEADER_ONLY") == "1"
TICK = os.sysconf("SC_CLK_TCK")


def threads(pid):
    """CPU seconds (user + system) of each thread of `pid`, by thread name."""
    out = defaultdict(float)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[re.sub(r"[0-9]+$", "", name)] += (int(fields[11]) + int(fields[12])) / TICK
    return out


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    work = tempfile.mkdtemp(prefix="bcm-cpu-", dir=os.environ.get("BENCH_DIR"))
    c = v.Bcm(work)
    try:
        v.start_all(c)
        leader = c.leader()
        pids = [p.pid for p in c.procs]
        before = [threads(p) for p in pids]
        gen_before = children_cpu()
        servers = [c.api[leader]] if LEADER_ONLY else None
        o = v.bench(c, "put", CLIENTS, DURATION, servers=servers)
        gen = children_cpu() - gen_before
        after = [threads(p) for p in pids]
        writes = o["throughput"] * DURATION
        print(f"{CLIENTS} clients{' on the leader' if LEADER_ONLY else ''}: "
              f"{o['throughput']:.0f} put/s, p50 {o['p50_ms']} ms, p99 {o['p99_ms']} ms")
        print(f"{'who':<34}{'µs per write':>14}")
        total = gen
        print(f"{'load generator (bcm bench)':<34}{gen / writes * 1e6:>14.1f}")
        for i, pid in enumerate(pids):
            role = "leader" if i == leader else "follower"
            spent = {k: after[i].get(k, 0) - before[i].get(k, 0) for k in after[i]}
            node = sum(spent.values())
            total += node
            print(f"{f'node {i + 1} ({role})':<34}{node / writes * 1e6:>14.1f}")
            for name, s in sorted(spent.items(), key=lambda kv: -kv[1]):
                if s / writes * 1e6 >= 1:
                    print(f"{'  ' + name:<34}{s / writes * 1e6:>14.1f}")
        print(f"{'in all':<34}{total / writes * 1e6:>14.1f}")
        cores = os.cpu_count()
        print(f"at {cores} cores that allows at most {cores / (total / writes):.0f} put/s")
    finally:
        v.stop_all(c)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
