//! The operator's command line against a running cluster: `bcm status`, `bcm login`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use bcm_tests::serde_json::{self, Value};
use bcm_tests::{wait_for, wait_until, Bcm, CliOutput, Cluster, ADMIN_PASSWORD};

use crate::secs;

/// The operator at a terminal: `bcm` run from a home directory of their own (where
/// `bcm login` keeps its token) against `server` (one URL, or several separated by
/// commas), with the admin password in `BCM_PASSWORD` or without it.
struct Operator {
    home: PathBuf,
    server: String,
    password: Option<&'static str>,
}

impl Operator {
    /// The admin, with the password in `BCM_PASSWORD`.
    fn admin(c: &Cluster, server: &str) -> Operator {
        Operator::at(c, "cli-home", server, Some(ADMIN_PASSWORD))
    }

    /// Somebody with nothing in the environment, at home `home`: only a password
    /// given on the command line or a token kept by `bcm login` lets them in.
    fn without_password(c: &Cluster, home: &str, server: &str) -> Operator {
        Operator::at(c, home, server, None)
    }

    fn at(c: &Cluster, home: &str, server: &str, password: Option<&'static str>) -> Operator {
        let home = c.dir().join(home);
        fs::create_dir_all(&home).unwrap();
        Operator {
            home,
            server: server.to_string(),
            password,
        }
    }

    /// Where `bcm login` keeps the token.
    fn token_file(&self) -> PathBuf {
        self.home.join(".config/bcm/token.json")
    }

    /// `bcm COMMAND --server SERVER`, with the command line as typed: words apart,
    /// a "quoted phrase" one word. The runs are quick; a hung one fails the test
    /// instead of hanging it.
    fn bcm(&self, command: &str) -> CliOutput {
        let mut args = words(command);
        args.extend(["--server".to_string(), self.server.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = Bcm::new(&self.home, &args);
        if let Some(password) = self.password {
            cmd = cmd.env("BCM_PASSWORD", password);
        }
        let out = cmd.run(secs(30));
        eprintln!("{out}");
        out
    }

    /// `bcm COMMAND --output json`, which must succeed: what it printed, parsed.
    fn json(&self, command: &str) -> Value {
        let out = self.bcm(&format!("{command} --output json"));
        assert!(out.success(), "{out}");
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

/// The words of a command line: split at spaces, but a "quoted phrase" is one word.
fn words(line: &str) -> Vec<String> {
    line.split('"')
        .enumerate()
        .flat_map(|(i, part)| {
            if i % 2 == 1 {
                vec![part.to_string()]
            } else {
                part.split_whitespace().map(str::to_string).collect()
            }
        })
        .collect()
}

/// The member rows of `bcm status`'s table, each as column name -> cell (the cells
/// hold no spaces).
fn rows(table: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = table.lines().skip_while(|l| !l.starts_with("ID "));
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            columns
                .iter()
                .map(|c| c.to_string())
                .zip(l.split_whitespace().map(str::to_string))
                .collect()
        })
        .collect()
}

/// Waits until the cluster agrees on a leader and a backup-manager holder; returns both.
fn leader_and_holder(c: &Cluster) -> (u64, u64) {
    let leader = c.wait_for_agreed_leader(secs(10));
    // The leader assigns the role as soon as one member is up: the others may
    // still be "joining" for a moment then.
    wait_until(
        secs(15),
        "every member up and a backup manager every node agrees on",
        || {
            let mut holders = Vec::new();
            for n in c.all_nodes() {
                let view = c.cluster(n)?;
                let members = view["members"].as_array().cloned().unwrap_or_default();
                if members.len() != c.all_nodes().len()
                    || members.iter().any(|m| m["status"] != "up")
                {
                    return Err(format!(
                        "members as node {n} sees them: {}",
                        view["members"]
                    ));
                }
                holders.push(view["backup_manager"]["node_id"].as_u64());
            }
            match holders[0] {
                Some(h) if holders.iter().all(|x| *x == Some(h)) => Ok((leader, h)),
                _ => Err(format!("holders per node: {holders:?}")),
            }
        },
    )
}

#[test]
fn bcm_status_shows_every_member_and_who_holds_which_role() {
    let c = Cluster::builder().name("cli-status").voters(3).start();
    let (leader, holder) = leader_and_holder(&c);
    let admin = Operator::admin(&c, &c.api_url(c.followers()[0]));

    let out = admin.bcm("status");
    assert!(out.success(), "{out}");
    let rows = rows(&out.stdout);
    let ids: Vec<&str> = rows.iter().map(|r| r["ID"].as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"], "one row per member:\n{out}");
    for row in &rows {
        let id: u64 = row["ID"].parse().unwrap();
        assert_eq!(row["NAME"], format!("node-{id}"), "{row:?}");
        assert_eq!(row["API"], c.api_url(id), "{row:?}");
        assert_eq!(row["STATUS"], "up", "{row:?}");
        assert_eq!(row["VOTER"], "voter", "{row:?}");
        let roles: Vec<&str> = row["ROLE"].split('+').collect();
        assert_eq!(
            roles.contains(&"cluster-manager"),
            id == leader,
            "the leader is node {leader}: {row:?}\n{out}"
        );
        assert_eq!(
            roles.contains(&"backup-manager"),
            id == holder,
            "the backup manager is node {holder}: {row:?}\n{out}"
        );
    }

    let status = admin.json("status");
    let members: Vec<u64> = status["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {status}"))
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(members, [1, 2, 3], "{status}");
    assert_eq!(status["leader_id"], leader, "{status}");
    assert_eq!(status["backup_manager"]["node_id"], holder, "{status}");
}

#[test]
fn bcm_login_keeps_a_private_token_that_later_commands_use() {
    let c = Cluster::builder().name("cli-login").voters(3).start();
    let server = c.api_url(c.followers()[0]);

    // A wrong password: a non-zero exit, a message a person can read, no token kept.
    let wrong = Operator::without_password(&c, "cli-home-wrong", &server);
    let out = wrong.bcm("login --password not-the-password");
    assert!(!out.success(), "a wrong password must fail: {out}");
    let msg = out.stderr.trim();
    assert!(
        msg.starts_with("bcm: error:") && msg.contains("wrong password") && msg.contains("401"),
        "a readable error naming the cause: {out}"
    );
    assert!(
        !msg.contains("panicked") && msg.lines().count() <= 2,
        "no panic or backtrace: {out}"
    );
    assert!(
        !wrong.token_file().exists(),
        "a failed login wrote a token: {out}"
    );

    // The right password: the token is kept, readable by its owner only.
    let operator = Operator::without_password(&c, "cli-home", &server);
    let out = operator.bcm(&format!("login --password {ADMIN_PASSWORD}"));
    assert!(out.success(), "{out}");
    let path = operator.token_file();
    let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}\n{out}", path.display()));
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{} must be private",
        path.display()
    );
    let stored: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let token = stored["token"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "no token in {stored}");
    assert!(
        !fs::read_to_string(&path).unwrap().contains(ADMIN_PASSWORD),
        "the password must not be stored"
    );

    // A later command works with the kept token alone.
    let out = operator.bcm("status");
    assert!(out.success(), "status with the stored token: {out}");
    assert_eq!(rows(&out.stdout).len(), 3, "{out}");

    // `bcm logout` revokes it on every node and forgets it.
    let out = operator.bcm("logout");
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("revoked"), "{out}");
    assert!(!path.exists(), "the token file is gone: {out}");
    for n in c.all_nodes() {
        wait_for(
            secs(10),
            &format!("node {n} to refuse the revoked token"),
            || {
                c.send(
                    c.request(n, reqwest::Method::GET, "/api/v1/auth/me")
                        .bearer(token),
                )
            },
            |r| r.status == 401,
        );
    }
    let out = operator.bcm("status");
    assert!(!out.success() && out.stderr.contains("bcm login"), "{out}");
    let out = operator.bcm("logout");
    assert!(
        out.success() && out.stdout.contains("not logged in"),
        "{out}"
    );
}

#[test]
fn bcm_status_uses_the_next_server_when_the_first_is_down() {
    let c = Cluster::builder().name("cli-failover").voters(3).start();
    let followers = c.followers();
    let (dead, live) = (followers[0], followers[1]);
    c.kill(dead);

    let servers = format!("{},{}", c.api_url(dead), c.api_url(live));
    let status = Operator::admin(&c, &servers).json("status");
    assert_eq!(
        status["this_node_id"], live,
        "answered by node {live}: {status}"
    );
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
}

/// Every resource subcommand against a real cluster, through a follower: what it
/// prints for people, what `--output json` gives scripts, and a non-zero exit with
/// the server's explanation when the server refuses.
#[test]
fn resource_subcommands_manage_users_groups_nodes_and_config() {
    let c = Cluster::builder().name("cli-resources").voters(3).start();
    let admin = Operator::admin(&c, &c.api_url(c.followers()[0]));

    // Groups and users.
    let g = admin.json("groups create auditors --permission config.read --permission users.read");
    assert_eq!(g["name"], "auditors");
    let u = admin.json(r#"users create alice --password "correct horse battery" --group viewer"#);
    let id = u["id"].as_u64().expect("an id");
    let out = admin.bcm("users list");
    assert!(out.success(), "{out}");
    let alice = rows(&out.stdout)
        .into_iter()
        .find(|r| r["NAME"] == "alice")
        .expect("alice listed");
    assert_eq!(alice["GROUPS"], "viewer", "{out}");
    let u = admin.json(&format!(
        "users update {id} --groups viewer,auditors --disable"
    ));
    assert_eq!(u["enabled"], false, "{u}");
    assert_eq!(
        u["groups"],
        serde_json::json!(["viewer", "auditors"]),
        "{u}"
    );
    let listed = admin.json("users list --enabled false");
    assert_eq!(listed["total"], 1, "{listed}");
    // The server's refusals reach the operator as a non-zero exit and a reason.
    let dup = admin.bcm(r#"users create alice --password "another long password""#);
    assert!(!dup.success(), "{dup}");
    assert!(dup.stderr.contains("already exists"), "{dup}");
    let last_admin = admin.bcm("users delete 1");
    assert!(
        !last_admin.success() && last_admin.stderr.contains("last enabled admin"),
        "{last_admin}"
    );
    let busy = admin.bcm("groups delete auditors");
    assert!(!busy.success() && busy.stderr.contains("member"), "{busy}");
    assert!(admin.bcm(&format!("users delete {id}")).success());
    assert!(admin.bcm("groups delete auditors").success());
    assert_eq!(admin.json("groups list")["total"], 3);

    // Config with compare-and-set.
    let v = admin.json("config set retention.days 30");
    let version = v["version"].as_u64().unwrap();
    assert_eq!(v["value"], 30);
    let stale = admin.bcm("config set retention.days 31 --if-version 1");
    assert!(
        !stale.success() && stale.stderr.contains("version mismatch"),
        "{stale}"
    );
    let v = admin.json(&format!(
        "config set retention.days 31 --if-version {version}"
    ));
    assert_eq!(v["value"], 31);
    assert_eq!(admin.json("config get retention.days")["value"], 31);
    let word = admin.json("config set site/name lab");
    assert_eq!(word["value"], "lab", "a bare word is a string: {word}");
    assert!(admin.bcm("config delete site/name").success());
    let gone = admin.bcm("config get site/name");
    assert!(
        !gone.success() && gone.stderr.contains("does not exist"),
        "{gone}"
    );

    // Nodes.
    let n = admin.json("nodes update 2 --label zone=a");
    assert_eq!(n["labels"]["zone"], "a", "{n}");
    let added =
        admin.json("nodes add 9 --api http://127.0.0.1:1 --rpc http://127.0.0.1:2 --role storage");
    assert_eq!(added["id"], 9);
    let listed = admin.json("nodes list --role storage");
    assert!(listed["total"].as_u64().unwrap() >= 4, "{listed}");
    let out = admin.bcm("nodes get 9");
    assert!(out.success() && out.stdout.contains("storage"), "{out}");
}

/// The catalog from the command line: a plan, a backup started from it and one ad
/// hoc, the filters, and the server's refusals as non-zero exits.
#[test]
fn catalog_subcommands_manage_plans_backups_and_restores() {
    // No backup manager: backups and restores stay pending, so the catalog's
    // rules show without any data moving.
    let c = Cluster::builder()
        .name("cli-catalog")
        .voter_roles(&["manager", "storage"])
        .start();
    let admin = Operator::admin(&c, &c.api_url(c.followers()[0]));

    let plan = admin.json(
        r#"plans create etc-daily --node 2 --path /etc --schedule "0 3 * * *" --keep-last 5"#,
    );
    let plan_id = plan["id"].as_u64().unwrap().to_string();
    assert_eq!(plan["schedule"], "0 3 * * *");
    let bad = admin.bcm("plans create x --node 2 --path /x --schedule daily");
    assert!(!bad.success() && bad.stderr.contains("schedule"), "{bad}");
    let updated = admin.json(&format!("plans update {plan_id} --no-schedule --disable"));
    assert_eq!(updated["schedule"], Value::Null, "{updated}");
    assert_eq!(updated["enabled"], false, "{updated}");
    let out = admin.bcm("plans list");
    assert!(out.success() && out.stdout.contains("etc-daily"), "{out}");

    let b = admin.json(&format!("backups start --plan {plan_id}"));
    assert_eq!(b["status"], "pending", "{b}");
    let adhoc = admin.json("backups start --node 3 --path /var/lib");
    assert_eq!(adhoc["source_node"], 3, "{adhoc}");
    assert_eq!(
        admin.json(&format!("backups list --plan {plan_id}"))["total"],
        1
    );
    assert_eq!(admin.json("backups list --status pending")["total"], 2);
    let id = b["id"].as_u64().unwrap().to_string();
    let not_yet = admin.bcm(&format!("backups restore {id} --node 1 --path /restore"));
    assert!(
        !not_yet.success() && not_yet.stderr.contains("only a succeeded backup"),
        "{not_yet}"
    );
    assert_eq!(admin.json("restores list")["total"], 0);
    assert!(admin.bcm(&format!("backups delete {id}")).success());
    let gone = admin.bcm(&format!("backups get {id}"));
    assert!(
        !gone.success() && gone.stderr.contains("does not exist"),
        "{gone}"
    );
    assert!(admin.bcm(&format!("plans delete {plan_id}")).success());
}

/// Data moving from the command line: `--wait` follows a backup and a restore to
/// their end and prints one summary line each; `files` lists what a backup holds,
/// `verify` checks its replicas; a job that fails makes the command fail.
#[test]
fn backups_and_restores_started_with_wait_end_with_a_summary_line() {
    let c = Cluster::builder().name("cli-data").voters(3).start();
    let admin = Operator::admin(&c, &c.api_url(c.followers()[0]));
    let src = c.dir().join("source");
    let made = bcm_tests::tree::make_tree(&src, 120);
    let src_s = src.to_str().unwrap();

    let out = admin.bcm(&format!("backups start --node 1 --path {src_s} --wait"));
    assert!(out.success(), "{out}");
    let line = out.stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        line.starts_with("backup 1 succeeded: ")
            && line.contains(&format!("{} files", made.files))
            && line.contains("stored after dedup")
            && line.contains("MB/s"),
        "{out}"
    );

    let files = admin.bcm(&format!("backups files 1 --path {src_s}"));
    assert!(files.success(), "{files}");
    assert!(
        files.stdout.contains(&format!("{src_s}/big.bin")),
        "{files}"
    );
    assert!(
        files.stdout.contains("-> d0/e0/f1.dat"),
        "a symlink's target: {files}"
    );

    let verify = admin.bcm("backups verify 1");
    assert!(verify.success(), "{verify}");
    assert!(verify.stdout.contains("every replica is whole"), "{verify}");

    let target = c.dir().join("restored");
    let t = target.to_str().unwrap();
    let out = admin.bcm(&format!(
        "restores start --backup 1 --node 3 --path {t} --wait"
    ));
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("restore 1 succeeded: ")
            && out.stdout.contains(&format!("to {t} on node 3")),
        "{out}"
    );
    // Again into the same, now non-empty, directory: the restore fails and so
    // does the command, saying why.
    let again = admin.bcm(&format!("backups restore 1 --node 3 --path {t} --wait"));
    assert!(!again.success(), "{again}");
    assert!(again.stderr.contains("not empty"), "{again}");
}
