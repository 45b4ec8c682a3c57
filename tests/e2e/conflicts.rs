//! `eden-reconcile conflicts`: listing replication_conflicts from every region.

use eden_consistency::conflicts::{self, ConflictRecord};
use eden_test_util::TestDbs;
use serde_json::json;

use crate::common::run;

fn rec(id: i64, local: &str, resolved: bool, table: &str) -> ConflictRecord {
    ConflictRecord {
        table_name: table.into(),
        key: json!({ "id": id }),
        conflict_type: "update_differs".into(),
        local_region: local.into(),
        remote_region: Some("r1".into()),
        local_row: Some(json!({ "id": id, "v": "here" })),
        remote_row: Some(json!({ "id": id, "v": "winner" })),
        resolution: Some("last_write_wins".into()),
        winner_region: Some("r1".into()),
        decided_by: Some("last_updated_at".into()),
        resolved,
        run_id: "run-e2e".into(),
        ..Default::default()
    }
}

/// Two regions with records: r1 holds ids 1 (2 days old, resolved) and 2 (unresolved, now);
/// r2 holds id 3 (1 hour old, unresolved) on another table.
async fn setup(name: &str) -> TestDbs {
    let dbs = TestDbs::new(name, 2).await;
    let t = conflicts::table_name(None);
    let c1 = dbs.client(0).await;
    let c2 = dbs.client(1).await;
    conflicts::init(&c1, "r1", &t).await.unwrap();
    conflicts::init(&c2, "r2", &t).await.unwrap();
    conflicts::insert_records(&c1, &t, &[rec(1, "r1", true, "public.vault_secrets")])
        .await
        .unwrap();
    dbs.exec(
        0,
        "UPDATE replication_conflicts SET created_at = now() - interval '2 days'",
    )
    .await;
    conflicts::insert_records(&c1, &t, &[rec(2, "r1", false, "public.vault_secrets")])
        .await
        .unwrap();
    conflicts::insert_records(&c2, &t, &[rec(3, "r2", false, "public.tenants")])
        .await
        .unwrap();
    dbs.exec(
        1,
        "UPDATE replication_conflicts SET created_at = now() - interval '1 hour'",
    )
    .await;
    dbs
}

fn list(dbs: &TestDbs, extra: &[&str]) -> crate::common::Run {
    let mut a: Vec<String> = vec!["conflicts".into(), "--db".into(), "eden_vault".into()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(dbs.region_args());
    run(&a)
}

fn ids(v: &serde_json::Value) -> Vec<(String, i64)> {
    v["conflicts"]
        .as_array()
        .unwrap_or_else(|| panic!("no conflicts array: {v}"))
        .iter()
        .map(|c| {
            (
                c["region"].as_str().unwrap().to_string(),
                c["key"]["id"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn json_lists_every_region_newest_first() {
    let dbs = setup("e2e_conflicts_json").await;
    let r = list(&dbs, &["--format", "json"]);
    assert_eq!(
        r.code,
        Some(0),
        "unresolved records do not change the exit code\n{}",
        r.stderr
    );
    let v = r.json();
    assert_eq!(
        ids(&v),
        vec![("r1".into(), 2), ("r2".into(), 3), ("r1".into(), 1)]
    );
    let first = v["conflicts"][0].as_object().unwrap();
    for k in [
        "region",
        "id",
        "created_at",
        "table_name",
        "key",
        "conflict_type",
        "local_region",
        "remote_region",
        "local_row",
        "remote_row",
        "resolution",
        "winner_region",
        "decided_by",
        "resolved_at",
        "run_id",
    ] {
        assert!(first.contains_key(k), "{k} missing: {first:?}");
    }
    assert_eq!(first["table_name"], json!("public.vault_secrets"));
    assert_eq!(first["local_row"], json!({"id": 2, "v": "here"}));
    assert_eq!(first["run_id"], json!("run-e2e"));
    assert!(first["resolved_at"].is_null());
    assert!(v["conflicts"][2]["resolved_at"].is_string());
    // Global options after the subcommand too.
    let mut a: Vec<String> = vec![
        "--format".into(),
        "json".into(),
        "conflicts".into(),
        "--db".into(),
        "eden_vault".into(),
    ];
    a.extend(dbs.region_args());
    assert_eq!(ids(&run(&a).json()), ids(&v));
}

#[tokio::test]
async fn filters() {
    let dbs = setup("e2e_conflicts_filters").await;
    let j = |extra: &[&str]| {
        let mut e = vec!["--format", "json"];
        e.extend_from_slice(extra);
        let r = list(&dbs, &e);
        assert_eq!(r.code, Some(0), "{extra:?}: {}", r.stderr);
        ids(&r.json())
    };
    assert_eq!(j(&["--in", "r2"]), vec![("r2".into(), 3)]);
    assert_eq!(j(&["--in", "r1"]), vec![("r1".into(), 2), ("r1".into(), 1)]);
    assert_eq!(j(&["--table", "tenants"]), vec![("r2".into(), 3)]);
    assert_eq!(
        j(&["--table", "public.vault_secrets"]),
        vec![("r1".into(), 2), ("r1".into(), 1)]
    );
    assert_eq!(
        j(&["--unresolved"]),
        vec![("r1".into(), 2), ("r2".into(), 3)]
    );
    assert_eq!(
        j(&["--since", "24h"]),
        vec![("r1".into(), 2), ("r2".into(), 3)]
    );
    assert_eq!(j(&["--since", "30m"]), vec![("r1".into(), 2)]);
    assert_eq!(j(&["--since", "2000-01-01T00:00:00Z"]).len(), 3);
    assert_eq!(
        j(&["--limit", "2"]),
        vec![("r1".into(), 2), ("r2".into(), 3)]
    );
    assert_eq!(
        j(&["--in", "r1", "--unresolved", "--limit", "5"]),
        vec![("r1".into(), 2)]
    );
}

#[tokio::test]
async fn human_output() {
    let dbs = setup("e2e_conflicts_human").await;
    let r = list(&dbs, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("public.vault_secrets") && r.stdout.contains("public.tenants"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("id=2") && r.stdout.contains("last_updated_at"),
        "{}",
        r.stdout
    );
    // Newest first: r1's id 2 comes before r2's id 3.
    assert!(
        r.stdout.find("id=2").unwrap() < r.stdout.find("id=3").unwrap(),
        "{}",
        r.stdout
    );
    let r = list(&dbs, &["--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("no conflicts"), "{}", r.stdout);
}

#[tokio::test]
async fn regions_without_the_table_list_nothing() {
    let dbs = TestDbs::new("e2e_conflicts_notable", 2).await;
    let r = list(&dbs, &["--format", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.json(), json!({"conflicts": []}));
    let r = list(&dbs, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // Listing creates nothing.
    let n = dbs
        .query_texts(
            0,
            "SELECT count(*)::text FROM pg_class WHERE relname = 'replication_conflicts'",
        )
        .await;
    assert_eq!(n, vec![Some("0".into())]);
}

#[tokio::test]
async fn bad_input_exits_2() {
    let dbs = TestDbs::new("e2e_conflicts_bad", 1).await;
    let r = list(&dbs, &["--since", "yesterday-ish"]);
    r.assert_one_line_error();
    assert!(r.stderr.contains("--since"), "{}", r.stderr);
    let r = list(&dbs, &["--since", "-5h"]);
    r.assert_one_line_error();
    let r = list(&dbs, &["--in", "mars-1"]);
    r.assert_one_line_error();
    assert!(r.stderr.contains("mars-1"), "{}", r.stderr);
    let r = list(&dbs, &["--limit", "many"]);
    r.assert_one_line_error();
}
