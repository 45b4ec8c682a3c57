//! Test harness: per-test region databases and throwaway PostgreSQL clusters.
//!
//! Every test talks to a real PostgreSQL. Two tools:
//!
//! * [`TestDbs`]: a set of databases ("regions") on the shared server
//!   (`postgres://postgres@127.0.0.1:5432/postgres`, override with `EDEN_TEST_PG_URL`).
//!   Their names derive deterministically from the test's name (`eden_t_<name>_<i>`), so
//!   leftovers of a crashed run are dropped by the next one, and tests with distinct names
//!   run in parallel (threads or processes) without touching each other. **Test names must
//!   be unique across the workspace.** The databases are dropped (`WITH (FORCE)`) when the
//!   value is dropped, unless `EDEN_TEST_KEEP=1` is set (for debugging).
//! * [`TestCluster`]: a whole separate cluster (`initdb` + `pg_ctl`, run as the OS user
//!   `postgres` when we are root) on a free port, for tests that need server settings the
//!   shared server lacks: another `TimeZone`, `wal_level=logical`, ICU locales, TLS,
//!   password authentication. Stopped (`-m immediate`) and deleted when dropped; a cluster
//!   left behind by a test process that was killed is stopped and deleted by the next
//!   [`TestCluster::start`].
//! * [`run_bin`]: runs a program (the `eden-reconcile` binary) in a hermetic environment
//!   (no `PG*` variables, no `EDEN_RECONCILE_CONFIG`, an empty `HOME`) and captures
//!   its exit code and output.
//!
//! ```no_run
//! use eden_test_util::{ClusterOptions, TestCluster, TestDbs};
//!
//! #[tokio::test]
//! async fn two_regions_differ() {
//!     let dbs = TestDbs::new("two_regions_differ", 2).await;
//!     dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)").await;
//!     dbs.exec(0, "INSERT INTO t VALUES (1, 'a')").await;
//!     let client = dbs.client(1).await;
//!     let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
//!     assert_eq!(n, 0);
//!     // CLI flags: ["--region", "r1=postgres://...", "--region", "r2=postgres://..."]
//!     let _args = dbs.region_args();
//! }
//!
//! #[test]
//! fn other_timezone() {
//!     let cluster = TestCluster::start(
//!         ClusterOptions::new().setting("timezone", "'America/New_York'"),
//!     );
//!     cluster.psql("postgres", "CREATE DATABASE app");
//!     let _url = cluster.url("app"); // postgres://postgres@127.0.0.1:<port>/app
//! }
//! ```

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub mod pglogical;
pub mod redis;

pub use tempfile::TempDir;
pub use tokio_postgres;

/// The admin URL of the shared test server.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Where PostgreSQL's server programs live.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The admin URL: `EDEN_TEST_PG_URL`, or [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var("EDEN_TEST_PG_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string())
}

/// Replaces the database of a `postgres://` URL (the query string, if any, is kept).
pub fn url_with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{host_part}/{}{query}", percent_encode_path(db))
}

fn percent_encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// 64-bit FNV-1a: a hash that is stable across builds and toolchains (database names
/// must be the same in the next run, to drop leftovers).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The database name for region `i` (1-based in the name) of test `test_name`:
/// `eden_t_<name>_<i>` (prefix from `EDEN_TEST_DB_PREFIX` when set), at most 63 bytes; a name that is not plain lower-case ASCII
/// letters, digits and `_`, or is long, is sanitized and gets a hash of the original.
pub fn db_name(test_name: &str, i: usize) -> String {
    let mut clean: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let suffix = format!("_{}", i + 1);
    // Several checkouts on one server (parallel work trees) keep apart with their own prefix.
    let prefix_owned = std::env::var("EDEN_TEST_DB_PREFIX").unwrap_or_else(|_| "eden_t_".into());
    let prefix = prefix_owned.as_str();
    // A hash of the exact name when the name was shortened or changed by sanitizing, so
    // `a-b`, `a_b` and `A_B` stay distinct.
    if prefix.len() + clean.len() + suffix.len() > 63 || clean != test_name {
        let hash = format!("{:08x}", fnv1a(test_name) as u32);
        let room = 63 - prefix.len() - suffix.len() - hash.len() - 1;
        clean.truncate(room);
        clean = format!("{clean}_{hash}");
    }
    format!("{prefix}{clean}{suffix}")
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("eden-test-util: cannot connect to {}: {e}", redact(url)));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    if let (Some(s), Some(at)) = (url.find("://"), url.rfind('@')) {
        let userinfo = &url[s + 3..at];
        if let Some(colon) = userinfo.find(':') {
            return format!("{}{}:***{}", &url[..s + 3], &userinfo[..colon], &url[at..]);
        }
    }
    url.to_string()
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A set of per-test databases on the shared server, one per region. See the crate docs.
#[derive(Debug)]
pub struct TestDbs {
    admin: String,
    names: Vec<String>,
    regions: Vec<String>,
}

impl TestDbs {
    /// Creates `regions` fresh databases for `test_name`, with regions named `r1`, `r2`, ...
    /// Leftovers of an earlier run with the same name are dropped first.
    pub async fn new(test_name: &str, regions: usize) -> TestDbs {
        let names: Vec<String> = (1..=regions).map(|i| format!("r{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        Self::new_named(test_name, &refs).await
    }

    /// Like [`TestDbs::new`], with the caller's region names (one database each).
    pub async fn new_named(test_name: &str, region_names: &[&str]) -> TestDbs {
        let admin = admin_url();
        let names: Vec<String> = (0..region_names.len())
            .map(|i| db_name(test_name, i))
            .collect();
        let client = connect(&admin).await;
        for name in &names {
            let q = quote_ident(name);
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {q} WITH (FORCE)"))
                .await
                .unwrap_or_else(|e| panic!("eden-test-util: dropping leftover {name}: {e}"));
            client
                .batch_execute(&format!(
                    "CREATE DATABASE {q} TEMPLATE template0 ENCODING 'UTF8'"
                ))
                .await
                .unwrap_or_else(|e| panic!("eden-test-util: creating {name}: {e}"));
        }
        TestDbs {
            admin,
            names,
            regions: region_names.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Number of databases (regions).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no databases.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The database name of region `i` (0-based).
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The URL of region `i`'s database (`postgres://postgres@127.0.0.1:5432/<db>`).
    pub fn url(&self, i: usize) -> String {
        url_with_db(&self.admin, &self.names[i])
    }

    /// The region names (`r1`, `r2`, ... unless given to [`TestDbs::new_named`]).
    pub fn region_names(&self) -> Vec<String> {
        self.regions.clone()
    }

    /// The region name of database `i`.
    pub fn region(&self, i: usize) -> &str {
        &self.regions[i]
    }

    /// CLI flags defining every region: `["--region", "r1=postgres://...", ...]`.
    pub fn region_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        for i in 0..self.names.len() {
            v.push("--region".to_string());
            v.push(format!("{}={}", self.regions[i], self.url(i)));
        }
        v
    }

    /// A new connection to region `i` (its connection task is spawned on the current runtime).
    pub async fn client(&self, i: usize) -> tokio_postgres::Client {
        connect(&self.url(i)).await
    }

    /// Runs `sql` (one or more statements) in region `i`; panics on error.
    pub async fn exec(&self, i: usize, sql: &str) {
        let client = self.client(i).await;
        client.batch_execute(sql).await.unwrap_or_else(|e| {
            panic!(
                "eden-test-util: in {} ({}): {}: {sql}",
                self.regions[i],
                self.names[i],
                pg_err(&e)
            )
        });
    }

    /// Runs `sql` in every region.
    pub async fn exec_all(&self, sql: &str) {
        for i in 0..self.names.len() {
            self.exec(i, sql).await;
        }
    }

    /// Runs the SQL file at `path` in region `i`.
    pub async fn load_fixture(&self, i: usize, path: &Path) {
        let sql = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "eden-test-util: cannot read fixture {}: {e}",
                path.display()
            )
        });
        self.exec(i, &sql).await;
    }

    /// Runs `sql` in region `i` and returns the first column of every row as text
    /// (`NULL` as `None`). Handy for assertions: cast in SQL (`SELECT x::text`).
    pub async fn query_texts(&self, i: usize, sql: &str) -> Vec<Option<String>> {
        let client = self.client(i).await;
        let rows = client.query(sql, &[]).await.unwrap_or_else(|e| {
            panic!(
                "eden-test-util: in {}: {}: {sql}",
                self.regions[i],
                pg_err(&e)
            )
        });
        rows.iter().map(|r| r.get::<_, Option<String>>(0)).collect()
    }
}

fn pg_err(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

impl Drop for TestDbs {
    fn drop(&mut self) {
        if std::env::var("EDEN_TEST_KEEP").is_ok_and(|v| v == "1") {
            return;
        }
        let admin = self.admin.clone();
        let names = std::mem::take(&mut self.names);
        // Drop is synchronous and may run inside a runtime: use a thread with its own.
        let handle = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(_) => return,
            };
            rt.block_on(async move {
                let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                for name in names {
                    let sql = format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(&name)
                    );
                    if let Err(e) = client.batch_execute(&sql).await {
                        eprintln!("eden-test-util: could not drop {name}: {}", pg_err(&e));
                    }
                }
            });
        });
        let _ = handle.join();
    }
}

// ---------------------------------------------------------------------------------------
// Separate clusters
// ---------------------------------------------------------------------------------------

/// How to build a [`TestCluster`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra `postgresql.conf` lines as (name, value), value written verbatim
    /// (quote strings yourself: `("timezone", "'America/New_York'")`).
    pub settings: Vec<(String, String)>,
    /// Extra `initdb` arguments, e.g. `--locale-provider=icu`, `--icu-locale=de-DE`.
    pub initdb_args: Vec<String>,
    /// `pg_hba.conf` lines placed before the defaults (first match wins).
    pub hba: Vec<String>,
    /// Password of the `postgres` user.
    pub password: Option<String>,
    /// Turn on TLS with a fresh CA and server certificate for `127.0.0.1`/`localhost`
    /// (see [`TestCluster::ca_cert_path`]).
    pub ssl: bool,
}

impl ClusterOptions {
    /// Defaults: trust authentication, no extra settings.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a `postgresql.conf` setting.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }
    /// Adds an `initdb` argument.
    pub fn initdb_arg(mut self, arg: &str) -> Self {
        self.initdb_args.push(arg.to_string());
        self
    }
    /// Adds a `pg_hba.conf` line (before the defaults).
    pub fn hba_line(mut self, line: &str) -> Self {
        self.hba.push(line.to_string());
        self
    }
    /// Sets the `postgres` user's password.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_string());
        self
    }
    /// Turns TLS on (self-made CA).
    pub fn ssl(mut self) -> Self {
        self.ssl = true;
        self
    }
    /// `wal_level=logical` and `track_commit_timestamp=on`.
    pub fn logical(self) -> Self {
        self.setting("wal_level", "logical")
            .setting("track_commit_timestamp", "on")
    }
}

/// A throwaway PostgreSQL cluster on `127.0.0.1:<port>`. See the crate docs.
#[derive(Debug)]
pub struct TestCluster {
    /// The TCP port it listens on (127.0.0.1 only).
    pub port: u16,
    /// The directory holding `data/`, `sock/`, the log and certificates; deleted on drop.
    pub dir: TempDir,
    password: Option<String>,
    ssl: bool,
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A command run as the `postgres` OS user when we are root.
fn pg_command(program: &str) -> Command {
    let path = if program.contains('/') {
        program.to_string()
    } else {
        format!("{PG_BIN}/{program}")
    };
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn run_checked(mut cmd: Command, what: &str) -> String {
    cmd.stdin(Stdio::null());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("eden-test-util: {what}: cannot run: {e}"));
    if !out.status.success() {
        panic!(
            "eden-test-util: {what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chown_postgres(path: &Path) {
    if is_root() {
        let mut c = Command::new("chown");
        c.arg("-R").arg("postgres:postgres").arg(path);
        run_checked(c, "chown");
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("eden-test-util: no free port");
    l.local_addr().expect("local addr").port()
}

impl TestCluster {
    /// initdb + start. Panics (with the server log) when the cluster cannot start.
    pub fn start(opts: ClusterOptions) -> TestCluster {
        reap_orphans();
        let dir = tempfile::Builder::new()
            .prefix("eden-cluster-")
            .tempdir()
            .expect("eden-test-util: tempdir");
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("owner.pid"), std::process::id().to_string()).expect("owner.pid");
        std::fs::create_dir(root.join("sock")).expect("sock dir");
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755));
        }
        let data = root.join("data");

        let mut initdb = pg_command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        if let Some(pw) = &opts.password {
            let pwfile = root.join("pwfile");
            std::fs::write(&pwfile, format!("{pw}\n")).expect("pwfile");
            initdb.arg(format!("--pwfile={}", pwfile.display()));
        }
        if !opts
            .initdb_args
            .iter()
            .any(|a| a.starts_with("--locale") || a.starts_with("--lc-"))
        {
            initdb.arg("--locale=C.UTF-8");
        }
        initdb.args(&opts.initdb_args);
        chown_postgres(&root);
        run_checked(initdb, "initdb");

        if opts.ssl {
            make_certs(&root, &data);
        }
        if !opts.hba.is_empty() {
            let hba_path = data.join("pg_hba.conf");
            let old = std::fs::read_to_string(&hba_path).expect("read pg_hba.conf");
            let mut new = String::from("# eden-test-util\nlocal all all trust\n");
            for l in &opts.hba {
                new.push_str(l);
                new.push('\n');
            }
            new.push_str(&old);
            std::fs::write(&hba_path, new).expect("write pg_hba.conf");
        }
        let base_conf =
            std::fs::read_to_string(data.join("postgresql.conf")).expect("read postgresql.conf");

        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut conf = base_conf.clone();
            conf.push_str("\n# eden-test-util\n");
            conf.push_str(&format!("port = {port}\nlisten_addresses = '127.0.0.1'\n"));
            conf.push_str(&format!(
                "unix_socket_directories = '{}'\n",
                root.join("sock").display()
            ));
            conf.push_str("fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n");
            conf.push_str("shared_buffers = 32MB\nmax_connections = 50\nlogging_collector = off\n");
            if opts.ssl {
                conf.push_str(
                    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
                );
            }
            for (k, v) in &opts.settings {
                conf.push_str(&format!("{k} = {v}\n"));
            }
            std::fs::write(data.join("postgresql.conf"), conf).expect("write postgresql.conf");
            chown_postgres(&root);
            let log = root.join("server.log");
            let mut start = pg_command("pg_ctl");
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]);
            start
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let ok = start.output().map(|o| o.status.success()).unwrap_or(false);
            if ok && wait_ready(port, &root) {
                return TestCluster {
                    port,
                    dir,
                    password: opts.password.clone(),
                    ssl: opts.ssl,
                };
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            let mut stop = pg_command("pg_ctl");
            stop.arg("-D").arg(&data).args(["-m", "immediate", "stop"]);
            stop.stdout(Stdio::null()).stderr(Stdio::null());
            let _ = stop.status();
            if !last_log.contains("could not bind") && !last_log.contains("Address already in use")
            {
                break;
            }
        }
        panic!("eden-test-util: cluster did not start; server log:\n{last_log}");
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>` (no password; see [`TestCluster::password`]).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port,
            percent_encode_path(db)
        )
    }

    /// The `postgres` user's password, if one was set.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The CA certificate (PEM) that signed the server certificate, when TLS is on.
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.ssl.then(|| self.dir.path().join("ca.crt"))
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs `sql` with `psql` over the cluster's unix socket (trusted), panicking on error;
    /// returns psql's unaligned, tuples-only output. Works with no async runtime.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut c = pg_command("/usr/bin/psql");
        c.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
        ])
        .arg("-h")
        .arg(self.dir.path().join("sock"))
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-d")
        .arg(db)
        .arg("-c")
        .arg(sql);
        run_checked(c, &format!("psql on port {}", self.port))
    }

    /// A client connected over TCP without TLS (trust or password auth as configured).
    pub async fn client(&self, db: &str) -> tokio_postgres::Client {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname(db);
        if let Some(pw) = &self.password {
            cfg.password(pw);
        }
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "eden-test-util: cannot connect to cluster port {}: {e}",
                    self.port
                )
            });
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

/// The folders `<tmp>/<prefix>*` whose `owner.pid` names a test process that no longer
/// exists (killed, aborted): what a dead run left behind, for the harnesses to stop and delete.
pub(crate) fn orphaned_dirs(prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .filter(|path| {
            std::fs::read_to_string(path.join("owner.pid"))
                .ok()
                .and_then(|owner| owner.trim().parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}

/// Stops and deletes clusters left behind by test processes that died without dropping
/// them.
fn reap_orphans() {
    for path in orphaned_dirs("eden-cluster-") {
        let data = path.join("data");
        if data.join("postmaster.pid").exists() {
            let mut stop = pg_command("pg_ctl");
            stop.arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"]);
            stop.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = stop.status();
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}

fn wait_ready(port: u16, root: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let st = Command::new(format!("{PG_BIN}/pg_isready"))
            .arg("-h")
            .arg(root.join("sock"))
            .arg("-p")
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if st.map(|s| s.success()).unwrap_or(false) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn make_certs(root: &Path, data: &Path) {
    let openssl = |args: &[&str], what: &str| {
        let mut c = Command::new("openssl");
        c.current_dir(root).args(args);
        run_checked(c, what);
    };
    std::fs::write(
        root.join("san.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("san.ext");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=eden-test-ca",
        ],
        "openssl CA",
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        "openssl CSR",
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "san.ext",
        ],
        "openssl sign",
    );
    for f in ["server.crt", "server.key"] {
        std::fs::copy(root.join(f), data.join(f)).expect("copy cert");
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod key");
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::env::var("EDEN_TEST_KEEP").is_ok_and(|v| v == "1") {
            eprintln!(
                "eden-test-util: keeping cluster on port {} in {}",
                self.port,
                self.dir.path().display()
            );
            let _ = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir")).keep();
        }
        let mut stop = pg_command("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"]);
        stop.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}

// ---------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------

/// What a run of a program gave.
#[derive(Debug, Clone)]
pub struct BinOutput {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl BinOutput {
    /// Standard output parsed as JSON; panics with both streams when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}); exit {:?}\nstdout:\n{}\nstderr:\n{}",
                self.code, self.stdout, self.stderr
            )
        })
    }

    /// Asserts the contract's error shape: exit 2, exactly one non-empty line on stderr,
    /// starting `eden-reconcile: `, and no panic text.
    #[track_caller]
    pub fn assert_one_line_error(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(2),
            "expected exit 2, got {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one line on stderr, got:\n{}",
            self.stderr
        );
        assert!(
            lines[0].starts_with("eden-reconcile: "),
            "stderr: {}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{}",
            self.stderr
        );
        self
    }

    /// Panics (showing both streams) unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `exe` with `args` in a hermetic environment (no `PG*` variables, no
/// `EDEN_RECONCILE_CONFIG`, `HOME` pointing at an empty directory so no `~/.pgpass` is
/// read), plus `envs`. Blocking; use from `spawn_blocking` inside async tests if needed
/// (a plain call is fine too: it only blocks the calling thread).
///
/// In the CLI crate's tests, `exe` is `env!("CARGO_BIN_EXE_eden-reconcile")`.
pub fn run_bin<I, S>(exe: impl AsRef<OsStr>, args: I, envs: &[(&str, &str)]) -> BinOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let home = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(exe.as_ref());
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let ks = k.to_string_lossy();
        if ks.starts_with("PG") || ks == "EDEN_RECONCILE_CONFIG" || ks == "RUST_BACKTRACE" {
            cmd.env_remove(&k);
        }
    }
    cmd.env("HOME", home.path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", exe.as_ref()));
    BinOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let p = std::env::var("EDEN_TEST_DB_PREFIX").unwrap_or_else(|_| "eden_t_".into());
        assert_eq!(db_name("simple", 0), format!("{p}simple_1"));
        assert!(db_name("With Space-X", 1).starts_with(&format!("{p}with_space_x_")));
        assert_ne!(db_name("a-b", 0), db_name("a_b", 0));
        assert_ne!(db_name("A_B", 0), db_name("a_b", 0));
        let long = "a".repeat(100);
        let n = db_name(&long, 0);
        assert!(n.len() <= 63, "{n}");
        assert_ne!(db_name(&long, 0), db_name(&"a".repeat(101), 0));
        assert_eq!(db_name(&long, 0), db_name(&long, 0));
    }

    proptest::proptest! {
        /// Any test name gives a valid, bounded, deterministic database name.
        #[test]
        fn db_names_are_valid(name in "\\PC{0,100}", i in 0usize..20) {
            let n = db_name(&name, i);
            proptest::prop_assert!(n.len() <= 63, "{}", n);
            proptest::prop_assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            proptest::prop_assert_eq!(n.clone(), db_name(&name, i));
            let suffix = format!("_{}", i + 1);
            proptest::prop_assert!(n.ends_with(&suffix));
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            url_with_db("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_db("postgres://u@h:1?sslmode=disable", "d"),
            "postgres://u@h:1/d?sslmode=disable"
        );
        assert_eq!(redact("postgres://u:secret@h/d"), "postgres://u:***@h/d");
    }
}
