//! check: basic divergence detection on two and three regions, both modes.
use crate::check_common::*;
use eden_consistency::TableStatus;
use eden_test_util::TestDbs;
use serde_json::json;

#[tokio::test]
async fn two_regions_each_kind_of_drift() {
    let dbs = TestDbs::new("chk_basic_two", 2).await;
    dbs.exec_all(
        "CREATE TABLE vault_secrets(id bigint primary key, path text not null, secret bytea, version int, \
           metadata jsonb, last_updated_at timestamptz not null);
         INSERT INTO vault_secrets SELECT g, 'p/'||g, decode(md5(g::text),'hex'), 1, jsonb_build_object('a', g, 'b', 'x'), \
           '2024-01-01'::timestamptz + g * interval '1 s' FROM generate_series(1, 5000) g;
         CREATE TABLE empty_one(id int primary key, v text);
         CREATE TABLE no_pk(a int, b text);",
    )
    .await;
    dbs.exec(1, "DELETE FROM vault_secrets WHERE id = 42; UPDATE vault_secrets SET secret = 'x', version = 2 WHERE id = 7; \
                 INSERT INTO vault_secrets VALUES (100000, 'new', NULL, 1, NULL, now()); \
                 UPDATE vault_secrets SET metadata = '{\"b\": \"x\", \"a\": 4000}' WHERE id = 4000;").await;
    let c = checker(&dbs).await;
    let r = run_both(&c, &Default::default()).await;
    let t = table(&r, "public.vault_secrets");
    assert_eq!(t.status, TableStatus::Divergent);
    assert_eq!(t.difference_count, 3, "{:#?}", r.to_json());
    assert_eq!(
        diffs(t),
        vec![
            (
                json!({"id": 7}),
                vec![],
                vec!["secret".to_string(), "version".to_string()]
            ),
            (json!({"id": 42}), vec!["r2".to_string()], vec![]),
            (json!({"id": 100000}), vec!["r1".to_string()], vec![]),
        ]
    );
    assert_eq!(t.row_counts.get("r1"), Some(&5000));
    assert_eq!(t.row_counts.get("r2"), Some(&5000));
    assert_eq!(
        table(&r, "public.empty_one").status,
        TableStatus::Consistent
    );
    let np = table(&r, "public.no_pk");
    assert_eq!(np.status, TableStatus::Skipped);
    assert!(np.message.as_deref().unwrap().contains("key_columns"));
    assert!(!r.consistent);
    let j = r.to_json();
    assert_eq!(j["tables"][2]["differences"][0]["key"], json!({"id": 7}));
}

#[tokio::test]
async fn three_regions() {
    let dbs = TestDbs::new("chk_basic_three", 3).await;
    dbs.exec_all("CREATE TABLE t(id int primary key, a text, b int); INSERT INTO t SELECT g, 'a'||g, g FROM generate_series(1,300) g;").await;
    dbs.exec(
        1,
        "UPDATE t SET a = 'zz' WHERE id = 5; DELETE FROM t WHERE id = 6;",
    )
    .await;
    dbs.exec(2, "UPDATE t SET b = -1 WHERE id = 5; DELETE FROM t WHERE id = 6; DELETE FROM t WHERE id = 9; UPDATE t SET b = 0 WHERE id = 9;").await;
    dbs.exec(0, "DELETE FROM t WHERE id = 10").await;
    let c = checker(&dbs).await;
    let r = run_both(&c, &Default::default()).await;
    let t = table(&r, "public.t");
    assert_eq!(
        diffs(t),
        vec![
            (
                json!({"id": 5}),
                vec![],
                vec!["a".to_string(), "b".to_string()]
            ),
            (
                json!({"id": 6}),
                vec!["r2".to_string(), "r3".to_string()],
                vec![]
            ),
            (json!({"id": 9}), vec!["r3".to_string()], vec![]),
            (json!({"id": 10}), vec!["r1".to_string()], vec![]),
        ]
    );
}

#[tokio::test]
async fn consistent_database() {
    let dbs = TestDbs::new("chk_basic_same", 2).await;
    dbs.exec_all("CREATE TABLE t(id int primary key, a text); INSERT INTO t SELECT g, 'a'||g FROM generate_series(1,1000) g;").await;
    let c = checker(&dbs).await;
    let r = run_both(&c, &Default::default()).await;
    assert!(r.consistent);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(table(&r, "public.t").status, TableStatus::Consistent);
}
