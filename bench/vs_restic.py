#!/usr/bin/env python3
"""bcm against restic on one machine, in one run. Started by bench/vs-restic.sh.

One seeded generated tree (SIZE_MB, default 1400; about 40 % of its bytes are
duplicates of other bytes in it, a quarter of the rest compresses about 2:1) is
backed up by both, twice (the second time unchanged), and restored by both; each
restore is compared with the tree byte for byte (restic's restore is also shown
followed by a sync: bcm's ends with the files on disk). restic writes to a repository on
the local disk (format 2, compression on); bcm runs three nodes on loopback (node
1 is the source and holds the backup-manager role, nodes 2 and 3 store) and keeps
2 replicas, fsync on, as shipped. The tree is in the page cache for both (it was
just written or read). Environment knobs: SIZE_MB, SEED (default 1), BASE_PORT
(default 17300), BENCH_DIR (where the data goes; default the system's temp
directory), BCM_ONLY=1 (skip restic: bcm's figures alone, for quick iterations),
BCM_BIN (another build of bcm, to compare two).
Prints one table and writes target/bench/restic-results.json.
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BCM = os.environ.get("BCM_BIN") or os.path.join(ROOT, "target", "release", "bcm")
OUT = os.path.join(ROOT, "target", "bench")
SIZE_MB = int(os.environ.get("SIZE_MB", "1400"))
SEED = int(os.environ.get("SEED", "1"))
BASE = int(os.environ.get("BASE_PORT", "17300"))
PASSWORD = "bench-admin-password"
SECRET = "bench-cluster-secret-0123456789"
MIB = 1024 * 1024


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the data set

def make_tree(root, size_mb, seed):
    """Writes the tree under `root`: nested directories with many small files,
    some medium and a few large ones (unique bytes, a quarter of them made of 16
    symbols so they compress), then duplicates of those bytes (whole copies, and
    copies with a few bytes inserted in the middle) until they are about 40 % of
    all bytes, plus empty files, a symlink and varied modes."""
    rng = random.Random(seed)
    unique_target = size_mb * MIB * 60 // 100
    written = []  # (path, size) of files with unique content
    total = 0
    squeeze = bytes.maketrans(bytes(range(256)), (b"abcdefghijklmnop" * 16))

    def content(n):
        data = rng.randbytes(n)
        return data.translate(squeeze) if rng.random() < 0.25 else data

    def put(rel, data, mode=0o644):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        os.utime(path, (1_700_000_000 + len(written), 1_700_000_000 + len(written)))

    # Small files: 3 000 of 1-64 KiB in 3 levels of directories.
    for i in range(3000):
        n = rng.randint(1024, 64 * 1024)
        rel = f"small/d{i % 10}/e{i % 7}/f{i:05}.dat"
        put(rel, content(n), rng.choice([0o644, 0o600, 0o640, 0o755]))
        written.append((rel, n))
        total += n
    # Medium files of 1-16 MiB, then large ones of 64-160 MiB, to the target.
    i = 0
    while total < unique_target:
        large = i % 8 == 7
        n = rng.randint(64 * MIB, 160 * MIB) if large else rng.randint(MIB, 16 * MIB)
        n = min(n, unique_target - total + 4096)
        rel = f"{'large' if large else 'medium'}/m{i:04}.bin"
        put(rel, content(n))
        written.append((rel, n))
        total += n
        i += 1
    # Duplicates: whole copies and edited copies of earlier files, to ~40 %.
    dup_target = size_mb * MIB - total
    dups = 0
    j = 0
    while dups < dup_target:
        rel, n = rng.choice(written)
        with open(os.path.join(root, rel), "rb") as f:
            data = f.read()
        if j % 2 and n > MIB:
            cut = n // 2
            data = data[:cut] + b"a few new bytes in the middle" + data[cut:]
        put(f"copies/c{j:04}_{os.path.basename(rel)}", data)
        dups += len(data)
        j += 1
    for k in range(20):
        put(f"empty/e{k}", b"")
    os.symlink("../medium/m0000.bin", os.path.join(root, "small", "link"))
    return total + dups


def tree(root, size_mb, seed):
    """The data set at `root`, made once per size and seed and kept."""
    stamp = os.path.join(root + ".made")
    want = f"{size_mb} {seed}\n"
    if os.path.exists(stamp) and open(stamp).read() == want:
        return
    shutil.rmtree(root, ignore_errors=True)
    log(f"writing the data set ({size_mb} MiB, seed {seed}) to {root}")
    make_tree(root, size_mb, seed)
    with open(stamp, "w") as f:
        f.write(want)


def digest(root):
    """(files, bytes, one hash over every path, mode, mtime and content)."""
    h = hashlib.blake2b()
    files = size = 0
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            h.update(f"{rel}\0{st.st_mode:o}\0".encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
                continue
            h.update(f"{int(st.st_mtime)}\0".encode())
            files += 1
            size += st.st_size
            with open(path, "rb") as f:
                while block := f.read(4 * MIB):
                    h.update(block)
    return files, size, h.hexdigest()


def du(path):
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def settle():
    """Writes back what earlier steps left dirty (restic does not sync its
    restores), so that no timed step pays for another's writes."""
    os.sync()


def timed(args, env=None):
    """(seconds, peak RSS in MiB, CPU seconds) of one command run to its end."""
    settle()
    start = time.monotonic()
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    took = time.monotonic() - start
    if status != 0:
        raise SystemExit(f"{args[0]} {args[1:4]} failed: {p.stderr.read().decode()[-2000:]}")
    return took, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def cpu_s(pid):
    """CPU seconds (user and system) a running process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- restic

def run_restic(work, data):
    repo = os.path.join(work, "restic-repo")
    env = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=repo,
               RESTIC_CACHE_DIR=os.path.join(work, "restic-cache"))
    subprocess.run(["restic", "init", "--repository-version", "2"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    res = {}
    log("restic: backup")
    res["backup_s"], res["backup_rss_mib"], res["backup_cpu_s"] = timed(
        ["restic", "backup", "-q", data], env)
    log("restic: unchanged backup")
    res["rebackup_s"], _, _ = timed(["restic", "backup", "-q", data], env)
    res["repo_bytes"] = du(repo)
    target = os.path.join(work, "restic-restore")
    log("restic: restore")
    res["restore_s"], _, res["restore_cpu_s"] = timed(
        ["restic", "restore", "latest", "--target", target], env)
    # restic reports a restore done with its files still in the page cache;
    # bcm's restore ends once they are on disk. Both figures are shown.
    start = time.monotonic()
    os.sync()
    res["restore_durable_s"] = res["restore_s"] + time.monotonic() - start
    res["restored"] = digest(os.path.join(target, data.lstrip("/")))
    # Kept until bcm's restore has run: on ext4 without a journal, creating files
    # soon after deleting thousands scans the deleted inodes (`recently_deleted`,
    # 30 s), which would slow whichever restore came next.
    return res


# ------------------------------------------------------------------------- bcm

def http(method, url, body=None, token=None, timeout=10.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, None


def wait(what, cond, timeout=60.0, every=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Bcm:
    ROLES = [["manager", "backup-manager"], ["manager", "storage"], ["manager", "storage"]]

    def __init__(self, work, extra=None):
        """Three nodes; `extra` maps a node's index to TOML added to its
        config (a `[storage]` section, say)."""
        self.work = work
        self.extra = extra or {}
        self.api = [f"http://127.0.0.1:{BASE + i}" for i in range(3)]
        self.rpc = [f"http://127.0.0.1:{BASE + 10 + i}" for i in range(3)]
        self.procs = []
        self.token = None

    def start(self):
        for i in range(3):
            path = os.path.join(self.work, f"bcm{i + 1}.toml")
            with open(path, "w") as f:
                f.write(
                    f'[node]\nid = {i + 1}\ndata_dir = "{self.work}/bcm{i + 1}"\n'
                    f'api_listen = "{self.api[i][7:]}"\nrpc_listen = "{self.rpc[i][7:]}"\n'
                    f"roles = {json.dumps(self.ROLES[i])}\n"
                    f'[cluster]\nsecret = "{SECRET}"\nbootstrap = {json.dumps(self.rpc)}\n'
                    f'[auth]\nadmin_password = "{PASSWORD}"\n[log]\nlevel = "warn"\n'
                    + self.extra.get(i, "")
                )
            logf = open(os.path.join(self.work, f"bcm{i + 1}.log"), "a")
            self.procs.append(subprocess.Popen([BCM, "node", "--config", path],
                                               stdout=logf, stderr=logf))
        wait("bcm to be ready",
             lambda: all(http("GET", u + "/readyz", timeout=2)[0] == 200 for u in self.api))
        status, body = http("POST", self.api[0] + "/api/v1/auth/login",
                            {"username": "admin", "password": PASSWORD})
        assert status == 200, f"bcm login: HTTP {status} {body}"
        self.token = body["token"]
        # The role is handed out a moment after the cluster forms: a backup
        # posted before would time the wait for it.
        wait("the backup manager and both storage nodes",
             lambda: (self.call("GET", "/api/v1/cluster")[1].get("backup_manager") or {})
             .get("node_id") == 1
             and self.call("GET", "/api/v1/storage")[1]["total"] == 2
             and all(s["reachable"] for s in self.call("GET", "/api/v1/storage")[1]["items"]))

    def call(self, method, path, body=None):
        status, out = http(method, self.api[0] + path, body, self.token)
        if status not in (200, 201, 202):
            raise SystemExit(f"bcm {method} {path}: HTTP {status} {out}")
        return status, out

    def job(self, kind, id_):
        def ended():
            _, j = self.call("GET", f"/api/v1/{kind}/{id_}")
            return j if j["status"] in ("succeeded", "failed", "cancelled") else None
        j = wait(f"{kind} {id_}", ended, timeout=1800, every=0.05)
        if j["status"] != "succeeded":
            raise SystemExit(f"bcm {kind} {id_} {j['status']}: {j.get('error')}")
        return j

    def backup(self, plan):
        settle()
        start = time.monotonic()
        _, b = self.call("POST", "/api/v1/backups", {"plan": plan})
        b = self.job("backups", b["id"])
        return time.monotonic() - start, b

    def cpu(self):
        return sum(cpu_s(p.pid) for p in self.procs)

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def run_bcm(work, data):
    c = Bcm(work)
    c.start()
    try:
        _, plan = c.call("POST", "/api/v1/plans", {
            "name": "bench", "source_node": 1, "paths": [data], "replicas": 2})
        res = {}
        log("bcm: backup")
        cpu = c.cpu()
        res["backup_s"], first = c.backup(plan["id"])
        res["backup_cpu_s"] = c.cpu() - cpu
        res["stored_bytes"] = first["stored_bytes"]
        log("bcm: unchanged backup")
        res["rebackup_s"], second = c.backup(plan["id"])
        res["rebackup_stored_bytes"] = second["stored_bytes"]
        res["backup_rss_mib"] = peak_rss_mib(c.procs[0].pid)
        res["repo_bytes"] = du(os.path.join(work, "bcm2", "store"))
        res["repo_bytes_all"] = res["repo_bytes"] + du(os.path.join(work, "bcm3", "store"))
        target = os.path.join(work, "bcm-restore")
        log("bcm: restore")
        settle()
        start, cpu = time.monotonic(), c.cpu()
        _, r = c.call("POST", f"/api/v1/backups/{second['id']}/restore",
                      {"target_node": 1, "target_path": target})
        c.job("restores", r["id"])
        res["restore_s"] = time.monotonic() - start
        res["restore_cpu_s"] = c.cpu() - cpu
        res["restored"] = digest(os.path.join(target, data.lstrip("/")))
        shutil.rmtree(target)
        return res
    finally:
        c.stop()


# ------------------------------------------------------------------------ main

def main():
    os.makedirs(OUT, exist_ok=True)
    base = os.environ.get("BENCH_DIR") or tempfile.gettempdir()
    data = os.path.join(base, "bcm-bench-tree")
    tree(data, SIZE_MB, SEED)
    want = digest(data)
    log(f"data set: {want[0]} files, {want[1] / MIB:.0f} MiB")
    work = tempfile.mkdtemp(prefix="bcm-vs-restic-", dir=base)
    try:
        restic = None if os.environ.get("BCM_ONLY") == "1" else run_restic(work, data)
        bcm = run_bcm(work, data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, r in (("restic", restic), ("bcm", bcm)):
        if r and r.pop("restored") != want:
            raise SystemExit(f"{name}'s restore differs from the data set")
    size = want[1] / MIB
    if restic is None:
        print(f"bcm alone: backup {bcm['backup_s']:.2f} s ({size / bcm['backup_s']:.0f} MiB/s), "
              f"unchanged {bcm['rebackup_s']:.2f} s, restore {bcm['restore_s']:.2f} s "
              f"({size / bcm['restore_s']:.0f} MiB/s), RSS {bcm['backup_rss_mib']:.0f} MiB; "
              f"CPU backup {bcm['backup_cpu_s']:.1f} s, restore {bcm['restore_cpu_s']:.1f} s")
        return
    rows = [
        ("backup (s)", bcm["backup_s"], restic["backup_s"], "lower"),
        ("backup (MiB/s)", size / bcm["backup_s"], size / restic["backup_s"], "higher"),
        ("backup CPU, all processes (s)", bcm["backup_cpu_s"], restic["backup_cpu_s"],
         "lower"),
        ("unchanged re-backup (s)", bcm["rebackup_s"], restic["rebackup_s"], "lower"),
        ("restore (s)", bcm["restore_s"], restic["restore_s"], "lower"),
        ("restore (MiB/s)", size / bcm["restore_s"], size / restic["restore_s"], "higher"),
        ("restore, until on disk (s)", bcm["restore_s"], restic["restore_durable_s"],
         "lower"),
        ("restore CPU, all processes (s)", bcm["restore_cpu_s"], restic["restore_cpu_s"],
         "lower"),
        ("repository, one copy (MiB)", bcm["repo_bytes"] / MIB, restic["repo_bytes"] / MIB,
         "lower"),
        ("source peak RSS (MiB)", bcm["backup_rss_mib"], restic["backup_rss_mib"], "lower"),
    ]
    print(f"data set: {want[0]} files, {size:.0f} MiB, seed {SEED}; bcm with 2 replicas, "
          f"restic to one local repository; both restores byte-identical")
    print(f"{'':28} {'bcm':>10} {'restic':>10} {'bcm/restic':>11}")
    for label, b, r, better in rows:
        print(f"{label:28} {b:10.2f} {r:10.2f} {b / r:10.2f}x  ({better} is better)")
    print(f"bcm both replicas (MiB): {bcm['repo_bytes_all'] / MIB:.0f}; stored by the "
          f"unchanged re-backup: {bcm['rebackup_stored_bytes']} bytes")
    with open(os.path.join(OUT, "restic-results.json"), "w") as f:
        json.dump({"size_mb": SIZE_MB, "seed": SEED, "files": want[0], "bytes": want[1],
                   "bcm": bcm, "restic": restic}, f, indent=2)


if __name__ == "__main__":
    main()
