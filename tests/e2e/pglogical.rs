//! The real binary against real pglogical replication between two regions, both ways.
//!
//! Two throwaway clusters, each a pglogical node of `eden_vault` subscribed to the other
//! with `forward_origins := '{}'` (fixtures `fixtures/sql/pglogical_*.sql`; the library
//! twin of these tests is `eden-consistency/tests/pglogical.rs`). `check` with a config
//! whose provider is pglogical must cover exactly the replication sets' tables, find what
//! replication has not (yet) carried, and agree once it has; `fix --no-replicate` must
//! repair through the replication origin so pglogical does not send the repair back.
//!
//! pglogical must be installed (`postgresql-15-pglogical`, installed by
//! `scripts/services.sh`): without it these tests FAIL, they do not skip.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eden_test_util::{ClusterOptions, TestCluster};
use serde_json::{Value, json};

use crate::common::{Run, run};

const PGLOGICAL_SO: &str = "/usr/lib/postgresql/15/lib/pglogical.so";
const DB: &str = "eden_vault";
const WAIT: Duration = Duration::from_secs(30);

const SCHEMA_SQL: &str = include_str!("../../fixtures/sql/pglogical_schema.sql");
const SEED_SQL: &str = include_str!("../../fixtures/sql/pglogical_seed.sql");
const NODE_SQL: &str = include_str!("../../fixtures/sql/pglogical_node.sql");

struct Node {
    region: &'static str,
    node: &'static str,
    cluster: TestCluster,
}

impl Node {
    fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={DB} user=postgres",
            self.cluster.port
        )
    }

    fn sql(&self, sql: &str) -> String {
        self.sql_in(DB, sql)
    }

    /// Runs `sql`; on error panics naming the region, with the server log's tail.
    fn sql_in(&self, db: &str, sql: &str) -> String {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.cluster.psql(db, sql))) {
            Ok(out) => out.trim().to_string(),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let log = self.cluster.log();
                let lines: Vec<&str> = log.lines().collect();
                panic!(
                    "in region {} (port {}): {msg}\n--- server log (tail) ---\n{}",
                    self.region,
                    self.cluster.port,
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
        }
    }

    fn sub(&self) -> &'static str {
        if self.node == "n1" {
            "from_n2"
        } else {
            "from_n1"
        }
    }

    fn sub_status(&self) -> String {
        self.sql(&format!(
            "SELECT coalesce((SELECT status FROM pglogical.show_subscription_status() WHERE subscription_name = '{}'), 'absent')",
            self.sub()
        ))
    }

    /// Waits until the subscription replicates (fails after [`WAIT`]).
    fn wait_replicating(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let st = self.sub_status();
            if st == "replicating" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "subscription {} in {} is '{st}' after {WAIT:?}:\n{}",
                self.sub(),
                self.region,
                self.cluster.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the other node has applied everything written here so far.
    fn sent_everything(&self) {
        self.sql(&format!(
            "SET statement_timeout = '{}s'; SELECT pglogical.wait_slot_confirm_lsn(NULL, NULL)",
            WAIT.as_secs()
        ));
    }
}

fn start_cluster() -> TestCluster {
    let c = TestCluster::start(
        ClusterOptions::new()
            .logical()
            .setting("shared_preload_libraries", "'pglogical'")
            .setting("max_replication_slots", "10")
            .setting("max_wal_senders", "10")
            .setting("max_worker_processes", "16")
            .setting("wal_receiver_status_interval", "1s"),
    );
    // Some builds (this machine's PostgreSQL 15.20) only allow the logical decoding output
    // plugins listed in output_plugin_libraries; pglogical's is pglogical_output.
    let cur = c.psql("postgres", "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'), '<absent>')");
    let cur = cur.trim();
    if cur != "<absent>" && !cur.contains("pglogical_output") {
        let mut items: Vec<String> = cur
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| format!("'{s}'"))
            .collect();
        items.push("'pglogical_output'".into());
        c.psql(
            "postgres",
            &format!(
                "ALTER SYSTEM SET output_plugin_libraries = {}",
                items.join(", ")
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
                "output_plugin_libraries did not take pglogical_output"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    c
}

/// us-east-1 (n1) and us-west-2 (n2) replicating both ways, plus the config file.
struct Pair {
    a: Node,
    b: Node,
    cfg: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn start() -> Pair {
        assert!(
            Path::new(PGLOGICAL_SO).exists(),
            "pglogical is not installed ({PGLOGICAL_SO} is missing): install postgresql-15-pglogical \
             (scripts/services.sh does it in CI); these tests need real pglogical replication"
        );
        let (ca, cb) = std::thread::scope(|s| {
            let ha = s.spawn(start_cluster);
            let hb = s.spawn(start_cluster);
            (ha.join().expect("cluster a"), hb.join().expect("cluster b"))
        });
        let a = Node {
            region: "us-east-1",
            node: "n1",
            cluster: ca,
        };
        let b = Node {
            region: "us-west-2",
            node: "n2",
            cluster: cb,
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("postgresql-multi-region.yaml");
        std::fs::write(
            &cfg,
            format!(
                "global:
  replication_user: replication_user
  max_replication_lag_seconds: 0
  conflict_resolution: last_write_wins
regions:
  - name: us-east-1
    role: active
    instance: {{ host: 127.0.0.1, port: {pa}, user: postgres }}
  - name: us-west-2
    role: active
    instance: {{ host: 127.0.0.1, port: {pb}, user: postgres }}
replication:
  provider: pglogical
  node_groups:
    - name: eden_vault_group
      database: {DB}
      conflict_resolution_tables:
        - table: vault_secrets
          resolution: last_write_wins
          tracking_column: last_updated_at
        - table: tenants
          resolution: region_priority
          regions: [us-east-1, us-west-2]
",
                pa = a.cluster.port,
                pb = b.cluster.port
            ),
        )
        .unwrap();
        let pair = Pair {
            a,
            b,
            cfg,
            _dir: dir,
        };
        for n in [&pair.a, &pair.b] {
            n.sql_in("postgres", &format!("CREATE DATABASE {DB}"));
            n.sql(SCHEMA_SQL);
        }
        // The tool creates its own table; pglogical_node.sql then puts it in a replication set.
        pair.eden(&["init"]).expect_code(0);
        for n in [&pair.a, &pair.b] {
            n.sql(&NODE_SQL.replace(":NODE", n.node).replace(":DSN", &n.dsn()));
        }
        pair.a.sql(SEED_SQL);
        pair.a.sql("INSERT INTO local_cache VALUES (1, 'a-only')");
        pair.b
            .sql("INSERT INTO local_cache VALUES (1, 'b'), (2, 'b')");
        for (n, provider, copy) in [(&pair.b, &pair.a, true), (&pair.a, &pair.b, false)] {
            n.sql(&format!(
                "SELECT pglogical.create_subscription(subscription_name := '{}', provider_dsn := '{}', \
                 replication_sets := ARRAY['eden_set', 'eden_tenants'], synchronize_structure := false, \
                 synchronize_data := {copy}, forward_origins := '{{}}')",
                n.sub(),
                provider.dsn()
            ));
        }
        for n in [&pair.a, &pair.b] {
            n.wait_replicating();
            n.sql(&format!(
                "SET statement_timeout = '{}s'; SELECT pglogical.wait_for_subscription_sync_complete('{}')",
                WAIT.as_secs(),
                n.sub()
            ));
        }
        pair.catch_up();
        pair
    }

    fn catch_up(&self) {
        self.a.sent_everything();
        self.b.sent_everything();
    }

    /// Disables `n`'s subscription and waits until the provider's slot is idle.
    fn pause(&self, n: &Node) {
        n.sql(&format!(
            "SELECT pglogical.alter_subscription_disable('{}', immediate := true)",
            n.sub()
        ));
        let slot = n.sql(&format!("SELECT slot_name FROM pglogical.show_subscription_status() WHERE subscription_name = '{}'", n.sub()));
        let provider = if std::ptr::eq(n, &self.a) {
            &self.b
        } else {
            &self.a
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let active = provider.sql(&format!("SELECT coalesce((SELECT active::text FROM pg_replication_slots WHERE slot_name = '{slot}'), 'absent')"));
            if n.sub_status() == "disabled" && active == "false" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "subscription {} did not stop (slot {slot} active: {active})",
                n.sub()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn resume(&self, n: &Node) {
        n.sql(&format!(
            "SELECT pglogical.alter_subscription_enable('{}', immediate := true)",
            n.sub()
        ));
        n.wait_replicating();
    }

    /// `eden-reconcile --config CFG ARGS... --db eden_vault`.
    fn eden(&self, args: &[&str]) -> Run {
        let mut v: Vec<String> = vec!["--config".into(), self.cfg.display().to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        v.extend(["--db".to_string(), DB.to_string()]);
        run(v)
    }
}

trait ExpectCode {
    fn expect_code(self, code: i32) -> Run;
}

impl ExpectCode for Run {
    #[track_caller]
    fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// (table, status, [(key, missing_in, changed_columns)]) from a `check --format json` report.
fn tables(report: &Value) -> Vec<(String, String, Vec<Value>)> {
    report["tables"]
        .as_array()
        .unwrap_or_else(|| panic!("no tables in {report:#}"))
        .iter()
        .map(|t| {
            let diffs = t["differences"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|d| json!([d["key"], d["missing_in"], d["changed_columns"]]))
                        .collect()
                })
                .unwrap_or_default();
            (
                t["table"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
                diffs,
            )
        })
        .collect()
}

fn all_consistent() -> Vec<(String, String, Vec<Value>)> {
    vec![
        ("public.tenants".into(), "consistent".into(), vec![]),
        ("public.vault_secrets".into(), "consistent".into(), vec![]),
    ]
}

#[test]
fn pglogical_e2e_check_covers_sets_and_follows_replication() {
    let t0 = Instant::now();
    let p = Pair::start();
    let setup = t0.elapsed();
    let (a, b) = (&p.a, &p.b);

    // Exactly the replication sets' tables: not local_cache (in no set, and different in
    // the two regions), not replication_conflicts (in set eden_set).
    let r = p.eden(&["check", "--format", "json"]).expect_code(0);
    let v = r.json();
    assert_eq!(v["database"], DB);
    assert_eq!(v["regions"], json!(["us-east-1", "us-west-2"]));
    assert_eq!(v["consistent"], true);
    assert_eq!(tables(&v), all_consistent(), "{v:#}");
    assert_eq!(
        v["tables"][1]["row_counts"],
        json!({"us-east-1": 50, "us-west-2": 50}),
        "initial copy"
    );
    // The human report says the same, exit 0.
    p.eden(&["check"]).expect_code(0);

    // Replicated writes in both regions; once caught up, consistent.
    a.sql("UPDATE vault_secrets SET secret = 'rotated', last_updated_at = now() WHERE id = 1");
    b.sql("INSERT INTO tenants VALUES (11, 'from-b')");
    p.catch_up();
    assert_eq!(
        b.sql("SELECT secret FROM vault_secrets WHERE id = 1"),
        "rotated"
    );
    assert_eq!(
        tables(&p.eden(&["check", "--format", "json"]).expect_code(0).json()),
        all_consistent()
    );

    // us-west-2 stops receiving; us-east-1 writes: found.
    p.pause(b);
    a.sql("UPDATE vault_secrets SET secret = 'paused', last_updated_at = now() WHERE id = 2; DELETE FROM tenants WHERE id = 3");
    let v = p.eden(&["check", "--format", "json"]).expect_code(1).json();
    assert_eq!(v["consistent"], false);
    assert_eq!(
        tables(&v),
        vec![
            (
                "public.tenants".into(),
                "divergent".into(),
                vec![json!([{"id": 3}, ["us-east-1"], []])]
            ),
            (
                "public.vault_secrets".into(),
                "divergent".into(),
                vec![json!([{"id": 2}, [], ["last_updated_at", "secret"]])]
            ),
        ],
        "{v:#}"
    );
    // --table narrows to one table, still found.
    p.eden(&["check", "--table", "tenants"]).expect_code(1);

    // Replication resumes and catches up: consistent again.
    p.resume(b);
    p.catch_up();
    assert_eq!(
        tables(&p.eden(&["check", "--format", "json"]).expect_code(0).json()),
        all_consistent()
    );
    eprintln!(
        "[pglogical_e2e_check] setup {setup:.1?}, total {:.1?}",
        t0.elapsed()
    );
}

fn xmin(n: &Node, table: &str, id: i32) -> String {
    n.sql(&format!("SELECT xmin::text FROM {table} WHERE id = {id}"))
}

#[test]
fn pglogical_e2e_fix_no_replicate_is_not_echoed() {
    let t0 = Instant::now();
    let p = Pair::start();
    let (a, b) = (&p.a, &p.b);

    // Concurrent updates while both subscriptions are off: pglogical's default
    // apply_remote leaves each region with the other's version.
    p.pause(a);
    p.pause(b);
    a.sql("UPDATE vault_secrets SET secret = 'a-1', last_updated_at = '2026-06-01 10:00Z' WHERE id = 1");
    b.sql("UPDATE vault_secrets SET secret = 'b-1', last_updated_at = '2026-06-01 11:00Z' WHERE id = 1");
    p.resume(a);
    p.resume(b);
    p.catch_up();
    assert_eq!(
        a.sql("SELECT secret FROM vault_secrets WHERE id = 1"),
        "b-1"
    );
    assert_eq!(
        b.sql("SELECT secret FROM vault_secrets WHERE id = 1"),
        "a-1"
    );
    let v = p.eden(&["check", "--format", "json"]).expect_code(1).json();
    assert_eq!(
        tables(&v)[1],
        (
            "public.vault_secrets".into(),
            "divergent".into(),
            vec![json!([{"id": 1}, [], ["last_updated_at", "secret"]])]
        ),
        "{v:#}"
    );
    let winner_xmin = xmin(a, "vault_secrets", 1);

    // The dry run plans the update of us-west-2 and changes nothing.
    let dry = p
        .eden(&["fix", "--no-replicate", "--dry-run", "--format", "json"])
        .expect_code(1)
        .json();
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    assert_eq!(
        b.sql("SELECT secret FROM vault_secrets WHERE id = 1"),
        "a-1"
    );

    let fixed = p
        .eden(&["fix", "--no-replicate", "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(fixed["consistent"], true, "{fixed:#}");
    let t = &fixed["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.vault_secrets")
        .cloned()
        .unwrap();
    assert_eq!(t["resolution"], "last_write_wins");
    assert_eq!(t["applied"], 1, "{fixed:#}");
    let act = &t["actions"][0];
    assert_eq!(
        (
            &act["key"],
            &act["region"],
            &act["action"],
            &act["winner_region"],
            &act["decided_by"]
        ),
        (
            &json!({"id": 1}),
            &json!("us-west-2"),
            &json!("update"),
            &json!("us-east-1"),
            &json!("last_updated_at")
        )
    );

    // Everything written so far has been through replication (plus a marker that does travel).
    a.sql("INSERT INTO tenants VALUES (900, 'marker')");
    p.catch_up();
    assert_eq!(b.sql("SELECT name FROM tenants WHERE id = 900"), "marker");

    // Repaired, written under origin eden_reconcile, and not sent back: the winner's row in
    // us-east-1 was not re-applied, and the archive record stays in us-west-2 although
    // replication_conflicts is in a replication set.
    assert_eq!(
        b.sql("SELECT secret FROM vault_secrets WHERE id = 1"),
        "b-1"
    );
    assert_eq!(
        b.sql("SELECT ro.roname FROM vault_secrets t JOIN pg_replication_origin ro ON ro.roident = (pg_xact_commit_timestamp_origin(t.xmin)).roident WHERE t.id = 1"),
        "eden_reconcile"
    );
    assert_eq!(
        xmin(a, "vault_secrets", 1),
        winner_xmin,
        "the repair was echoed back to us-east-1"
    );
    // `conflicts` reads every region; `region` says where each record was read.
    let all = p
        .eden(&["conflicts", "--format", "json"])
        .expect_code(0)
        .json();
    let recs = all["conflicts"].as_array().unwrap();
    assert_eq!(
        recs.len(),
        1,
        "exactly one archive record, in us-west-2 (none travelled to us-east-1): {all:#}"
    );
    assert_eq!(
        (
            &recs[0]["region"],
            &recs[0]["local_region"],
            &recs[0]["key"],
            &recs[0]["local_row"]["secret"],
            &recs[0]["remote_row"]["secret"]
        ),
        (
            &json!("us-west-2"),
            &json!("us-west-2"),
            &json!({"id": 1}),
            &json!("a-1"),
            &json!("b-1")
        ),
        "{all:#}"
    );
    assert_eq!(
        a.sql("SELECT count(*) FROM replication_conflicts"),
        "0",
        "an archive record travelled to us-east-1"
    );
    assert_eq!(recs[0]["run_id"], fixed["run_id"]);

    p.eden(&["check"]).expect_code(0);
    eprintln!("[pglogical_e2e_fix] total {:.1?}", t0.elapsed());
}
