//! Two regions replicating both ways with real pglogical, for tests.
//!
//! Two throwaway clusters (`wal_level=logical`, `shared_preload_libraries=pglogical`,
//! `track_commit_timestamp=on`), each a pglogical node of database [`DB`] built from
//! `fixtures/sql/pglogical_*.sql`, each subscribed to the other with
//! `forward_origins := '{}'` (the usual active-active setup: a change is sent on only by the
//! node where it was made). Every wait is bounded by [`WAIT`], so a broken setup fails with
//! the subscription status and the servers' log tails instead of hanging.
//!
//! pglogical must be installed (`postgresql-15-pglogical`; `scripts/services.sh` installs
//! it): without it [`Pair::start_clusters`] panics with the install command; tests never
//! pass by skipping.
//!
//! Setup is in two steps so that a test can create the tool's own table (with the library
//! or the binary) between them, before the fixture puts it in a replication set:
//!
//! ```no_run
//! use eden_test_util::pglogical::Pair;
//! let pair = Pair::start_clusters();
//! for n in pair.nodes() {
//!     n.sql("CREATE TABLE IF NOT EXISTS public.replication_conflicts (id bigserial PRIMARY KEY)");
//! }
//! pair.replicate();
//! ```

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{ClusterOptions, TestCluster};

/// Where Debian's `postgresql-15-pglogical` puts the extension's library.
pub const PGLOGICAL_SO: &str = "/usr/lib/postgresql/15/lib/pglogical.so";
/// The replicated database.
pub const DB: &str = "eden_vault";
/// Longest wait for any replication step.
pub const WAIT: Duration = Duration::from_secs(30);

const SCHEMA_SQL: &str = include_str!("../../fixtures/sql/pglogical_schema.sql");
const SEED_SQL: &str = include_str!("../../fixtures/sql/pglogical_seed.sql");
const NODE_SQL: &str = include_str!("../../fixtures/sql/pglogical_node.sql");
const SETS: &str = "ARRAY['eden_set', 'eden_tenants']";

/// One region: a cluster that is pglogical node `node`.
pub struct Node {
    /// The region's name (`us-east-1`, `us-west-2`).
    pub region: &'static str,
    /// The pglogical node's name (`n1`, `n2`).
    pub node: &'static str,
    /// The cluster.
    pub cluster: TestCluster,
}

impl Node {
    /// libpq DSN of [`DB`] on this node (pglogical's `provider_dsn`).
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={DB} user=postgres",
            self.cluster.port
        )
    }

    /// Runs `sql` in [`DB`]; on error panics naming the region, with the server log's tail.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_in(DB, sql)
    }

    /// Runs `sql` in database `db` (see [`Node::sql`]).
    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.cluster.psql(db, sql))) {
            Ok(out) => out.trim().to_string(),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "in region {} (port {}): {msg}\n--- server log (tail) ---\n{}",
                    self.region,
                    self.cluster.port,
                    self.log_tail()
                );
            }
        }
    }

    /// The last 40 lines of the server log.
    pub fn log_tail(&self) -> String {
        let log = self.cluster.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The name of this node's subscription (to the other node).
    pub fn sub(&self) -> String {
        format!("from_{}", if self.node == "n1" { "n2" } else { "n1" })
    }

    /// The subscription's status (`replicating`, `disabled`, `down`, ... or `absent`).
    pub fn sub_status(&self) -> String {
        self.sql(&format!(
            "SELECT coalesce((SELECT status FROM pglogical.show_subscription_status() WHERE subscription_name = '{}'), 'absent')",
            self.sub()
        ))
    }

    /// Waits until everything written here so far has been applied by the other node.
    pub fn sent_everything(&self) {
        self.sql(&format!(
            "SET statement_timeout = '{}s'; SELECT pglogical.wait_slot_confirm_lsn(NULL, NULL)",
            WAIT.as_secs()
        ));
    }
}

/// Fails (never skips) when pglogical is not installed.
pub fn require_pglogical() {
    assert!(
        Path::new(PGLOGICAL_SO).exists(),
        "pglogical is not installed ({PGLOGICAL_SO} is missing): these tests need real pglogical replication; \
         install it with `apt-get install -y postgresql-15-pglogical` (scripts/services.sh does this in CI)"
    );
}

/// Some PostgreSQL builds (this machine's 15.20 among them) only let a walsender load the
/// logical decoding output plugins listed in `output_plugin_libraries`; pglogical's is
/// `pglogical_output`. Where that setting exists, add it; elsewhere nothing to do.
fn allow_pglogical_output(c: &TestCluster) {
    let cur = c.psql(
        "postgres",
        "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'), '<absent>')",
    );
    let cur = cur.trim();
    if cur == "<absent>" {
        return;
    }
    let mut items: Vec<String> = cur
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if items.iter().any(|s| s == "pglogical_output") {
        return;
    }
    items.push("pglogical_output".into());
    let list: Vec<String> = items
        .iter()
        .map(|s| format!("'{}'", s.replace('\'', "''")))
        .collect();
    c.psql(
        "postgres",
        &format!(
            "ALTER SYSTEM SET output_plugin_libraries = {}",
            list.join(", ")
        ),
    );
    c.psql("postgres", "SELECT pg_reload_conf()");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .psql("postgres", "SHOW output_plugin_libraries")
        .contains("pglogical_output")
    {
        assert!(
            Instant::now() < deadline,
            "output_plugin_libraries did not take pglogical_output after a reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One cluster ready to be a pglogical node, with `extra` postgresql.conf settings.
fn start_cluster(extra: &[(&str, &str)]) -> TestCluster {
    let mut opts = ClusterOptions::new();
    for (k, v) in extra {
        opts = opts.setting(k, v);
    }
    let c = TestCluster::start(
        opts.logical()
            .setting("shared_preload_libraries", "'pglogical'")
            .setting("max_replication_slots", "10")
            .setting("max_wal_senders", "10")
            .setting("max_worker_processes", "16")
            .setting("wal_receiver_status_interval", "1s")
            .setting("wal_sender_timeout", "30s"),
    );
    allow_pglogical_output(&c);
    c
}

/// Two regions: `a` is us-east-1 (node n1), `b` us-west-2 (n2).
pub struct Pair {
    /// us-east-1, node n1.
    pub a: Node,
    /// us-west-2, node n2.
    pub b: Node,
    /// When setup began.
    pub started: Instant,
}

impl Pair {
    /// Starts both clusters (in parallel) and creates [`DB`] with the fixture's schema in
    /// each; no replication yet (see [`Pair::replicate`]).
    pub fn start_clusters() -> Pair {
        Pair::start_clusters_with(&[])
    }

    /// [`Pair::start_clusters`] with extra `postgresql.conf` settings in both clusters
    /// (values written verbatim), e.g. `("log_destination", "'csvlog'")`.
    pub fn start_clusters_with(extra: &[(&str, &str)]) -> Pair {
        require_pglogical();
        let started = Instant::now();
        let (ca, cb) = std::thread::scope(|s| {
            let ha = s.spawn(|| start_cluster(extra));
            let hb = s.spawn(|| start_cluster(extra));
            (ha.join().expect("cluster a"), hb.join().expect("cluster b"))
        });
        let pair = Pair {
            a: Node {
                region: "us-east-1",
                node: "n1",
                cluster: ca,
            },
            b: Node {
                region: "us-west-2",
                node: "n2",
                cluster: cb,
            },
            started,
        };
        for n in pair.nodes() {
            n.sql_in("postgres", &format!("CREATE DATABASE {DB}"));
            n.sql(SCHEMA_SQL);
        }
        pair
    }

    /// Makes both pglogical nodes and replication sets, seeds region a (plus rows of the
    /// unreplicated `local_cache` that differ on purpose), subscribes each node to the other
    /// (b copies a's seed data) and waits until both replicate and the copy is done.
    pub fn replicate(&self) {
        self.replicate_with_b_delay(None);
    }

    /// [`Pair::replicate`], with region b applying a's changes `delay` late (pglogical's
    /// `apply_delay`, e.g. `"3 seconds"`): a real replica running behind.
    pub fn replicate_with_b_delay(&self, delay: Option<&str>) {
        for n in self.nodes() {
            n.sql(&NODE_SQL.replace(":NODE", n.node).replace(":DSN", &n.dsn()));
        }
        self.a.sql(SEED_SQL);
        self.a.sql("INSERT INTO local_cache VALUES (1, 'a-only')");
        self.b
            .sql("INSERT INTO local_cache VALUES (1, 'b'), (2, 'b')");
        for (n, provider, copy) in [(&self.b, &self.a, true), (&self.a, &self.b, false)] {
            let delay = match delay {
                Some(d) if copy => format!(", apply_delay := interval '{d}'"),
                _ => String::new(),
            };
            n.sql(&format!(
                "SELECT pglogical.create_subscription(subscription_name := '{}', provider_dsn := '{}', \
                 replication_sets := {SETS}, synchronize_structure := false, synchronize_data := {copy}, \
                 forward_origins := '{{}}'{delay})",
                n.sub(),
                provider.dsn()
            ));
        }
        for n in self.nodes() {
            self.wait_replicating(n);
            n.sql(&format!(
                "SET statement_timeout = '{}s'; SELECT pglogical.wait_for_subscription_sync_complete('{}')",
                WAIT.as_secs(),
                n.sub()
            ));
        }
        self.catch_up();
    }

    /// Both regions.
    pub fn nodes(&self) -> [&Node; 2] {
        [&self.a, &self.b]
    }

    /// The node other than `n`.
    pub fn other(&self, n: &Node) -> &Node {
        if std::ptr::eq(n, &self.a) {
            &self.b
        } else {
            &self.a
        }
    }

    /// Waits until `n`'s subscription is `replicating` (fails after [`WAIT`], showing both
    /// servers' log tails).
    pub fn wait_replicating(&self, n: &Node) {
        let deadline = Instant::now() + WAIT;
        loop {
            let st = n.sub_status();
            if st == "replicating" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "subscription {} in region {} is '{st}', not 'replicating', after {WAIT:?}\n--- {} log ---\n{}\n--- {} log ---\n{}",
                n.sub(),
                n.region,
                self.a.region,
                self.a.log_tail(),
                self.b.region,
                self.b.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Both directions caught up.
    pub fn catch_up(&self) {
        self.a.sent_everything();
        self.b.sent_everything();
    }

    /// Disables `n`'s subscription (the other region's changes stop reaching `n`) and waits
    /// until the provider's slot is no longer in use.
    pub fn pause(&self, n: &Node) {
        n.sql(&format!(
            "SELECT pglogical.alter_subscription_disable('{}', immediate := true)",
            n.sub()
        ));
        let slot = n.sql(&format!(
            "SELECT slot_name FROM pglogical.show_subscription_status() WHERE subscription_name = '{}'",
            n.sub()
        ));
        let provider = self.other(n);
        let deadline = Instant::now() + WAIT;
        loop {
            let st = n.sub_status();
            let active = provider.sql(&format!(
                "SELECT coalesce((SELECT active::text FROM pg_replication_slots WHERE slot_name = '{slot}'), 'absent')"
            ));
            if st == "disabled" && active == "false" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "subscription {} did not stop: status {st}, slot {slot} active {active}",
                n.sub()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Re-enables `n`'s subscription and waits until it replicates.
    pub fn resume(&self, n: &Node) {
        n.sql(&format!(
            "SELECT pglogical.alter_subscription_enable('{}', immediate := true)",
            n.sub()
        ));
        self.wait_replicating(n);
    }
}
