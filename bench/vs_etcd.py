#!/usr/bin/env python3
"""bcm against etcd 3.4 on one machine, in one run. Started by bench/vs-etcd.sh.

Both clusters have three members on loopback, fsync every write (bcm: its Raft
log's fdatasync before an append is acknowledged; etcd: its WAL's), and keep their
shipped timing. The same load generator (`bcm bench`) drives both: bcm through its
config API, etcd through its v3 JSON gateway. One client writes through the leader
and then through a follower; more clients are spread over the members. Environment
knobs: DURATION (seconds per load point, default 10), CLIENTS (default "1 16 64"),
SOAK (seconds of the full-load run that counts leader changes, default 60; 0 skips
it), FAILOVERS (default 5), FILL_KEYS (default 100000; 0 skips the fill), BASE_PORT (default 17100),
BCM_BIN (the bcm binary to run; default this tree's target/release/bcm),
BENCH_DIR (where the servers' data goes; default the system's temp directory).
TLS=1 runs both with TLS: bcm with mutual TLS between members (its own cluster
CA) and HTTPS for its API, etcd with mutual TLS between peers
(`--peer-client-cert-auth`) and HTTPS for its client API, both API certificates
from one bench CA made with openssl; results go to results-tls.json.
"""

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# BCM_BIN: another build to measure (an A/B against a branch), instead of this tree's.
BCM = os.environ.get("BCM_BIN") or os.path.join(ROOT, "target", "release", "bcm")
OUT = os.path.join(ROOT, "target", "bench")
DURATION = float(os.environ.get("DURATION", "10"))
CLIENTS = [int(c) for c in os.environ.get("CLIENTS", "1 16 64").split()]
FAILOVERS = int(os.environ.get("FAILOVERS", "5"))
FILL_KEYS = int(os.environ.get("FILL_KEYS", "100000"))
SOAK = float(os.environ.get("SOAK", "60"))
BASE = int(os.environ.get("BASE_PORT", "17100"))
TLS = os.environ.get("TLS") == "1"
SCHEME = "https" if TLS else "http"
# The bench CA and the certificate both systems serve their APIs with (TLS=1).
CERTS = {}
SSL_CTX = None
PASSWORD = "bench-admin-password"
SECRET = "bench-cluster-secret-0123456789"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def http(method, url, body=None, token=None, timeout=2.0):
    """(status, parsed JSON or None); status 0 when the server did not answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=SSL_CTX) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, None
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, None


def wait(what, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def loopback(port):
    """The URLs of three members listening on loopback, from `port` on."""
    return [f"{SCHEME}://127.0.0.1:{port + i}" for i in range(3)]


def host_port(url):
    return url.split("://", 1)[1]


def make_certs(work):
    """A bench CA and one certificate for 127.0.0.1 (server and client use)."""
    global SSL_CTX
    d = os.path.join(work, "certs")
    os.makedirs(d)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench CA")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    CERTS.update(ca=os.path.join(d, "ca.pem"), cert=os.path.join(d, "server.pem"),
                 key=os.path.join(d, "server.key"))
    SSL_CTX = ssl.create_default_context(cafile=CERTS["ca"])


class Members:
    """Three members of one system on loopback, each started by `start(i)`."""

    def __init__(self, work, api_port):
        self.work = work
        self.api = loopback(api_port)
        self.procs = [None] * 3

    def leader_changes(self):
        """The highest count of leader changes a member reports (0 if none answers)."""
        total = 0
        for url in self.api:
            try:
                with urllib.request.urlopen(url + "/metrics", timeout=2, context=SSL_CTX) as r:
                    for line in r.read().decode().splitlines():
                        if line.startswith(self.leader_changes_metric + " "):
                            total = max(total, int(float(line.split()[1])))
            except OSError:
                pass
        return total


class Bcm(Members):
    name = "bcm"
    leader_changes_metric = "bcm_raft_leader_changes_total"

    def __init__(self, work):
        super().__init__(work, BASE)
        self.rpc = loopback(BASE + 10)
        self.token = None

    def config(self, i):
        path = os.path.join(self.work, f"bcm{i + 1}.toml")
        with open(path, "w") as f:
            f.write(
                f'[node]\nid = {i + 1}\ndata_dir = "{self.work}/bcm{i + 1}"\n'
                f'api_listen = "{host_port(self.api[i])}"\nrpc_listen = "{host_port(self.rpc[i])}"\n'
                f'[cluster]\nsecret = "{SECRET}"\nbootstrap = {json.dumps(self.rpc)}\n'
                f'[auth]\nadmin_password = "{PASSWORD}"\n[log]\nlevel = "warn"\n'
            )
            if TLS:
                f.write(f'[api]\ntls_cert = "{CERTS["cert"]}"\ntls_key = "{CERTS["key"]}"\n')
        return path

    def start(self, i):
        logf = open(os.path.join(self.work, f"bcm{i + 1}.log"), "a")
        self.procs[i] = subprocess.Popen(
            [BCM, "node", "--config", self.config(i)], stdout=logf, stderr=logf
        )

    def healthy(self, i):
        return http("GET", self.api[i] + "/readyz")[0] == 200

    def leader(self):
        for i in range(3):
            if self.procs[i] and http("GET", self.api[i] + "/leader")[0] == 200:
                return i
        return None

    def login(self):
        status, body = http(
            "POST", self.api[0] + "/api/v1/auth/login",
            {"username": "admin", "password": PASSWORD},
        )
        assert status == 200, f"bcm login: HTTP {status}"
        self.token = body["token"]

    def put(self, i, key, timeout=1.0):
        return http(
            "PUT", f"{self.api[i]}/api/v1/config/{key}", {"value": "x"}, self.token, timeout
        )[0] == 200

    def bench_env(self):
        return {"BCM_PASSWORD": PASSWORD}


class Etcd(Members):
    name = "etcd"
    leader_changes_metric = "etcd_server_leader_changes_seen_total"

    def __init__(self, work):
        super().__init__(work, BASE + 20)
        self.peer = loopback(BASE + 30)

    def start(self, i):
        cluster = ",".join(f"e{j + 1}={self.peer[j]}" for j in range(3))
        logf = open(os.path.join(self.work, f"etcd{i + 1}.log"), "a")
        args = [
            "etcd", "--name", f"e{i + 1}", "--data-dir", f"{self.work}/etcd{i + 1}",
            "--listen-client-urls", self.api[i], "--advertise-client-urls", self.api[i],
            "--listen-peer-urls", self.peer[i], "--initial-advertise-peer-urls", self.peer[i],
            "--initial-cluster", cluster, "--initial-cluster-token", "bcm-bench",
            "--initial-cluster-state", "new", "--log-level", "error", "--logger", "zap",
        ]
        if TLS:
            args += [
                "--cert-file", CERTS["cert"], "--key-file", CERTS["key"],
                "--peer-cert-file", CERTS["cert"], "--peer-key-file", CERTS["key"],
                "--peer-trusted-ca-file", CERTS["ca"], "--peer-client-cert-auth",
            ]
        self.procs[i] = subprocess.Popen(args, stdout=logf, stderr=logf)

    def healthy(self, i):
        status, body = http("GET", self.api[i] + "/health")
        return status == 200 and body and body.get("health") == "true"

    def leader(self):
        for i in range(3):
            if not self.procs[i]:
                continue
            status, body = http("POST", self.api[i] + "/v3/maintenance/status", {})
            if status == 200 and body and body.get("leader") == body["header"]["member_id"]:
                return i
        return None

    def login(self):
        pass

    def put(self, i, key, timeout=1.0):
        b64 = lambda s: base64.b64encode(s.encode()).decode()
        return http(
            "POST", self.api[i] + "/v3/kv/put", {"key": b64(key), "value": b64("x")},
            timeout=timeout,
        )[0] == 200

    def bench_env(self):
        return {}


def start_all(c):
    for i in range(3):
        c.start(i)
    wait(f"{c.name} to be healthy", lambda: all(c.healthy(i) for i in range(3)))
    wait(f"{c.name} to elect a leader", lambda: c.leader() is not None)
    c.login()


def stop_all(c):
    for p in c.procs:
        if p and p.poll() is None:
            p.kill()
            p.wait()


def bench(c, op, clients, duration, keys=1000, extra=(), servers=None):
    env = dict(os.environ, **c.bench_env())
    args = [
        BCM, "bench", "--target", c.name, "--servers", ",".join(servers or c.api),
        "--clients", str(clients), "--duration", str(duration), "--op", op,
        "--value-size", "256", "--keys", str(keys), "--output", "json", *extra,
    ]
    if TLS:
        args += ["--cacert", CERTS["ca"]]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def fsync_latency(work, n=2000):
    """Median and p99 (ms) of a 256-byte append plus fdatasync to a preallocated file
    in the directory the servers write to: the disk's part of every write."""
    path = os.path.join(work, "fsync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        os.posix_fallocate(fd, 0, n * 256)
        os.fsync(fd)
        times = []
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, b"x" * 256, i * 256)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000


def loopback_rtt(n=5000):
    """Median round trip (ms) of a small message over a loopback TCP connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def echo():
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            data = conn.recv(64)
            if not data:
                break
            conn.sendall(data)
        conn.close()

    threading.Thread(target=echo, daemon=True).start()
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        client.sendall(b"ping")
        client.recv(64)
        times.append(time.perf_counter() - t)
    client.close()
    server.close()
    times.sort()
    return times[len(times) // 2] * 1000


def failover(c, rounds):
    times = []
    for r in range(rounds):
        wait(f"{c.name} to be healthy", lambda: all(c.healthy(i) for i in range(3)))
        leader = c.leader()
        wait(f"{c.name} leader", lambda: c.leader() is not None)
        leader = c.leader()
        survivor = (leader + 1) % 3
        t0 = time.monotonic()
        c.procs[leader].send_signal(signal.SIGKILL)
        c.procs[leader].wait()
        n = 0
        while not c.put(survivor, f"failover-{r}-{n}", timeout=1.0):
            n += 1
            if time.monotonic() - t0 > 30:
                raise SystemExit(f"{c.name}: no write succeeded within 30 s of killing the leader")
        took = time.monotonic() - t0
        times.append(took)
        log(f"{c.name} failover {r + 1}: {took * 1000:.0f} ms (killed member {leader + 1})")
        c.start(leader)
        wait(f"{c.name} member {leader + 1} back", lambda: c.healthy(leader))
        time.sleep(1.0)
    return times


def memory_and_startup(c):
    leader = c.leader()
    victim = (leader + 1) % 3
    idle = rss_mib(c.procs[victim].pid)
    if FILL_KEYS > 0:  # FILL_KEYS=0: the restart is timed with what the runs wrote
        log(f"{c.name}: filling {FILL_KEYS} keys")
        bench(c, "fill", 64, 1, keys=FILL_KEYS)
        time.sleep(2)
    full = rss_mib(c.procs[victim].pid)
    c.procs[victim].send_signal(signal.SIGTERM)
    c.procs[victim].wait()
    t0 = time.monotonic()
    c.start(victim)
    wait(f"{c.name} restarted member", lambda: c.healthy(victim), timeout=300)
    startup = time.monotonic() - t0
    return idle, full, startup


def svg(results, path):
    """p50 put latency against clients, one line per system."""
    w, h, pad = 640, 360, 50
    pts = {s: [(r["clients"], r["p50_ms"]) for r in results
               if r["target"] == s and r["op"] == "put" and r.get("via") != "follower"]
           for s in ("bcm", "etcd")}
    all_x = [x for p in pts.values() for x, _ in p] or [1]
    all_y = [y for p in pts.values() for _, y in p] or [1]
    max_x, max_y = max(all_x), max(all_y) * 1.1 or 1
    sx = lambda x: pad + (w - 2 * pad) * x / max_x
    sy = lambda y: h - pad - (h - 2 * pad) * y / max_y
    colors = {"bcm": "#1f77b4", "etcd": "#d62728"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
             f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">clients</text>',
             f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">p50 put latency (ms)</text>']
    for s, p in pts.items():
        if not p:
            continue
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in p)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colors[s]}" stroke-width="2"/>')
        for x, y in p:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colors[s]}"/>')
            parts.append(f'<text x="{sx(x):.1f}" y="{sy(y) - 8:.1f}" text-anchor="middle">{y:.2f}</text>')
        lx, ly = w - pad - 80, pad + (0 if s == "bcm" else 18)
        parts.append(f'<text x="{lx}" y="{ly}" fill="{colors[s]}">{s}</text>')
    for x in sorted(set(all_x)):
        parts.append(f'<text x="{sx(x):.1f}" y="{h - pad + 15}" text-anchor="middle">{x}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


def main():
    # bench/vs-etcd.sh installs etcd; run directly, say what is missing up front.
    if shutil.which("etcd") is None:
        sys.exit("etcd is not installed (apt-get install etcd-server, or run bench/vs-etcd.sh)")
    if not os.path.exists(BCM):
        sys.exit(f"no bcm binary at {BCM} (cargo build --release --bin bcm, or set BCM_BIN)")
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bcm-bench-", dir=os.environ.get("BENCH_DIR"))
    if TLS:
        make_certs(work)
    systems = [Bcm(work), Etcd(work)]
    results, extra = [], {}
    fsync_p50, fsync_p99 = fsync_latency(work)
    rtt = loopback_rtt()
    log(f"this disk: append + fdatasync p50 {fsync_p50:.3f} ms, p99 {fsync_p99:.3f} ms; loopback TCP round trip p50 {rtt:.3f} ms")
    try:
        for c in systems:
            log(f"starting 3-node {c.name}")
            start_all(c)
            before = c.leader_changes()
            for n in CLIENTS:
                if n == 1:
                    # One client shows the latency of the write path itself: through
                    # the leader, and through a follower (which forwards to it).
                    leader = c.leader()
                    for via, i in (("leader", leader), ("follower", (leader + 1) % 3)):
                        r = bench(c, "put", 1, DURATION, servers=[c.api[i]])
                        r["via"] = via
                        log(f"{c.name} put clients=1 via the {via}: {r['throughput']:.0f} ops/s p50 {r['p50_ms']:.2f} ms errors {r['errors']}")
                        results.append(r)
                    continue
                r = bench(c, "put", n, DURATION)
                log(f"{c.name} put clients={n}: {r['throughput']:.0f} ops/s p50 {r['p50_ms']:.2f} ms errors {r['errors']}")
                results.append(r)
            extra[c.name] = {"leader_changes_under_load": c.leader_changes() - before}
            if SOAK > 0:
                before = c.leader_changes()
                r = bench(c, "put", max(CLIENTS), SOAK)
                extra[c.name]["soak_ops"] = r["throughput"]
                extra[c.name]["soak_errors"] = r["errors"]
                extra[c.name]["leader_changes_soak"] = c.leader_changes() - before
                log(f"{c.name} put clients={max(CLIENTS)} for {SOAK:.0f} s: {r['throughput']:.0f} ops/s, "
                    f"{extra[c.name]['leader_changes_soak']} leader changes")
            r = bench(c, "get-linearizable", max(CLIENTS), DURATION)
            log(f"{c.name} get-linearizable clients={max(CLIENTS)}: {r['throughput']:.0f} ops/s")
            results.append(r)
            extra[c.name]["failover_s"] = failover(c, FAILOVERS)
            idle, full, startup = memory_and_startup(c)
            extra[c.name].update(rss_idle_mib=idle, rss_full_mib=full, startup_s=startup)
            stop_all(c)
    finally:
        for c in systems:
            stop_all(c)
        shutil.rmtree(work, ignore_errors=True)

    def get(target, op, clients, field, via=None):
        for r in results:
            if (r["target"] == target and r["op"] == op and r["clients"] == clients
                    and r.get("via") == via):
                return r[field]
        return float("nan")

    # The floor of one durable replicated write: one fsync plus one round trip
    # (the leader's append overlapping its followers', as in etcd's raft).
    # openraft 0.9 flushes the leader's append before it replicates, which makes
    # its floor two of each.
    floor = fsync_p50 + rtt
    to_floor = lambda v, label: (
        f"{v / floor:.1f}" if "ms" in label
        else f"{v / (1000 / floor):.2f}" if label == "ops/s" else "-")
    rows = []
    for n in CLIENTS:
        for via in (("leader", "follower") if n == 1 else (None,)):
            who = {"leader": "1 client via the leader", "follower": "1 client via a follower",
                   None: f"{n} clients"}[via]
            for field, label in (("throughput", "ops/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
                b, e = get("bcm", "put", n, field, via), get("etcd", "put", n, field, via)
                # Throughput against the floor only for one client (one write at a
                # time): more clients share fsyncs, which the floor does not model.
                fb, fe = ((to_floor(b, label), to_floor(e, label))
                          if n == 1 or "ms" in label else ("-", "-"))
                rows.append((f"put, {who}, {label}", f"{b:.2f}" if "ms" in label else f"{b:.0f}",
                             f"{e:.2f}" if "ms" in label else f"{e:.0f}", ratio(b, e), fb, fe))
    n = max(CLIENTS)
    b, e = get("bcm", "get-linearizable", n, "throughput"), get("etcd", "get-linearizable", n, "throughput")
    rows.append((f"linearizable get, {n} clients, ops/s", f"{b:.0f}", f"{e:.0f}", ratio(b, e), "-", "-"))
    fb, fe = statistics.median(extra["bcm"]["failover_s"]), statistics.median(extra["etcd"]["failover_s"])
    rows.append((f"failover, median of {FAILOVERS}, ms", f"{fb * 1000:.0f}", f"{fe * 1000:.0f}", ratio(fb, fe), "-", "-"))
    if SOAK > 0:
        b, e = extra["bcm"]["soak_ops"], extra["etcd"]["soak_ops"]
        rows.append((f"put, {n} clients, {SOAK:.0f} s run, ops/s", f"{b:.0f}", f"{e:.0f}", ratio(b, e), "-", "-"))
        b, e = extra["bcm"]["leader_changes_soak"], extra["etcd"]["leader_changes_soak"]
        rows.append((f"leader changes during that run", f"{b}", f"{e}", "-", "-", "-"))
    for key, label in (("leader_changes_under_load", "leader changes during the put runs"),
                       ("rss_idle_mib", "RSS idle, MiB"), ("rss_full_mib", f"RSS with {FILL_KEYS} keys, MiB"),
                       ("startup_s", f"restart to ready with {FILL_KEYS} keys, s")):
        b, e = extra["bcm"][key], extra["etcd"][key]
        fmt = (lambda v: f"{v}") if isinstance(b, int) else (lambda v: f"{v:.1f}")
        rows.append((label, fmt(b), fmt(e), ratio(b, e), "-", "-"))

    rows.append(("floor: one fsync + one round trip, ms", f"{floor:.2f}", f"{floor:.2f}", "-", "1.0", "1.0"))
    rows.append(("openraft 0.9's floor: two of each, ms", f"{2 * floor:.2f}", "-", "-", "2.0", "-"))
    head = ("figure", "bcm", "etcd", "bcm/etcd", "bcm/floor", "etcd/floor")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
    print(f"bcm vs etcd {subprocess.run(['etcd', '--version'], capture_output=True, text=True).stdout.split()[2]}"
          f" - 3 members each on loopback, 256-byte values, {DURATION:.0f} s per point, {os.cpu_count()} cores"
          + (", TLS on both (mutual between members, HTTPS clients)" if TLS else ""))
    print(f"disk: append + fdatasync p50 {fsync_p50:.3f} ms (p99 {fsync_p99:.3f}); loopback TCP round trip p50 {rtt:.3f} ms")
    print("x/floor: a latency over the floor's, a one-client throughput over the floor's ceiling (1 / floor)")
    print(line(head))
    for r in rows:
        print(line(r))
    with open(os.path.join(OUT, "results-tls.json" if TLS else "results.json"), "w") as f:
        json.dump({"runs": results, "extra": extra,
                   "machine": {"fsync_p50_ms": fsync_p50, "fsync_p99_ms": fsync_p99,
                               "loopback_rtt_ms": rtt, "cores": os.cpu_count()}}, f, indent=2)
    svg(results, os.path.join(OUT, "latency.svg"))
    print(f"(details in {OUT}/results.json, chart in {OUT}/latency.svg)")


if __name__ == "__main__":
    main()
