//! `eden-reconcile init`: creates replication_conflicts in every region, idempotently.

use eden_test_util::TestDbs;

use crate::common::run;

async fn has_table(dbs: &TestDbs, i: usize, schema: &str) -> bool {
    let c = dbs.client(i).await;
    c.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = 'replication_conflicts' AND c.relkind = 'r')",
        &[&schema],
    )
    .await
    .unwrap()
    .get(0)
}

fn args(dbs: &TestDbs, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    v.extend(dbs.region_args());
    v
}

#[tokio::test]
async fn init_twice_creates_the_table_in_every_region() {
    let dbs = TestDbs::new("e2e_init_twice", 2).await;
    let r = run(args(&dbs, &["init", "--db", "eden_vault"]));
    assert_eq!(
        r.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    for i in 0..2 {
        assert!(has_table(&dbs, i, "public").await, "region {i}");
    }
    dbs.exec(0, "INSERT INTO replication_conflicts (table_name, key, conflict_type, local_region) VALUES ('public.t', '{\"id\": 1}', 'missing_row', 'r1')").await;
    let r = run(args(&dbs, &["init", "--db", "eden_vault"]));
    assert_eq!(
        r.code,
        Some(0),
        "second init:\nstdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    let n = dbs
        .query_texts(0, "SELECT count(*)::text FROM replication_conflicts")
        .await;
    assert_eq!(n, vec![Some("1".into())], "init keeps existing records");
    // JSON output, if asked for, is JSON.
    let r = run(args(
        &dbs,
        &["--format", "json", "init", "--db", "eden_vault"],
    ));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    r.json();
}

#[tokio::test]
async fn init_db_flag_picks_the_database_when_the_conninfo_names_none() {
    let dbs = TestDbs::new("e2e_init_dbflag", 1).await;
    // A key=value conninfo without dbname: --db decides.
    let r = run([
        "init",
        "--db",
        dbs.name(0),
        "--region",
        "r1=host=127.0.0.1 port=5432 user=postgres",
    ]);
    assert_eq!(
        r.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(has_table(&dbs, 0, "public").await);
}

#[tokio::test]
async fn init_uses_the_configured_schema() {
    let dbs = TestDbs::new("e2e_init_schema", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("postgresql-multi-region.yaml");
    std::fs::write(
        &cfg,
        "global:\n  conflict_resolution: last_write_wins\n\
         regions:\n  - name: r1\n    role: active\n    instance: { host: 127.0.0.1, port: 5432 }\n\
         \x20 - name: r2\n    role: active\n    instance: { host: 127.0.0.1, port: 5432 }\n\
         replication:\n  provider: pglogical\n  node_groups:\n    - name: g\n      database: eden_vault\n\
         \x20     conflicts_schema: eden_audit\n      conflict_resolution_tables: []\n",
    )
    .unwrap();
    let mut a = vec![
        "--config".to_string(),
        cfg.display().to_string(),
        "init".into(),
        "--db".into(),
        "eden_vault".into(),
    ];
    a.extend(dbs.region_args());
    let r = run(&a);
    assert_eq!(
        r.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    for i in 0..2 {
        assert!(has_table(&dbs, i, "eden_audit").await, "region {i}");
        assert!(!has_table(&dbs, i, "public").await, "region {i}");
    }
}

#[tokio::test]
async fn init_with_an_unreachable_region_is_a_one_line_error_without_password() {
    let dbs = TestDbs::new("e2e_init_unreachable", 1).await;
    let mut a = vec!["init".to_string(), "--db".into(), "eden_vault".into()];
    a.extend(dbs.region_args());
    a.push("--region".into());
    a.push(
        "far-away=postgres://postgres:Sup3rSecret@127.0.0.1:1/eden_vault?connect_timeout=3".into(),
    );
    let r = run(&a);
    r.assert_one_line_error();
    assert!(r.stderr.contains("far-away"), "{}", r.stderr);
    assert!(!r.stderr.contains("Sup3rSecret"), "{}", r.stderr);
}
