#!/usr/bin/env python3
"""Runs a probed build (probes.patch) and prints where one write's time goes.

    BCM_BIN=/path/to/probed/bcm python3 bench/probes/run.py [NAME=ENV ...]

Each NAME=ENV is a variant: the environment assignment ENV (VAR=VALUE, or empty)
given to the nodes, e.g. `thread= inline=BCM_EXPERIMENT_INLINE_SYNC=1`. Variants
alternate round by round (ROUNDS, default 3), each on a fresh 3-member cluster
(bench/vs_etcd.py's set-up) with one client writing through the leader for
DURATION seconds (default 8). Prints the client's p50/p99 and the handler's total
per round, then the last round's breakdown of each variant.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import vs_etcd as v  # noqa: E402

DURATION = float(os.environ.get("DURATION", "8"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def one(env):
    saved = dict(os.environ)
    pdir = tempfile.mkdtemp(prefix="bcm-probes-")
    os.environ["BCM_PROBE_DIR"] = pdir
    if env:
        key, value = env.split("=", 1)
        os.environ[key] = value
    work = tempfile.mkdtemp(prefix="bcm-probed-")
    c = v.Bcm(work)
    try:
        v.start_all(c)
        leader = c.leader()
        o = v.bench(c, "put", 1, DURATION, servers=[c.api[leader]])
        time.sleep(0.6)  # the probes' writer thread flushes every 200 ms
    finally:
        v.stop_all(c)
        shutil.rmtree(work, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved)
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "breakdown.py"), pdir],
        capture_output=True, text=True,
    ).stdout
    shutil.rmtree(pdir, ignore_errors=True)
    return o, out


def main():
    variants = [a.split("=", 1) for a in sys.argv[1:]] or [["probed", ""]]
    last = {}
    for r in range(ROUNDS):
        for name, env in variants:
            o, out = one(env)
            total = next((l.split()[-2:] for l in out.splitlines() if "in all" in l), None)
            print(f"round {r + 1} {name}: client p50 {o['p50_ms']:.3f} ms, p99 {o['p99_ms']:.3f} ms, "
                  f"{o['throughput']:.0f}/s; handler mean/p50 us {total}", flush=True)
            last[name] = out
    for name, out in last.items():
        print(f"\n== {name} (last round)\n{out}")


if __name__ == "__main__":
    main()
