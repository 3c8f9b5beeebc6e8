//! A real PostgreSQL server for the tests: `initdb` into a temp dir, started on a
//! free loopback port with `pg_ctl`, stopped and started again at will. As root the
//! server runs as the `postgres` user (PostgreSQL refuses to run as root).
//!
//! The binaries come from `$BCM_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`
//! (Debian's packages; `scripts/test.sh` installs them when missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::command::run_ok;
use crate::{free_port, wait_until};

/// One PostgreSQL server with a database `bcm` owned by the user `bcm` (trust
/// authentication on loopback).
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    running: bool,
}

fn pg_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BCM_PG_BIN") {
        return PathBuf::from(p);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin: \
             install Debian's postgresql package (scripts/test.sh does) or set BCM_PG_BIN"
        )
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// As root, hands `path` (recursively) to the `postgres` user the server runs as.
fn chown_to_server_user(path: &Path) {
    if is_root() {
        run_ok(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path),
            &format!("chown {} to postgres", path.display()),
        );
    }
}

impl Postgres {
    /// Creates and starts a new server; waits until it accepts connections.
    pub fn start(name: &str) -> Postgres {
        Postgres::create(name, false)
    }

    /// Like [`Postgres::start`], but the server only accepts TLS connections, with a
    /// certificate for 127.0.0.1 signed by a CA of its own ([`Postgres::ca_cert`]);
    /// [`Postgres::other_ca_cert`] is a CA that did not sign it.
    pub fn start_tls(name: &str) -> Postgres {
        Postgres::create(name, true)
    }

    fn create(name: &str, tls: bool) -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("bcm-pg-{name}-"))
            .tempdir()
            .expect("create a temp dir for PostgreSQL");
        chown_to_server_user(dir.path());
        let pg = Postgres {
            dir,
            bin,
            port: free_port(),
            running: false,
        };
        pg.run_as_server_user(
            "initdb",
            &[
                "-D",
                &pg.data().to_string_lossy(),
                "-U",
                "bcm",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if tls {
            pg.enable_tls();
        }
        let mut pg = pg;
        pg.resume();
        pg.psql_on("postgres", "CREATE DATABASE bcm OWNER bcm")
            .expect("create database bcm");
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The CA that signed the server's certificate (servers from `start_tls`).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("tls").join("ca.pem")
    }

    /// A CA that signed nothing of this server's.
    pub fn other_ca_cert(&self) -> PathBuf {
        self.dir.path().join("tls").join("other-ca.pem")
    }

    /// Makes a CA and a server certificate with openssl, turns `ssl` on and
    /// rejects connections without TLS in pg_hba.conf.
    fn enable_tls(&self) {
        let tls = self.dir.path().join("tls");
        std::fs::create_dir_all(&tls).expect("create the tls dir");
        let openssl = |args: &[&str]| {
            run_ok(
                Command::new("openssl").args(args).current_dir(&tls),
                &format!("openssl {args:?} (Debian's openssl package)"),
            );
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=bcm test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            tls.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write san.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        let data = self.data();
        for f in ["server.pem", "server.key"] {
            std::fs::copy(tls.join(f), data.join(f)).expect("copy the server's certificate");
        }
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str("\nssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        // pg_hba.conf is first match: no TCP connection without TLS.
        let hba = std::fs::read_to_string(data.join("pg_hba.conf")).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n{hba}"),
        )
        .unwrap();
        chown_to_server_user(&data);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod the server's key");
    }

    /// `tool` (one of the server's binaries) as the user the server runs as.
    fn as_server_user(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        }
    }

    fn run_as_server_user(&self, tool: &str, args: &[&str]) {
        run_ok(
            self.as_server_user(tool).args(args),
            &format!("{tool} {args:?}"),
        );
    }

    /// `postgres://bcm@127.0.0.1:<port>/bcm`.
    pub fn url(&self) -> String {
        self.url_of("bcm")
    }

    /// The URL of another database on this server.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://bcm@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: open transactions are rolled back).
    pub fn stop(&mut self) {
        if self.running {
            self.run_as_server_user(
                "pg_ctl",
                &[
                    "-D",
                    &self.data().to_string_lossy(),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
            );
            self.running = false;
        }
    }

    /// Starts the (stopped) server again on the same port with the same data.
    pub fn resume(&mut self) {
        assert!(!self.running, "PostgreSQL is already running");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run_as_server_user(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
        self.running = true;
        wait_until(
            Duration::from_secs(20),
            "PostgreSQL to accept connections",
            || self.psql_on("postgres", "SELECT 1").map(|_| ()),
        );
    }

    /// Runs `sql` in database `bcm` with psql; its unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_on("bcm", sql)
    }

    fn psql_on(&self, database: &str, sql: &str) -> Result<String, String> {
        let psql = self.bin.join("psql");
        let out = Command::new(&psql)
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "bcm",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql)
            .output()
            .map_err(|e| format!("run {}: {e}", psql.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "psql {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The rows of `query` as a JSON array of objects.
    pub fn rows(&self, query: &str) -> Result<Vec<Value>, String> {
        let text = self.psql(&format!(
            "SELECT COALESCE(json_agg(t), '[]'::json) FROM ({query}) t"
        ))?;
        match serde_json::from_str(&text) {
            Ok(Value::Array(rows)) => Ok(rows),
            Ok(other) => Err(format!("not an array: {other}")),
            Err(e) => Err(format!("{e}: {text}")),
        }
    }

    /// The server's own log, for failure messages.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .as_server_user("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}
