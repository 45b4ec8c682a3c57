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

use std::path::PathBuf;
use std::time::Instant;

use eden_test_util::pglogical::{DB, Node, Pair};
use serde_json::{Value, json};

use crate::common::{Run, run};

/// us-east-1 (n1) and us-west-2 (n2) replicating both ways, plus the config file.
struct Setup {
    pair: Pair,
    cfg: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Setup {
    type Target = Pair;
    fn deref(&self) -> &Pair {
        &self.pair
    }
}

impl Setup {
    fn start() -> Setup {
        let pair = Pair::start_clusters();
        let (a, b) = (&pair.a, &pair.b);
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
        let setup = Setup {
            pair,
            cfg,
            _dir: dir,
        };
        // The tool creates its own table; the fixture then puts it in a replication set.
        setup.eden(&["init"]).expect_code(0);
        setup.pair.replicate();
        setup
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
    let p = Setup::start();
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
    let p = Setup::start();
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
        // (the run's own origin, dropped at the end of the run: not pglogical's, not none)
        b.sql("SELECT (pg_xact_commit_timestamp_origin(t.xmin)).roident <> 0 AND NOT EXISTS (SELECT 1 FROM pg_replication_origin ro WHERE ro.roident = (pg_xact_commit_timestamp_origin(t.xmin)).roident) FROM vault_secrets t WHERE t.id = 1"),
        "t"
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
