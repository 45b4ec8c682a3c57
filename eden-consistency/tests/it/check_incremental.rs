//! `check --incremental`: after random inserts, updates (bumping the tracking column) and
//! deletes, an incremental pass finds exactly what a full check finds; and the cases that
//! must force a full pass do.
use crate::check_common::*;
use eden_consistency::CheckReport;
use eden_consistency::{CheckOptions, Checker, IncrementalOptions, Mode, Resolution};
use eden_test_util::TestDbs;
use proptest::prelude::*;
use std::time::Duration;

fn state_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("eden-inc-{}.json", uuid::Uuid::new_v4()))
}

async fn lww_checker(dbs: &TestDbs) -> Checker {
    let mut cfg = config_for(dbs);
    add_rule(&mut cfg, dbs.name(0), "t", None, vec![]);
    let g = cfg
        .node_groups
        .iter_mut()
        .find(|g| g.database == dbs.name(0))
        .unwrap();
    g.tables[0].resolution = Resolution::LastWriteWins {
        tracking_column: Some("ts".into()),
    };
    Checker::connect(cfg, dbs.name(0)).await.unwrap()
}

fn inc_opts(path: &std::path::Path, full_every: u32, chunks: Option<usize>) -> CheckOptions {
    CheckOptions {
        mode: Mode::Pushdown,
        chunks,
        incremental: Some(IncrementalOptions {
            state_path: path.to_path_buf(),
            full_every,
            margin: Duration::ZERO,
        }),
        ..CheckOptions::default()
    }
}

/// What must agree between an incremental and a full check of table t.
fn essence(r: &CheckReport) -> serde_json::Value {
    let t = table(r, "public.t");
    serde_json::json!({
        "consistent": r.consistent,
        "status": t.status.as_str(),
        "row_counts": serde_json::to_value(&t.row_counts).unwrap(),
        "difference_count": t.difference_count,
        "diffs": format!("{:?}", diffs(t)),
    })
}

const SETUP: &str =
    "CREATE TABLE t(id bigint PRIMARY KEY, v int, ts timestamptz NOT NULL DEFAULT now());
                     CREATE INDEX ON t(ts);";

#[derive(Debug, Clone)]
enum Op {
    Insert(i64, i32),
    Update(i64, i32),
    Delete(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        ((0i64..600), any::<i32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        ((0i64..600), any::<i32>()).prop_map(|(k, v)| Op::Update(k, v)),
        (0i64..600).prop_map(Op::Delete),
    ]
}

/// The table of [`incremental_equals_full`]: keyed by `id`, or (`composite`) by `(a, id)`
/// with `a = id % 3` (chunks of the whole composite key).
const SETUP_COMPOSITE: &str = "CREATE TABLE t(a int, id bigint, v int, ts timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (a, id));
                     CREATE INDEX ON t(ts);";

fn sql(op: &Op, composite: bool) -> String {
    let (Op::Insert(k, _) | Op::Update(k, _) | Op::Delete(k)) = op;
    let (cols, vals, cond) = if composite {
        (
            "a, id",
            format!("{}, {k}", k % 3),
            format!("a = {} AND id = {k}", k % 3),
        )
    } else {
        ("id", k.to_string(), format!("id = {k}"))
    };
    match op {
        Op::Insert(_, v) => format!(
            "INSERT INTO t({cols}, v) VALUES ({vals}, {v}) ON CONFLICT ({cols}) DO UPDATE SET v = {v}, ts = now()"
        ),
        Op::Update(_, v) => format!("UPDATE t SET v = {v}, ts = now() WHERE {cond}"),
        Op::Delete(_) => format!("DELETE FROM t WHERE {cond}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    /// Random tables in 2 regions, a first (full) pass, then rounds of random changes in
    /// either region: every incremental pass reports what a full check reports.
    #[test]
    fn incremental_equals_full(
        base in proptest::collection::btree_map(0i64..600, any::<i32>(), 0..300),
        rounds in proptest::collection::vec(proptest::collection::vec((0usize..2, op()), 0..30), 1..4),
        chunks in proptest::option::of(2usize..40),
        composite in any::<bool>(),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dbs = TestDbs::new("chk_inc_prop", 2).await;
            let mut s = String::from(if composite { SETUP_COMPOSITE } else { SETUP });
            for (k, v) in &base {
                let (cols, vals) = if composite { ("a, id", format!("{}, {k}", k % 3)) } else { ("id", k.to_string()) };
                s.push_str(&format!("INSERT INTO t({cols}, v, ts) VALUES ({vals}, {v}, timestamptz '2026-01-01 00:00:00+00');"));
            }
            dbs.exec_all(&s).await;
            let c = lww_checker(&dbs).await;
            let path = state_path();
            let opts = inc_opts(&path, 100, chunks);
            let first = c.run(&opts).await.unwrap();
            assert!(table(&first, "public.t").incremental.as_ref().unwrap().full_pass);
            for (n, round) in rounds.iter().enumerate() {
                for (r, op) in round {
                    dbs.exec(*r, &sql(op, composite)).await;
                }
                let inc = c.run(&opts).await.unwrap();
                let full = c.run(&CheckOptions { mode: Mode::Pushdown, ..CheckOptions::default() }).await.unwrap();
                assert_eq!(essence(&inc), essence(&full), "round {n}: {:?}", table(&inc, "public.t").message);
                let info = table(&inc, "public.t").incremental.clone().unwrap();
                assert!(!info.full_pass, "round {n}: {}", info.reason);
                assert!(info.chunks_rehashed <= info.chunks_total);
            }
            let _ = std::fs::remove_file(&path);
        });
    }
}

#[tokio::test]
async fn rehashes_only_what_changed_and_falls_back_when_it_must() {
    let dbs = TestDbs::new("chk_inc_cases", 2).await;
    dbs.exec_all(&format!(
        "{SETUP} INSERT INTO t(id, v, ts) SELECT g, g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' FROM generate_series(1, 5000) g;"
    ))
    .await;
    let c = lww_checker(&dbs).await;
    let path = state_path();
    let opts = inc_opts(&path, 3, Some(100));
    let r = c.run(&opts).await.unwrap();
    let i = table(&r, "public.t").incremental.clone().unwrap();
    assert!(i.full_pass && i.reason.contains("first run"), "{i:?}");
    assert!(r.consistent);

    // One tracked update and one delete in different places.
    dbs.exec(1, "UPDATE t SET v = -1, ts = now() WHERE id = 10")
        .await;
    dbs.exec(0, "DELETE FROM t WHERE id = 4000").await;
    let r = c.run(&opts).await.unwrap();
    let t = table(&r, "public.t");
    let i = t.incremental.clone().unwrap();
    assert!(!i.full_pass, "{i:?}");
    // The updated row's chunk, and the newest row's (the newest tracking value is a
    // lower limit of the next pass's search, in case writers' clocks lag the server's).
    assert_eq!(i.chunks_changed, 2, "{i:?}");
    assert_eq!(i.chunks_count_changed, 1, "{i:?}");
    assert_eq!(i.chunks_rehashed, 3, "{i:?}");
    assert_eq!(i.runs_since_full_pass, 1);
    assert_eq!(t.difference_count, 2);

    // The chunks that differed last time are re-hashed even with no change.
    let r = c.run(&opts).await.unwrap();
    let i = table(&r, "public.t").incremental.clone().unwrap();
    assert!(!i.full_pass);
    assert_eq!(i.chunks_differing_before, 2, "{i:?}");
    assert_eq!(table(&r, "public.t").difference_count, 2);

    // --full-every 3: the third run after the full one is a full pass.
    let r = c.run(&opts).await.unwrap();
    let i = table(&r, "public.t").incremental.clone().unwrap();
    assert!(i.full_pass && i.reason.contains("--full-every"), "{i:?}");

    // TRUNCATE (new storage) forces a full pass, even if the rows come back with old stamps.
    dbs.exec(
        1,
        "TRUNCATE t; INSERT INTO t(id, v, ts) SELECT g, g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' FROM generate_series(1, 5000) g;",
    )
    .await;
    let r = c.run(&opts).await.unwrap();
    let i = table(&r, "public.t").incremental.clone().unwrap();
    assert!(i.full_pass && i.reason.contains("storage"), "{i:?}");

    // Another filter changes the fingerprint.
    let r = c
        .run(&CheckOptions {
            filter: Some("v > 0".into()),
            ..opts.clone()
        })
        .await
        .unwrap();
    let i = table(&r, "public.t").incremental.clone().unwrap();
    assert!(i.full_pass && i.reason.contains("filter"), "{i:?}");

    // A failed run writes no state; a table without a tracking column is always full.
    let plain = checker(&dbs).await;
    let r = plain.run(&opts).await.unwrap();
    let i = table(&r, "public.t").incremental.clone().unwrap();
    assert!(i.full_pass && i.reason.contains("tracking_column"), "{i:?}");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn unindexed_tracking_column_means_a_full_pass() {
    let dbs = TestDbs::new("chk_inc_noidx", 2).await;
    dbs.exec_all("CREATE TABLE t(id bigint PRIMARY KEY, v int, ts timestamptz NOT NULL DEFAULT now()); INSERT INTO t(id, v) VALUES (1, 1);")
        .await;
    let c = lww_checker(&dbs).await;
    let path = state_path();
    c.run(&inc_opts(&path, 7, None)).await.unwrap();
    let r = c.run(&inc_opts(&path, 7, None)).await.unwrap();
    let i = table(&r, "public.t").incremental.clone().unwrap();
    assert!(i.full_pass && i.reason.contains("no index"), "{i:?}");
    let _ = std::fs::remove_file(&path);
}

/// The key of row `k` in a table of kind `kind`: integer, or text whose order is the
/// number's.
fn key_lit(kind: usize, k: i64) -> String {
    if kind == 0 || kind == 3 {
        k.to_string()
    } else {
        format!("'{k:06}'")
    }
}

fn sql_of(kind: usize, op: &Op) -> String {
    match op {
        Op::Insert(k, v) if kind == 3 => {
            let id = *k * 10 + (*k & 1);
            format!(
                "INSERT INTO t(a, id, v) VALUES ({}, {id}, {v}) ON CONFLICT (a, id) DO UPDATE SET v = {v}, ts = now()",
                id % 3
            )
        }
        Op::Insert(k, v) => format!(
            "INSERT INTO t(id, v) VALUES ({}, {v}) ON CONFLICT (id) DO UPDATE SET v = {v}, ts = now()",
            key_lit(kind, *k * 10 + (*k & 1))
        ),
        Op::Update(k, v) => format!(
            "UPDATE t SET v = {v}, ts = now() WHERE id = {}",
            key_lit(kind, *k * 10)
        ),
        Op::Delete(k) => format!("DELETE FROM t WHERE id = {}", key_lit(kind, *k * 10)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
    /// Thousands of chunks, so that each count range covers several of them and a range
    /// whose count changed is refined chunk by chunk; keys counted through their index
    /// (integer with evenly spaced bounds, text collated "C") and in one scan (text in the
    /// database's collation), and a composite key chunked by the whole key (ranges counted
    /// in one scan): every incremental pass reports what a full check reports.
    #[test]
    fn incremental_equals_full_with_count_ranges(
        kind in 0usize..4,
        rounds in proptest::collection::vec(proptest::collection::vec((0usize..2, op()), 0..40), 1..3),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dbs = TestDbs::new("chk_inc_ranges", 2).await;
            let key_type = ["bigint", "text COLLATE \"C\"", "text", "bigint"][kind];
            let key_expr = if kind == 1 || kind == 2 { "lpad(g::text, 6, '0')" } else { "g" };
            let (a_col, a_val, pk) = if kind == 3 { ("a int, ", "g % 3, ", "a, id") } else { ("", "", "id") };
            let cols = if kind == 3 { "a, id" } else { "id" };
            dbs.exec_all(&format!(
                "CREATE TABLE t({a_col}id {key_type}, v int, ts timestamptz NOT NULL DEFAULT now(), PRIMARY KEY ({pk}));
                 CREATE INDEX ON t(ts);
                 INSERT INTO t({cols}, v, ts) SELECT {a_val}{key_expr}, g, timestamptz '2026-01-01 00:00:00+00'
                   FROM generate_series(0, 6000, 2) g;"
            ))
            .await;
            let c = lww_checker(&dbs).await;
            let path = state_path();
            let opts = inc_opts(&path, 100, Some(2500));
            let first = c.run(&opts).await.unwrap();
            let info = table(&first, "public.t").incremental.clone().unwrap();
            assert!(info.full_pass);
            assert!(info.chunks_total > 1000, "{info:?}");
            for (n, round) in rounds.iter().enumerate() {
                for (r, op) in round {
                    dbs.exec(*r, &sql_of(kind, op)).await;
                }
                let inc = c.run(&opts).await.unwrap();
                let full = c.run(&CheckOptions { mode: Mode::Pushdown, ..CheckOptions::default() }).await.unwrap();
                assert_eq!(essence(&inc), essence(&full), "kind {kind} round {n}");
                let info = table(&inc, "public.t").incremental.clone().unwrap();
                assert!(!info.full_pass, "round {n}: {}", info.reason);
                assert!(info.count_ranges.unwrap() < info.chunks_total);
                assert!(info.chunks_rehashed <= info.chunks_total);
            }
            let _ = std::fs::remove_file(&path);
        });
    }
}
