//! Real pglogical logical replication between two regions, both ways (library level).
//!
//! Two throwaway clusters (`wal_level=logical`, `shared_preload_libraries=pglogical`,
//! `track_commit_timestamp=on`), each a pglogical node of database `eden_vault`, each
//! subscribed to the other with `forward_origins := '{}'` (the usual active-active setup:
//! a change is sent on only by the node where it was made). The fixtures are
//! `fixtures/sql/pglogical_*.sql`.
//!
//! What is proven against the real replication:
//! * `check` with `replication.provider: pglogical` covers exactly the tables of the
//!   replication sets (never `replication_conflicts`, even when it is in a set, nor
//!   tables outside the sets), and without that provider every user table.
//! * After replicated writes, once caught up, the regions agree (exit 0); writes made
//!   while a subscription is disabled are found (exit 1) and vanish once it is re-enabled.
//! * Real divergence (pglogical's default `apply_remote` swaps two concurrent updates;
//!   a write under another replication origin is not sent on) is found, and
//!   `fix` with `no_replicate` repairs it through the replication origin `eden_reconcile`:
//!   the repair is not sent back (the winners' rows are not re-applied, the archive records
//!   in `replication_conflicts`, which is in a replication set, stay in the region that
//!   wrote them), while the same fix without `no_replicate` is echoed (control).
//!
//! pglogical must be installed (`postgresql-15-pglogical`; `scripts/services.sh` installs
//! it): without it these tests FAIL, they do not skip.

use std::time::{Duration, Instant};

use eden_consistency::Config;
use eden_consistency::TableName;
use eden_consistency::conflicts;
use eden_consistency::{ApplyOptions, apply_plan};
use eden_consistency::{CheckOptions, Checker};
use eden_consistency::{CheckReport, TableStatus};
use eden_consistency::{FixOptions, plan_fix_checked};
use eden_test_util::pglogical::{DB, Node, Pair};
use serde_json::json;

/// Both regions replicating, with `replication_conflicts` created as `eden-reconcile init`
/// does, before the fixture puts it in a replication set.
async fn start_pair(test: &str) -> Pair {
    let pair = Pair::start_clusters();
    for n in pair.nodes() {
        let client = n.cluster.client(DB).await;
        conflicts::init(&client, n.region, &conflicts::table_name(None))
            .await
            .expect("create replication_conflicts");
    }
    pair.replicate();
    eprintln!(
        "[{test}] pglogical pair replicating after {:.1?}",
        pair.started.elapsed()
    );
    pair
}

/// A config as operators write it, plus `user: postgres` (trust auth).
fn config(p: &Pair, provider: Option<&str>) -> Config {
    let provider = provider
        .map(|p| format!("  provider: {p}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "global:\n  max_replication_lag_seconds: 0\n  conflict_resolution: last_write_wins\n\
         regions:\n\
         \x20 - name: {ra}\n    role: active\n    instance: {{ host: 127.0.0.1, port: {pa}, user: postgres }}\n\
         \x20 - name: {rb}\n    role: active\n    instance: {{ host: 127.0.0.1, port: {pb}, user: postgres }}\n\
         replication:\n{provider}\
         \x20 node_groups:\n\
         \x20   - name: eden_vault_group\n      database: {DB}\n      conflict_resolution_tables:\n\
         \x20       - table: vault_secrets\n          resolution: last_write_wins\n          tracking_column: last_updated_at\n\
         \x20       - table: tenants\n          resolution: region_priority\n          regions: [{ra}, {rb}]\n",
        ra = p.a.region,
        rb = p.b.region,
        pa = p.a.cluster.port,
        pb = p.b.cluster.port,
    );
    Config::from_yaml_str(&yaml, "pglogical-test.yaml")
        .unwrap_or_else(|e| panic!("test config: {e}\n{yaml}"))
}

async fn connect(p: &Pair) -> Checker {
    Checker::connect(config(p, Some("pglogical")), DB)
        .await
        .expect("connect both regions")
}

async fn check(p: &Pair) -> CheckReport {
    connect(p)
        .await
        .run(&CheckOptions::default())
        .await
        .expect("check runs")
}

/// A write that pglogical (with `forward_origins = '{}'`) does not send on: made in a
/// session whose replication origin is set, like an apply worker's.
fn write_under_foreign_origin(n: &Node, sql: &str) {
    n.sql(&format!(
        "SELECT pg_replication_origin_create('eden_test_drift') \
           WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = 'eden_test_drift'); \
         SELECT pg_replication_origin_session_setup('eden_test_drift'); {sql}"
    ));
}

/// (table, status, [(key, missing_in, changed_columns)]) per table, for compact asserts.
type Summary = Vec<(
    String,
    TableStatus,
    Vec<(serde_json::Value, Vec<String>, Vec<String>)>,
)>;

fn summary(r: &CheckReport) -> Summary {
    r.tables
        .iter()
        .map(|t| {
            let d = t
                .differences
                .iter()
                .map(|d| {
                    (
                        serde_json::Value::Object(d.key.clone()),
                        d.missing_in.clone(),
                        d.changed_columns.clone(),
                    )
                })
                .collect();
            (t.table.clone(), t.status, d)
        })
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn consistent_summary() -> Summary {
    vec![
        ("public.tenants".into(), TableStatus::Consistent, vec![]),
        (
            "public.vault_secrets".into(),
            TableStatus::Consistent,
            vec![],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pglogical_check_covers_the_replication_sets_and_follows_replication() {
    let p = start_pair("pglogical_check").await;
    let (a, b) = (&p.a, &p.b);
    let t0 = Instant::now();

    // (1) Which tables: exactly the replication sets' tables. replication_conflicts is in
    // set eden_set and still never covered; local_cache (in no set) is not covered.
    let checker = connect(&p).await;
    let tables = checker.tables(&CheckOptions::default()).await.unwrap();
    assert_eq!(
        tables,
        vec![
            TableName::new("public", "tenants"),
            TableName::new("public", "vault_secrets")
        ]
    );
    // Control: without provider pglogical every user table is covered (still not the
    // tool's own table nor pglogical's catalog).
    let plain = Checker::connect(config(&p, None), DB).await.unwrap();
    let all = plain.tables(&CheckOptions::default()).await.unwrap();
    assert_eq!(
        all,
        vec![
            TableName::new("public", "local_cache"),
            TableName::new("public", "tenants"),
            TableName::new("public", "vault_secrets")
        ]
    );
    assert_eq!(a.sql("SELECT count(*) FROM local_cache"), "1");
    assert_eq!(b.sql("SELECT count(*) FROM local_cache"), "2");

    // After the initial copy the regions agree, although local_cache differs.
    let r = checker.run(&CheckOptions::default()).await.unwrap();
    assert_eq!(summary(&r), consistent_summary(), "{:#}", r.to_json());
    assert_eq!(r.exit_code(), 0);
    let vs = r
        .tables
        .iter()
        .find(|t| t.table == "public.vault_secrets")
        .unwrap();
    assert_eq!(
        vs.row_counts.get("us-west-2"),
        Some(&50),
        "initial copy reached us-west-2"
    );

    // (2) Replicated writes in both regions: once caught up, they agree.
    a.sql("UPDATE vault_secrets SET secret = 'rotated-in-a', last_updated_at = now() WHERE id = 1");
    b.sql(
        "INSERT INTO tenants VALUES (11, 'tenant-from-b'); DELETE FROM vault_secrets WHERE id = 50",
    );
    p.catch_up();
    assert_eq!(
        b.sql("SELECT secret FROM vault_secrets WHERE id = 1"),
        "rotated-in-a"
    );
    assert_eq!(
        a.sql("SELECT name FROM tenants WHERE id = 11"),
        "tenant-from-b"
    );
    assert_eq!(
        a.sql("SELECT count(*) FROM vault_secrets WHERE id = 50"),
        "0"
    );
    let r = check(&p).await;
    assert_eq!(summary(&r), consistent_summary(), "{:#}", r.to_json());
    assert_eq!(r.exit_code(), 0);

    // (3) us-west-2 stops receiving us-east-1's changes; both regions write.
    p.pause(b);
    a.sql(
        "UPDATE vault_secrets SET secret = 'while-paused', last_updated_at = now() WHERE id = 2; \
         DELETE FROM vault_secrets WHERE id = 3; INSERT INTO tenants VALUES (12, 'paused-a')",
    );
    b.sql("UPDATE tenants SET name = 'renamed-in-b' WHERE id = 1");
    b.sent_everything(); // us-west-2 -> us-east-1 still flows
    assert_eq!(
        a.sql("SELECT name FROM tenants WHERE id = 1"),
        "renamed-in-b"
    );
    let r = check(&p).await;
    assert_eq!(
        summary(&r),
        vec![
            (
                "public.tenants".into(),
                TableStatus::Divergent,
                vec![(json!({"id": 12}), strs(&["us-west-2"]), vec![])]
            ),
            (
                "public.vault_secrets".into(),
                TableStatus::Divergent,
                vec![
                    (
                        json!({"id": 2}),
                        vec![],
                        strs(&["last_updated_at", "secret"])
                    ),
                    (json!({"id": 3}), strs(&["us-east-1"]), vec![]),
                ]
            ),
        ],
        "{:#}",
        r.to_json()
    );
    assert_eq!(r.exit_code(), 1);
    // With a lag window (max_replication_lag_seconds), these fresh differences are
    // replication lag: rechecked, still differing, listed in flight, not divergent.
    let lagged = CheckOptions {
        lag_window: Some(Duration::from_secs(300)),
        recheck_pause: Some(Duration::from_millis(200)),
        ..CheckOptions::default()
    };
    let r = connect(&p).await.run(&lagged).await.unwrap();
    let flagged: Vec<(String, serde_json::Value, bool)> = r
        .tables
        .iter()
        .flat_map(|t| {
            t.differences.iter().map(|d| {
                (
                    t.table.clone(),
                    serde_json::Value::Object(d.key.clone()),
                    d.in_flight,
                )
            })
        })
        .collect();
    assert_eq!(
        flagged,
        vec![
            ("public.tenants".into(), json!({"id": 12}), true),
            ("public.vault_secrets".into(), json!({"id": 2}), true),
            ("public.vault_secrets".into(), json!({"id": 3}), true),
        ],
        "{:#}",
        r.to_json()
    );
    assert_eq!(r.in_flight_count, 3, "{:#}", r.to_json());
    assert!(
        r.consistent,
        "in-flight differences alone do not make a table divergent: {:#}",
        r.to_json()
    );

    // Re-enabled and caught up: the drift was only lag, and is gone.
    p.resume(b);
    p.catch_up();
    let r = check(&p).await;
    assert_eq!(summary(&r), consistent_summary(), "{:#}", r.to_json());
    assert_eq!(r.exit_code(), 0);
    assert_eq!(
        b.sql("SELECT secret FROM vault_secrets WHERE id = 2"),
        "while-paused"
    );
    eprintln!(
        "[pglogical_check] scenario {:.1?}, total {:.1?}",
        t0.elapsed(),
        p.started.elapsed()
    );
}

/// `xmin` of a row (changes whenever the row is written, even with identical values).
fn xmin(n: &Node, table: &str, id: i32) -> String {
    let x = n.sql(&format!("SELECT xmin::text FROM {table} WHERE id = {id}"));
    assert!(!x.is_empty(), "row {id} of {table} missing in {}", n.region);
    x
}

/// The name of the replication origin that committed a row's current version ('' for a
/// local write without origin; `eden_reconcile` for an origin that no longer exists: the
/// tool's per-run origins are dropped at the end of the run, pglogical's stay).
fn commit_origin(n: &Node, table: &str, id: i32) -> String {
    n.sql(&format!(
        "SELECT coalesce((SELECT ro.roname FROM pg_replication_origin ro \
           WHERE ro.roident = (pg_xact_commit_timestamp_origin(t.xmin)).roident), \
           CASE WHEN (pg_xact_commit_timestamp_origin(t.xmin)).roident <> 0 THEN 'eden_reconcile' END, '') \
         FROM {table} t WHERE t.id = {id}"
    ))
}

/// Archive records held in a region: "local_region|table|key|conflict_type|winner", sorted.
fn archive(n: &Node, run_id: &str) -> Vec<String> {
    let out = n.sql(&format!(
        "SELECT concat_ws('|', local_region, table_name, key::text, conflict_type, winner_region) \
         FROM replication_conflicts WHERE run_id = '{}'",
        run_id.replace('\'', "''")
    ));
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

async fn fix(p: &Pair, no_replicate: bool) -> eden_consistency::FixReport {
    let checker = connect(p).await;
    let (report, plan) =
        plan_fix_checked(&checker, &CheckOptions::default(), &FixOptions::default())
            .await
            .expect("plan fix");
    assert_eq!(
        report.exit_code(),
        1,
        "fix found no differences: {:#}",
        report.to_json()
    );
    let opts = ApplyOptions {
        no_replicate,
        progress: None,
        ..ApplyOptions::default()
    };
    apply_plan(checker.regions(), &plan, &opts)
        .await
        .expect("apply fix")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pglogical_fix_no_replicate_repairs_without_echo() {
    let p = start_pair("pglogical_fix").await;
    let (a, b) = (&p.a, &p.b);
    let t0 = Instant::now();

    // Real divergence 1: concurrent updates while both subscriptions are off. pglogical's
    // default conflict resolution (apply_remote) applies the other side's version in each
    // region: once caught up the two regions hold each other's version.
    assert_eq!(a.sql("SHOW pglogical.conflict_resolution"), "apply_remote");
    p.pause(a);
    p.pause(b);
    a.sql(
        "UPDATE vault_secrets SET secret = 'a-1', last_updated_at = '2026-06-01 10:00Z' WHERE id = 1; \
         UPDATE vault_secrets SET secret = 'a-2', last_updated_at = '2026-06-01 12:00Z' WHERE id = 2",
    );
    b.sql(
        "UPDATE vault_secrets SET secret = 'b-1', last_updated_at = '2026-06-01 11:00Z' WHERE id = 1; \
         UPDATE vault_secrets SET secret = 'b-2', last_updated_at = '2026-06-01 09:00Z' WHERE id = 2",
    );
    p.resume(a);
    p.resume(b);
    p.catch_up();
    assert_eq!(
        a.sql("SELECT string_agg(secret, ',' ORDER BY id) FROM vault_secrets WHERE id IN (1, 2)"),
        "b-1,b-2"
    );
    assert_eq!(
        b.sql("SELECT string_agg(secret, ',' ORDER BY id) FROM vault_secrets WHERE id IN (1, 2)"),
        "a-1,a-2"
    );

    // Real divergence 2: writes under another replication origin are not sent on
    // (forward_origins = '{}'): the mechanism --no-replicate relies on.
    write_under_foreign_origin(
        a,
        "INSERT INTO vault_secrets VALUES (100, 'origin-only-a', '2026-06-01 08:00Z')",
    );
    write_under_foreign_origin(b, "INSERT INTO tenants VALUES (100, 'origin-only-b')");
    p.catch_up();
    assert_eq!(
        b.sql("SELECT count(*) FROM vault_secrets WHERE id = 100"),
        "0",
        "a write under an origin was forwarded"
    );
    assert_eq!(
        a.sql("SELECT count(*) FROM tenants WHERE id = 100"),
        "0",
        "a write under an origin was forwarded"
    );

    let r = check(&p).await;
    assert_eq!(
        summary(&r),
        vec![
            (
                "public.tenants".into(),
                TableStatus::Divergent,
                vec![(json!({"id": 100}), strs(&["us-east-1"]), vec![])]
            ),
            (
                "public.vault_secrets".into(),
                TableStatus::Divergent,
                vec![
                    (
                        json!({"id": 1}),
                        vec![],
                        strs(&["last_updated_at", "secret"])
                    ),
                    (
                        json!({"id": 2}),
                        vec![],
                        strs(&["last_updated_at", "secret"])
                    ),
                    (json!({"id": 100}), strs(&["us-west-2"]), vec![]),
                ]
            ),
        ],
        "{:#}",
        r.to_json()
    );
    assert_eq!(r.exit_code(), 1);

    // The winners' rows: a fix that echoed would re-apply them (new xmin).
    let winners_before: Vec<(&Node, &str, i32, String, String)> = [
        (a, "vault_secrets", 1),
        (a, "vault_secrets", 100),
        (b, "vault_secrets", 2),
        (b, "tenants", 100),
    ]
    .into_iter()
    .map(|(n, t, id)| (n, t, id, xmin(n, t, id), commit_origin(n, t, id)))
    .collect();
    // Rows that arrived through pglogical carry its subscription's origin; the
    // origin-only rows carry the test's.
    assert!(
        winners_before[0].4.starts_with("pgl_"),
        "{}",
        winners_before[0].4
    );
    assert_eq!(winners_before[1].4, "eden_test_drift");

    // (4) fix with no_replicate: each region repaired directly, under origin eden_reconcile.
    let t_fix = Instant::now();
    let rep = fix(&p, true).await;
    let fix_time = t_fix.elapsed();
    assert!(rep.consistent, "{rep:#?}");
    let mut actions: Vec<String> = rep
        .tables
        .iter()
        .flat_map(|t| {
            t.actions.iter().map(move |x| {
                format!(
                    "{}|{}|{}|{:?}|{}",
                    x.region,
                    t.table,
                    serde_json::Value::Object(x.key.clone()),
                    x.action,
                    x.winner_region.clone().unwrap_or_default()
                )
            })
        })
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        vec![
            "us-east-1|public.tenants|{\"id\":100}|Insert|us-west-2",
            "us-east-1|public.vault_secrets|{\"id\":2}|Update|us-west-2",
            "us-west-2|public.vault_secrets|{\"id\":100}|Insert|us-east-1",
            "us-west-2|public.vault_secrets|{\"id\":1}|Update|us-east-1",
        ],
        "{rep:#?}"
    );
    assert_eq!(rep.applied(), 4, "{rep:#?}");

    // Positive control: ordinary writes made after the fix do travel, and once they have
    // arrived everything committed before them (the fix) has been through replication.
    a.sql("INSERT INTO tenants VALUES (900, 'marker-from-a')");
    b.sql("INSERT INTO tenants VALUES (901, 'marker-from-b')");
    p.catch_up();
    assert_eq!(
        b.sql("SELECT name FROM tenants WHERE id = 900"),
        "marker-from-a"
    );
    assert_eq!(
        a.sql("SELECT name FROM tenants WHERE id = 901"),
        "marker-from-b"
    );

    // The repair is right in both regions...
    for n in p.nodes() {
        assert_eq!(
            n.sql("SELECT string_agg(id || '=' || secret || '@' || to_char(last_updated_at AT TIME ZONE 'UTC', 'HH24:MI'), ',' ORDER BY id) FROM vault_secrets WHERE id IN (1, 2, 100)"),
            "1=b-1@11:00,2=a-2@12:00,100=origin-only-a@08:00",
            "region {}",
            n.region
        );
        assert_eq!(
            n.sql("SELECT name FROM tenants WHERE id = 100"),
            "origin-only-b",
            "region {}",
            n.region
        );
    }
    // ... written under the replication origin ...
    assert_eq!(commit_origin(b, "vault_secrets", 1), "eden_reconcile");
    assert_eq!(commit_origin(b, "vault_secrets", 100), "eden_reconcile");
    assert_eq!(commit_origin(a, "vault_secrets", 2), "eden_reconcile");
    assert_eq!(commit_origin(a, "tenants", 100), "eden_reconcile");
    // ... and not sent back: the winners' rows were not re-applied ...
    for (n, table, id, xmin_before, origin_before) in &winners_before {
        assert_eq!(
            &xmin(n, table, *id),
            xmin_before,
            "{table} {id} in {} was re-applied: the repair echoed",
            n.region
        );
        assert_eq!(
            &commit_origin(n, table, *id),
            origin_before,
            "{table} {id} in {}",
            n.region
        );
    }
    // ... and the archive records (replication_conflicts is in replication set eden_set)
    // stay in the region that wrote them.
    let run = &rep.run_id;
    assert_eq!(
        archive(a, run),
        vec![
            "us-east-1|public.tenants|{\"id\": 100}|missing_row|us-west-2",
            "us-east-1|public.vault_secrets|{\"id\": 2}|update_differs|us-west-2",
        ]
    );
    assert_eq!(
        archive(b, run),
        vec![
            "us-west-2|public.vault_secrets|{\"id\": 100}|missing_row|us-east-1",
            "us-west-2|public.vault_secrets|{\"id\": 1}|update_differs|us-east-1",
        ]
    );
    let r = check(&p).await;
    assert_eq!(summary(&r), consistent_summary(), "{:#}", r.to_json());
    assert_eq!(r.exit_code(), 0);
    let t_no_replicate = t0.elapsed();

    // Control: the same kind of repair WITHOUT no_replicate is sent back by pglogical, so
    // the observables above do detect an echo.
    p.pause(a);
    p.pause(b);
    a.sql("UPDATE vault_secrets SET secret = 'ctl-a', last_updated_at = '2026-06-02 10:00Z' WHERE id = 3");
    b.sql("UPDATE vault_secrets SET secret = 'ctl-b', last_updated_at = '2026-06-02 11:00Z' WHERE id = 3");
    p.resume(a);
    p.resume(b);
    p.catch_up();
    assert_eq!(
        a.sql("SELECT secret FROM vault_secrets WHERE id = 3"),
        "ctl-b"
    );
    assert_eq!(
        b.sql("SELECT secret FROM vault_secrets WHERE id = 3"),
        "ctl-a"
    );
    let winner_xmin = xmin(a, "vault_secrets", 3);
    let rep = fix(&p, false).await;
    assert!(rep.consistent, "{rep:#?}");
    assert_eq!(rep.applied(), 1, "{rep:#?}");
    p.catch_up();
    assert_ne!(
        xmin(a, "vault_secrets", 3),
        winner_xmin,
        "control: the repair in us-west-2 was expected to be re-applied in us-east-1"
    );
    assert_eq!(
        archive(a, &rep.run_id),
        vec!["us-west-2|public.vault_secrets|{\"id\": 3}|update_differs|us-east-1"],
        "control: us-west-2's archive record was expected to arrive in us-east-1"
    );
    // It does not loop further: us-east-1 does not send the applied change on again.
    assert_eq!(archive(b, &rep.run_id).len(), 1);
    let r = check(&p).await;
    assert_eq!(summary(&r), consistent_summary(), "{:#}", r.to_json());
    eprintln!(
        "[pglogical_fix] fix {:.1?}; scenario with --no-replicate {:.1?}; with control {:.1?}; total {:.1?}",
        fix_time,
        t_no_replicate,
        t0.elapsed(),
        p.started.elapsed()
    );
}
