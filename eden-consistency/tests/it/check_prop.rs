//! Property: random tables on 2–3 regions, random inserts/updates/deletes per region →
//! exactly the oracle's differing keys, missing_in and changed_columns, in both modes.
use crate::check_common::*;
use eden_test_util::TestDbs;
use proptest::prelude::*;
use std::collections::BTreeMap;

type Row = (Option<i32>, Option<String>, Option<f64>);

#[derive(Debug, Clone)]
enum Op {
    Insert(i64, Row),
    Update(i64, u8, Row),
    Delete(i64),
}

fn row() -> impl Strategy<Value = Row> {
    (
        proptest::option::of(-3i32..3),
        proptest::option::of(prop_oneof![
            Just(String::new()),
            "[a-c|]{0,3}".prop_map(|s| s)
        ]),
        proptest::option::of(prop_oneof![
            Just(0.5f64),
            Just(-0.25),
            Just(f64::NAN),
            Just(1e300)
        ]),
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        ((-50i64..5000), row()).prop_map(|(k, r)| Op::Insert(k, r)),
        ((-50i64..5000), 0u8..3, row()).prop_map(|(k, c, r)| Op::Update(k, c, r)),
        (-50i64..5000).prop_map(Op::Delete),
    ]
}

fn lit(r: &Row) -> String {
    let a = r.0.map_or("NULL".into(), |x| x.to_string());
    let b = r.1.as_ref().map_or("NULL".into(), |s| format!("'{s}'"));
    let c = r.2.map_or("NULL".into(), |f| {
        if f.is_nan() {
            "'NaN'".into()
        } else {
            format!("{f:e}")
        }
    });
    format!("{a}, {b}, {c}")
}

fn same(x: &Row, y: &Row) -> [bool; 3] {
    let f = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
        (None, None) => true,
        _ => false,
    };
    [x.0 == y.0, x.1 == y.1, f(x.2, y.2)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]
    #[test]
    fn exact_differences(
        n in 2usize..4,
        base in proptest::collection::btree_map(-50i64..5000, row(), 0..400),
        ops in proptest::collection::vec((0usize..3, op()), 0..25),
        chunks in proptest::option::of(1usize..60),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dbs = TestDbs::new("chk_prop", n).await;
            let mut regions: Vec<BTreeMap<i64, Row>> = vec![base.clone(); n];
            let mut sql = String::from("CREATE TABLE t(id bigint primary key, a int, b text, c float8);");
            for (k, r) in &base {
                sql.push_str(&format!("INSERT INTO t VALUES ({k}, {});", lit(r)));
            }
            dbs.exec_all(&sql).await;
            for (ri, op) in &ops {
                let ri = ri % n;
                let m = &mut regions[ri];
                let stmt = match op {
                    Op::Insert(k, r) => {
                        if m.contains_key(k) { continue; }
                        m.insert(*k, r.clone());
                        format!("INSERT INTO t VALUES ({k}, {})", lit(r))
                    }
                    Op::Update(k, c, r) => {
                        let Some(cur) = m.get_mut(k) else { continue };
                        match c {
                            0 => cur.0 = r.0,
                            1 => cur.1 = r.1.clone(),
                            _ => cur.2 = r.2,
                        }
                        format!("UPDATE t SET a = {}, b = {}, c = {} WHERE id = {k}",
                            cur.0.map_or("NULL".into(), |x| x.to_string()),
                            cur.1.as_ref().map_or("NULL".into(), |s| format!("'{s}'")),
                            cur.2.map_or("NULL".into(), |f| if f.is_nan() { "'NaN'".into() } else { format!("{f:e}") }))
                    }
                    Op::Delete(k) => {
                        if m.remove(k).is_none() { continue; }
                        format!("DELETE FROM t WHERE id = {k}")
                    }
                };
                dbs.exec(ri, &stmt).await;
            }
            // Oracle.
            let names = dbs.region_names();
            let mut keys: Vec<i64> = regions.iter().flat_map(|m| m.keys().copied()).collect();
            keys.sort();
            keys.dedup();
            let mut want = Vec::new();
            for k in keys {
                let vs: Vec<Option<&Row>> = regions.iter().map(|m| m.get(&k)).collect();
                let missing: Vec<String> = vs.iter().zip(&names).filter(|(v, _)| v.is_none()).map(|(_, n)| n.clone()).collect();
                let present: Vec<&Row> = vs.iter().flatten().copied().collect();
                let mut changed = Vec::new();
                for (ci, col) in ["a", "b", "c"].iter().enumerate() {
                    if present[1..].iter().any(|r| !same(present[0], r)[ci]) {
                        changed.push(col.to_string());
                    }
                }
                if !missing.is_empty() || !changed.is_empty() {
                    want.push((serde_json::json!({"id": k}), missing, changed));
                }
            }
            let c = checker(&dbs).await;
            let r = run_both(&c, &eden_consistency::CheckOptions { chunks, ..Default::default() }).await;
            let t = table(&r, "public.t");
            assert_eq!(diffs(t), want);
            assert_eq!(t.difference_count as usize, want.len());
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    /// Text keys (mixed case, accents, spaces, empty) on 2 regions: chunk bounds are taken
    /// in byte order in both modes, so every key lands in the same chunk everywhere.
    #[test]
    fn exact_differences_text_keys(
        base in proptest::collection::btree_map("[aAbB é_Z]{0,4}", -5i32..5, 0..300),
        edits in proptest::collection::vec(("[aAbB é_Z]{0,4}", proptest::option::of(-5i32..5)), 0..20),
        chunks in proptest::option::of(1usize..40),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dbs = TestDbs::new("chk_prop_text", 2).await;
            let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
            let mut sql = String::from("CREATE TABLE t(k text PRIMARY KEY, v int);");
            for (k, v) in &base {
                sql.push_str(&format!("INSERT INTO t VALUES ({}, {v});", q(k)));
            }
            dbs.exec_all(&sql).await;
            let mut other = base.clone();
            for (k, v) in &edits {
                match v {
                    Some(v) => {
                        other.insert(k.clone(), *v);
                        dbs.exec(1, &format!("INSERT INTO t VALUES ({0}, {v}) ON CONFLICT (k) DO UPDATE SET v = {v}", q(k))).await;
                    }
                    None => {
                        other.remove(k);
                        dbs.exec(1, &format!("DELETE FROM t WHERE k = {}", q(k))).await;
                    }
                }
            }
            let mut want = Vec::new();
            let mut keys: Vec<&String> = base.keys().chain(other.keys()).collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            keys.dedup();
            for k in keys {
                match (base.get(k), other.get(k)) {
                    (Some(a), Some(b)) if a != b => want.push((serde_json::json!({"k": k}), vec![], vec!["v".to_string()])),
                    (Some(_), None) => want.push((serde_json::json!({"k": k}), vec!["r2".to_string()], vec![])),
                    (None, Some(_)) => want.push((serde_json::json!({"k": k}), vec!["r1".to_string()], vec![])),
                    _ => {}
                }
            }
            let c = checker(&dbs).await;
            let r = run_both(&c, &eden_consistency::CheckOptions { chunks, ..Default::default() }).await;
            assert_eq!(diffs(table(&r, "public.t")), want);
        });
    }
}
