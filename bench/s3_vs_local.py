#!/usr/bin/env python3
"""bcm's backup and restore with the chunk store on the storage node's disk and in
Garage (an S3 object store), on the same data set, in one run. Started by
bench/s3-vs-local.sh.

The data set is vs_restic.py's (SIZE_MB, SEED, BENCH_DIR the same). Each run
starts three bcm nodes on loopback (node 1 the source and backup manager, nodes 2
and 3 storage), backs the tree up with 1 replica, again unchanged, and restores
it onto node 1, checking the restore byte for byte:

  local   the storage nodes keep their packs on their disk (fsync'd), as shipped;
  garage  they keep them in one Garage bucket they share, Garage running
          GARAGE_NODES processes on loopback (default 3, replication factor 3;
          1 for one copy, as the local store keeps), data and metadata fsync'd,
          its own compression off (GARAGE_COMPRESSION, default none: bcm's packs
          are compressed already).

Garage is the release build at GARAGE_BIN (default target/bench-tools/bin/garage,
which bench/s3-vs-local.sh installs). Prints one table with the garage/local
ratio and writes target/bench/s3-results.json.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_restic as v  # noqa: E402  (the data set, the bcm driver, the timing)

GARAGE = os.environ.get("GARAGE_BIN") or os.path.join(
    v.ROOT, "target", "bench-tools", "bin", "garage")
GARAGE_NODES = int(os.environ.get("GARAGE_NODES", "3"))
# bcm's packs are zstd-compressed already: docs/OPERATIONS.md says to switch
# Garage's own compression off. GARAGE_COMPRESSION=1 measures Garage's default.
GARAGE_COMPRESSION = os.environ.get("GARAGE_COMPRESSION", "none")
KEY_ID = "GK0123456789abcdef01234567"
SECRET = "5ec7e7b0c1a2e3d4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2"
RPC_SECRET = "7f3c1d2e4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"


class Garage:
    def __init__(self, work, n):
        self.work, self.n, self.procs = work, n, []
        base = v.BASE + 40
        self.s3 = [base + 3 * i for i in range(n)]
        self.rpc = [base + 3 * i + 1 for i in range(n)]
        self.configs = []

    def cli(self, i, *args):
        out = subprocess.run([GARAGE, "-c", self.configs[i], *args], capture_output=True,
                             text=True)
        if out.returncode != 0:
            raise RuntimeError(f"garage {' '.join(args)}: {out.stderr[-500:]}")
        return out.stdout

    def retrying(self, i, *args):
        return v.wait(f"garage {' '.join(args)}", lambda: self._try(i, *args), timeout=30,
                      every=0.1)

    def _try(self, i, *args):
        try:
            return self.cli(i, *args) or "ok"
        except RuntimeError:
            return None

    def start(self):
        for i in range(self.n):
            home = os.path.join(self.work, f"garage{i}")
            path = home + ".toml"
            with open(path, "w") as f:
                f.write(
                    f'metadata_dir = "{home}/meta"\ndata_dir = "{home}/data"\n'
                    f'db_engine = "lmdb"\nreplication_factor = {self.n}\n'
                    f'metadata_fsync = true\ndata_fsync = true\n'
                    f'compression_level = "{GARAGE_COMPRESSION}"\n'
                    f'rpc_bind_addr = "127.0.0.1:{self.rpc[i]}"\n'
                    f'rpc_public_addr = "127.0.0.1:{self.rpc[i]}"\n'
                    f'rpc_secret = "{RPC_SECRET}"\n'
                    f'[s3_api]\ns3_region = "garage"\napi_bind_addr = "127.0.0.1:{self.s3[i]}"\n')
            self.configs.append(path)
            log = open(home + ".log", "a")
            self.procs.append(subprocess.Popen([GARAGE, "-c", path, "server"],
                                               stdout=log, stderr=log))
        ids = [self.retrying(i, "node", "id", "-q").strip() for i in range(self.n)]
        for node_id in ids[1:]:
            self.retrying(0, "node", "connect", node_id)
        self.retrying(0, "layout", "assign", "-z", "dc1", "-c", "100G",
                      *[i.split("@")[0] for i in ids])
        self.cli(0, "layout", "apply", "--version", "1")
        for i in range(self.n):
            v.wait(f"garage node {i + 1} healthy",
                   lambda: '"healthy"' in (self._try(i, "json-api", "GetClusterHealth") or ""),
                   timeout=60, every=0.1)
        self.cli(0, "key", "import", "--yes", "-n", "bench", KEY_ID, SECRET)
        self.cli(0, "bucket", "create", "bench")
        self.cli(0, "bucket", "allow", "--read", "--write", "--owner", "bench",
                 "--key", "bench")

    def storage_toml(self, i):
        return (f'[storage]\nbackend = "s3"\nendpoint = "http://127.0.0.1:{self.s3[i]}"\n'
                f'bucket = "bench"\nregion = "garage"\naccess_key_id = "{KEY_ID}"\n'
                f'secret_access_key = "{SECRET}"\n')

    def cpu(self):
        return sum(v.cpu_s(p.pid) for p in self.procs)

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def run(work, data, garage):
    """One round: backup, unchanged backup, restore; times and CPU."""
    extra = {}
    if garage:
        garage.start()
        extra = {1: garage.storage_toml(0), 2: garage.storage_toml(min(1, garage.n - 1))}
    c = v.Bcm(work, extra)
    c.start()
    cpu = (lambda: c.cpu() + garage.cpu()) if garage else c.cpu
    store_cpu = garage.cpu if garage else (lambda: 0.0)
    try:
        _, plan = c.call("POST", "/api/v1/plans", {
            "name": "bench", "source_node": 1, "paths": [data], "replicas": 1})
        res = {}
        v.log(f"{'garage' if garage else 'local'}: backup")
        before, store_before = cpu(), store_cpu()
        res["backup_s"], first = c.backup(plan["id"])
        res["backup_cpu_s"] = cpu() - before
        res["backup_store_cpu_s"] = store_cpu() - store_before
        res["stored_bytes"] = first["stored_bytes"]
        v.log(f"{'garage' if garage else 'local'}: unchanged backup")
        res["rebackup_s"], second = c.backup(plan["id"])
        target = os.path.join(work, "restore")
        v.log(f"{'garage' if garage else 'local'}: restore")
        v.settle()
        start, before, store_before = time.monotonic(), cpu(), store_cpu()
        _, r = c.call("POST", f"/api/v1/backups/{second['id']}/restore",
                      {"target_node": 1, "target_path": target})
        c.job("restores", r["id"])
        res["restore_s"] = time.monotonic() - start
        res["restore_cpu_s"] = cpu() - before
        res["restore_store_cpu_s"] = store_cpu() - store_before
        res["restored"] = v.digest(os.path.join(target, data.lstrip("/")))
        return res
    finally:
        c.stop()
        if garage:
            garage.stop()


def main():
    os.makedirs(v.OUT, exist_ok=True)
    base = os.environ.get("BENCH_DIR") or tempfile.gettempdir()
    data = os.path.join(base, "bcm-bench-tree")
    v.tree(data, v.SIZE_MB, v.SEED)
    want = v.digest(data)
    v.log(f"data set: {want[0]} files, {want[1] / v.MIB:.0f} MiB")
    results = {}
    for name in ("local", "garage"):
        work = tempfile.mkdtemp(prefix=f"bcm-s3-bench-{name}-", dir=base)
        try:
            garage = Garage(work, GARAGE_NODES) if name == "garage" else None
            results[name] = run(work, data, garage)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if results[name].pop("restored") != want:
            raise SystemExit(f"the {name} restore differs from the data set")
    size = want[1] / v.MIB
    loc, gar = results["local"], results["garage"]
    rows = [
        ("backup (s)", gar["backup_s"], loc["backup_s"]),
        ("backup (MiB/s)", size / gar["backup_s"], size / loc["backup_s"]),
        ("backup CPU, all processes (s)", gar["backup_cpu_s"], loc["backup_cpu_s"]),
        ("unchanged re-backup (s)", gar["rebackup_s"], loc["rebackup_s"]),
        ("restore (s)", gar["restore_s"], loc["restore_s"]),
        ("restore (MiB/s)", size / gar["restore_s"], size / loc["restore_s"]),
        ("restore CPU, all processes (s)", gar["restore_cpu_s"], loc["restore_cpu_s"]),
    ]
    extra = (f"Garage's own CPU: backup {gar['backup_store_cpu_s']:.2f} s, "
             f"restore {gar['restore_store_cpu_s']:.2f} s")
    print(f"data set: {want[0]} files, {size:.0f} MiB, seed {v.SEED}; 1 replica; "
          f"Garage: {GARAGE_NODES} node(s), replication factor {GARAGE_NODES}, fsync on, "
          f"compression {GARAGE_COMPRESSION}; "
          f"both restores byte-identical")
    print(f"{'':31} {'garage':>10} {'local':>10} {'garage/local':>13}")
    for label, g, l in rows:
        print(f"{label:31} {g:10.2f} {l:10.2f} {g / l:12.2f}x")
    print(extra)
    with open(os.path.join(v.OUT, "s3-results.json"), "w") as f:
        json.dump({"size_mb": v.SIZE_MB, "seed": v.SEED, "garage_nodes": GARAGE_NODES,
                   "files": want[0], "bytes": want[1], **results}, f, indent=2)


if __name__ == "__main__":
    main()
