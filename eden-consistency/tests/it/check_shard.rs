//! `check --shard I/N` + `merge_reports`: the merged shards equal an unsharded run, and
//! reports that do not tile are refused.
use crate::check_common::*;
use eden_consistency::{CheckOptions, Mode, Shard, ShardOptions, merge_reports};
use eden_test_util::TestDbs;
use proptest::prelude::*;

/// What must agree between a merged and an unsharded report.
fn essence(r: &serde_json::Value) -> serde_json::Value {
    let tables: Vec<serde_json::Value> = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            serde_json::json!({
                "table": t["table"], "status": t["status"], "row_counts": t["row_counts"],
                "difference_count": t["difference_count"], "differences": t["differences"],
                "key_columns": t["key_columns"],
            })
        })
        .collect();
    serde_json::json!({"consistent": r["consistent"], "tables": tables, "database": r["database"], "regions": r["regions"]})
}

async fn shard_reports(
    c: &eden_consistency::Checker,
    n: u32,
    base: &CheckOptions,
) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut so = ShardOptions::new(Shard { index: i, count: n });
        so.split_min_rows = 0;
        let r = c
            .run(&CheckOptions {
                shard: Some(so),
                ..base.clone()
            })
            .await
            .unwrap();
        out.push((format!("shard-{i}.json"), r.to_json()));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5, ..ProptestConfig::default() })]
    /// Random data in 2 regions (an integer-keyed table, a text-keyed one and a tiny one):
    /// for N = 1..4 the merged shards report exactly what one unsharded run reports.
    #[test]
    fn merged_shards_equal_one_run(
        base in proptest::collection::btree_map(-100i64..2000, -5i32..5, 0..400),
        edits in proptest::collection::vec((-100i64..2000, proptest::option::of(-5i32..5)), 0..30),
        texts in proptest::collection::btree_map("[a-zA-Z é]{0,5}", -5i32..5, 0..100),
        text_edits in proptest::collection::vec(("[a-zA-Z é]{0,5}", proptest::option::of(-5i32..5)), 0..10),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dbs = TestDbs::new("chk_shard_prop", 2).await;
            let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
            let mut s = String::from("CREATE TABLE a(id bigint PRIMARY KEY, v int); CREATE TABLE b(k text PRIMARY KEY, v int); CREATE TABLE c(id int PRIMARY KEY); INSERT INTO c VALUES (1);");
            for (k, v) in &base {
                s.push_str(&format!("INSERT INTO a VALUES ({k}, {v});"));
            }
            for (k, v) in &texts {
                s.push_str(&format!("INSERT INTO b VALUES ({}, {v});", q(k)));
            }
            dbs.exec_all(&s).await;
            for (k, v) in &edits {
                let stmt = match v {
                    Some(v) => format!("INSERT INTO a VALUES ({k}, {v}) ON CONFLICT (id) DO UPDATE SET v = {v}"),
                    None => format!("DELETE FROM a WHERE id = {k}"),
                };
                dbs.exec(1, &stmt).await;
            }
            for (k, v) in &text_edits {
                let stmt = match v {
                    Some(v) => format!("INSERT INTO b VALUES ({0}, {v}) ON CONFLICT (k) DO UPDATE SET v = {v}", q(k)),
                    None => format!("DELETE FROM b WHERE k = {}", q(k)),
                };
                dbs.exec(0, &stmt).await;
            }
            dbs.exec_all("ANALYZE a; ANALYZE b; ANALYZE c;").await;
            let c = checker(&dbs).await;
            let base_opts = CheckOptions { mode: Mode::Pushdown, ..CheckOptions::default() };
            let whole = c.run(&base_opts).await.unwrap();
            let want = essence(&whole.to_json());
            for n in 1..=4u32 {
                let reports = shard_reports(&c, n, &base_opts).await;
                let merged = merge_reports(&reports).unwrap();
                assert_eq!(essence(&merged), want, "N = {n}");
                assert_eq!(
                    eden_consistency::report_exit_code(&merged),
                    whole.exit_code(),
                    "N = {n}"
                );
            }
        });
    }
}

#[tokio::test]
async fn merge_refuses_what_does_not_tile() {
    let dbs = TestDbs::new("chk_shard_refuse", 2).await;
    dbs.exec_all(
        "CREATE TABLE a(id bigint PRIMARY KEY, v int); INSERT INTO a SELECT g, g FROM generate_series(1, 3000) g; ANALYZE a;",
    )
    .await;
    dbs.exec(1, "UPDATE a SET v = 0 WHERE id IN (5, 2500)")
        .await;
    let c = checker(&dbs).await;
    let base = CheckOptions::default();
    let three = shard_reports(&c, 3, &base).await;
    let merged = merge_reports(&three).unwrap();
    assert_eq!(merged["tables"][0]["difference_count"], 2);
    // Each shard read only its range.
    let rows: Vec<u64> = three
        .iter()
        .map(|(_, r)| r["tables"][0]["row_counts"]["r1"].as_u64().unwrap())
        .collect();
    assert_eq!(rows.iter().sum::<u64>(), 3000);
    assert!(rows.iter().all(|&n| n < 3000), "{rows:?}");

    let err =
        |inputs: &[(String, serde_json::Value)]| merge_reports(inputs).unwrap_err().to_string();
    assert!(err(&three[..2]).contains("shard 2/3 is missing"));
    let dup = vec![three[0].clone(), three[1].clone(), three[1].clone()];
    assert!(err(&dup).contains("given twice"));
    let two = shard_reports(&c, 2, &base).await;
    let mixed = vec![three[0].clone(), two[1].clone(), three[2].clone()];
    assert!(err(&mixed).contains("shard of"));
    let mut bent = three.clone();
    bent[1].1["tables"][0]["shard_range"]["from"] = serde_json::json!("7");
    assert!(err(&bent).contains("do not fit together"), "{}", err(&bent));
    let mut replanned = three.clone();
    replanned[2].1["shard"]["plan"][0]["bounds"][0] = serde_json::json!("8");
    assert!(err(&replanned).contains("split the tables differently"));
    let unsharded = vec![(
        "plain.json".to_string(),
        c.run(&base).await.unwrap().to_json(),
    )];
    assert!(err(&unsharded).contains("not the report of a sharded check"));
}
