#!/usr/bin/env python3
"""How many syncs a write costs each node: strace counts every fsync-family call
of the three members of a bcm cluster while `bcm bench` writes, and the table
gives them per Raft log entry and per client write. The design's rule is one
`fdatasync` per node per entry on the write path (no sled flush, no committed
index sync, no directory sync).

    cargo build --release --bin bcm && python3 bench/fsyncs.py
    DURATION=5 CLIENTS="1 64" python3 bench/fsyncs.py

Environment: DURATION (seconds of writes per point, default 5), CLIENTS (default
"1 64"; one client writes through the leader, more are spread over the members),
BCM_BIN, BASE_PORT and BENCH_DIR as for bench/vs_etcd.py, whose cluster set-up it
uses. Under strace every call is slower, so the rates here are not benchmarks;
the counts are what the run is for. Syncs that are not on the write path are
shown apart: sled's background flusher (its thread is named by the kernel as
the process's, so it is told apart by the file it syncs, sled's `db`/`conf`
files or blobs) and a snapshot, if one was taken in the window.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_etcd as v  # noqa: E402

DURATION = float(os.environ.get("DURATION", "5"))
CLIENTS = [int(c) for c in os.environ.get("CLIENTS", "1 64").split()]
SYNCS = "fsync,fdatasync,sync_file_range,syncfs,msync,sync"


def metrics(url):
    """The node's /metrics as {name: value} (gauges and counters without labels)."""
    out = {}
    with urllib.request.urlopen(url + "/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.split()[:2]
                out[name] = float(value)
    return out


def fd_targets(pid):
    """{fd: path} of the process's open files, read when the run ends (the log
    segment, sled's files and the snapshot stay open while a node runs)."""
    out = {}
    d = f"/proc/{pid}/fd"
    for fd in os.listdir(d):
        try:
            out[int(fd)] = os.readlink(os.path.join(d, fd))
        except OSError:
            pass
    return out


def count(trace_path, files):
    """{(syscall, what): calls} from an strace -f log; `what` is the file's kind."""
    counts = {}
    with open(trace_path) as f:
        for line in f:
            m = re.match(r"^(?:\d+\s+)?(\w+)\((\d*)", line.strip())
            if not m or m.group(1) not in SYNCS.split(","):
                continue
            call, fd = m.group(1), m.group(2)
            path = files.get(int(fd), "") if fd else "-"
            if "/wal/" in path:
                what = "raft log (wal/)"
            elif "snapshot" in path:
                what = "snapshot"
            elif path.endswith(("/db", "/conf")) or "/blobs" in path:
                what = "sled"
            elif os.path.isdir(path):
                what = "directory"
            else:
                what = path or "a file closed before the end"
            counts[(call, what)] = counts.get((call, what), 0) + 1
    return counts


def point(c, clients, work):
    leader = c.leader()
    before = [metrics(u) for u in c.api]
    traces = []
    for i, p in enumerate(c.procs):
        path = os.path.join(work, f"strace-{clients}-{i}.txt")
        t = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", f"trace={SYNCS}", "-e", "signal=none",
             "-o", path, "-p", str(p.pid)],
            stderr=subprocess.DEVNULL,
        )
        traces.append((t, path))
    time.sleep(1.0)  # strace attaches to every thread
    servers = [c.api[leader]] if clients == 1 else None
    report = v.bench(c, "put", clients, DURATION, servers=servers)
    time.sleep(0.5)  # the last entries reach every follower
    files = [fd_targets(p.pid) for p in c.procs]
    for t, _ in traces:
        t.send_signal(signal.SIGINT)
    for t, _ in traces:
        t.wait(timeout=10)
    after = [metrics(u) for u in c.api]
    lead_b, lead_a = before[leader], after[leader]
    entries = lead_a["bcm_raft_last_log_index"] - lead_b["bcm_raft_last_log_index"]
    writes = (lead_a.get("bcm_raft_proposed_writes_total", 0)
              - lead_b.get("bcm_raft_proposed_writes_total", 0))
    rows = []
    for i, (_, path) in enumerate(traces):
        counts = count(path, files[i])
        snap = after[i]["bcm_raft_snapshot_index"] != before[i]["bcm_raft_snapshot_index"]
        rows.append({
            "node": i + 1,
            "role": "leader" if i == leader else "follower",
            "counts": {f"{k[0]} {k[1]}": n for k, n in sorted(counts.items())},
            "snapshot_taken": snap,
        })
    return {"clients": clients, "entries": entries, "writes": writes,
            "ops_per_s_under_strace": round(report["throughput"]), "nodes": rows}


def show(r):
    e, w = r["entries"], r["writes"]
    print(f"\n{r['clients']} client(s): {int(e)} log entries, {int(w)} client writes "
          f"({r['ops_per_s_under_strace']} writes/s under strace)")
    print(f"  {'node':<14} {'sync call, file':<34} {'calls':>7} {'per entry':>10} {'per write':>10}")
    for n in r["nodes"]:
        name = f"bcm{n['node']} {n['role']}"
        if not n["counts"]:
            print(f"  {name:<14} {'(none)':<34}")
        for k, calls in n["counts"].items():
            print(f"  {name:<14} {k:<34} {calls:>7} {calls / max(e, 1):>10.3f} "
                  f"{calls / max(w, 1):>10.3f}")
            name = ""
        if n["snapshot_taken"]:
            print(f"  {'':<14} (a snapshot was taken in this window)")


def main():
    if not shutil.which("strace"):
        sys.exit("strace is not installed: apt-get install strace")
    work = tempfile.mkdtemp(prefix="bcm-fsyncs-", dir=os.environ.get("BENCH_DIR"))
    c = v.Bcm(work)
    results = []
    try:
        v.start_all(c)
        for clients in CLIENTS:
            r = point(c, clients, work)
            show(r)
            results.append(r)
    finally:
        v.stop_all(c)
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(v.OUT, exist_ok=True)
    with open(os.path.join(v.OUT, "fsyncs.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
