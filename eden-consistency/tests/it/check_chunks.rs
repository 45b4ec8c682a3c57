//! Chunking by the whole key: composite keys whose first column has few values, and
//! integer keys chunked arithmetically or by sampled bounds.
use crate::check_common::*;
use eden_consistency::CheckOptions;
use eden_consistency::Mode;
use eden_test_util::TestDbs;
use proptest::prelude::*;

/// A composite key whose first column has only 2 values (4000 rows): chunks are ranges of
/// the whole key, so they stay small (the rows re-read for a few differing keys are a few
/// chunks' worth, not half the table) and the differences are exact, in both modes.
async fn composite_case(key_type: &str, name: &str) {
    let dbs = TestDbs::new(name, 2).await;
    let b = if key_type == "int" {
        "g".to_string()
    } else {
        "lpad(g::text, 5, '0')".to_string()
    };
    dbs.exec_all(&format!(
        "CREATE TABLE t(a int, b {key_type}, v text, PRIMARY KEY (a, b)); \
         INSERT INTO t SELECT g % 2, {b}, md5(g::text) FROM generate_series(1, 4000) g; ANALYZE t"
    ))
    .await;
    // Region 2: 3 updates, 2 deletes, 2 inserts, spread over both values of `a`.
    let key = |g: i32| {
        if key_type == "int" {
            format!("{g}")
        } else {
            format!("'{g:05}'")
        }
    };
    let mut sql = String::new();
    for g in [11, 2000, 3999] {
        sql.push_str(&format!(
            "UPDATE t SET v = 'x' WHERE a = {} AND b = {};",
            g % 2,
            key(g)
        ));
    }
    for g in [500, 1501] {
        sql.push_str(&format!(
            "DELETE FROM t WHERE a = {} AND b = {};",
            g % 2,
            key(g)
        ));
    }
    for g in [5000, 5001] {
        sql.push_str(&format!(
            "INSERT INTO t VALUES ({}, {}, 'new');",
            g % 2,
            key(g)
        ));
    }
    dbs.exec(1, &sql).await;
    let c = checker(&dbs).await;
    let r = run_both(
        &c,
        &CheckOptions {
            chunks: Some(100),
            ..Default::default()
        },
    )
    .await;
    let t = table(&r, "public.t");
    let mut got: Vec<(i64, String)> = diffs(t)
        .iter()
        .map(|(k, _, _)| {
            let b = match &k["b"] {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            (k["a"].as_i64().unwrap(), b)
        })
        .collect();
    got.sort();
    let mut want: Vec<(i64, String)> = [11, 2000, 3999, 500, 1501, 5000, 5001]
        .iter()
        .map(|&g| {
            let b = if key_type == "int" {
                g.to_string()
            } else {
                format!("{g:05}")
            };
            ((g % 2) as i64, b)
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    for (region, s) in &t.stats.0 {
        assert!(s.chunks >= 90, "{region}: {} chunks", s.chunks);
        assert!(
            s.chunks_differing <= 7,
            "{region}: {} differing chunks",
            s.chunks_differing
        );
        // 100 chunk digests plus ~7 chunks of ~40 rows; chunks of the first column only
        // would re-read ~2000 rows (over 80 kB). (The first region also sends the sampled
        // keys, here all 4000 of them.)
        if region == "r1" {
            continue;
        }
        assert!(
            s.bytes_received < 30_000,
            "{region}: {} bytes received",
            s.bytes_received
        );
    }
}

#[tokio::test]
async fn composite_key_chunks_by_whole_key_int() {
    composite_case("int", "chk_comp_int").await;
}

#[tokio::test]
async fn composite_key_chunks_by_whole_key_text_c() {
    composite_case("text COLLATE \"C\"", "chk_comp_textc").await;
}

/// One composite-key case of [`exact_differences_composite_key_shapes`]: `cols` key columns
/// (2: `(a int, b bigint)`, 3: `(a int, c text COLLATE "C", b bigint)`), the first with
/// `values` values, `rows` rows; `edits` are `(row, Some(v))` updates and `(row, None)`
/// deletes in region 2, `inserts` new keys there (some below and above every key);
/// `nulls`: no primary key but `key_columns` naming nullable columns, with rows whose `b`
/// is NULL (the NULL-key chunk).
#[allow(clippy::too_many_arguments)]
async fn composite_shape_case(
    cols: usize,
    values: i64,
    rows: i64,
    edits: &[(i64, Option<i32>)],
    inserts: &[(i64, i64)],
    nulls: bool,
    chunks: usize,
) {
    let dbs = TestDbs::new("chk_prop_comp", 2).await;
    let c_def = if cols == 3 {
        "c text COLLATE \"C\", "
    } else {
        ""
    };
    let key = if cols == 3 { "a, c, b" } else { "a, b" };
    let c_val = |g: i64| -> String {
        if cols == 3 {
            format!("'{}', ", ["", "x", "x y", "Z", "é"][(g % 5) as usize])
        } else {
            String::new()
        }
    };
    let pk = if nulls {
        String::new()
    } else {
        format!(", PRIMARY KEY ({key})")
    };
    let mut sql = format!("CREATE TABLE t(a int, {c_def}b bigint, v int{pk});");
    let key_of = |g: i64| (g % values, g * 3);
    for g in 0..rows {
        let (a, b) = key_of(g);
        sql.push_str(&format!("INSERT INTO t VALUES ({a}, {}{b}, 0);", c_val(g)));
    }
    if nulls {
        for a in 0..values {
            sql.push_str(&format!("INSERT INTO t VALUES ({a}, {}NULL, 7);", c_val(a)));
        }
    }
    sql.push_str("ANALYZE t;");
    dbs.exec_all(&sql).await;
    // Region 2's value of each edited row (`None`: deleted); 0 everywhere at first.
    let mut state: std::collections::BTreeMap<i64, Option<i32>> = Default::default();
    let mut sql = String::new();
    let c_cond = |g: i64| -> String {
        if cols == 3 {
            format!(" AND c = {}", c_val(g).trim_end_matches(", "))
        } else {
            String::new()
        }
    };
    for (i, v) in edits {
        let g = i % rows;
        let (a, b) = key_of(g);
        match v {
            Some(v) => sql.push_str(&format!(
                "UPDATE t SET v = {v} WHERE a = {a} AND b = {b}{};",
                c_cond(g)
            )),
            None => sql.push_str(&format!(
                "DELETE FROM t WHERE a = {a} AND b = {b}{};",
                c_cond(g)
            )),
        }
        let now = state.entry(g).or_insert(Some(0));
        // An update of a deleted row changes nothing.
        *now = match (v, *now) {
            (Some(x), Some(_)) => Some(*x),
            _ => None,
        };
    }
    let mut want: std::collections::BTreeSet<(i64, i64)> = state
        .iter()
        .filter(|(_, v)| **v != Some(0))
        .map(|(g, _)| key_of(*g))
        .collect();
    for (a, b) in inserts {
        // Keys off the `b = 3g` grid: new in region 2.
        let b = b * 3 + 1;
        sql.push_str(&format!("INSERT INTO t VALUES ({a}, {}{b}, 1);", c_val(0)));
        want.insert((*a, b));
    }
    if !sql.is_empty() {
        dbs.exec(1, &sql).await;
    }
    let counts: Vec<u64> = {
        let mut v = Vec::new();
        for i in 0..2 {
            let n = dbs.query_texts(i, "SELECT count(*)::text FROM t").await;
            v.push(n[0].as_deref().unwrap().parse().unwrap());
        }
        v
    };
    let mut cfg = config_for(&dbs);
    if nulls {
        let k: Vec<&str> = key.split(", ").collect();
        add_rule(&mut cfg, dbs.name(0), "t", Some(k), vec![]);
    }
    let c = eden_consistency::Checker::connect(cfg, dbs.name(0))
        .await
        .unwrap();
    let o = CheckOptions {
        chunks: Some(chunks),
        ..Default::default()
    };
    let r = run_both(&c, &o).await;
    let t = table(&r, "public.t");
    let got: std::collections::BTreeSet<(i64, i64)> = diffs(t)
        .iter()
        .map(|(k, _, _)| (k["a"].as_i64().unwrap(), k["b"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, want);
    // Every row lies in exactly one chunk: the chunk counts add up to the table.
    let p = c
        .run(&CheckOptions {
            mode: Mode::Pushdown,
            ..o.clone()
        })
        .await
        .unwrap();
    let t = table(&p, "public.t");
    for (i, (region, s)) in t.stats.0.iter().enumerate() {
        assert_eq!(s.rows_read, counts[i], "{region}: rows in the chunks");
        // Chunks of the whole key: as many as asked for, whatever the first column.
        if rows >= 4 * chunks as i64 {
            assert!(
                s.chunks as usize * 10 >= chunks * 8,
                "{region}: {} chunks for {chunks}",
                s.chunks
            );
            assert!(
                s.chunks_differing as usize <= want.len(),
                "{region}: {} differing chunks for {} keys",
                s.chunks_differing,
                want.len()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    /// Composite keys whose first column has few values (2 or 3 key columns, text in byte
    /// order, NULLs in configured key columns): as many chunks as asked for, every row in
    /// exactly one, and exact differences in both modes.
    #[test]
    fn exact_differences_composite_key_shapes(
        cols in 2usize..4,
        values in 1i64..5,
        rows in 50i64..1200,
        edits in proptest::collection::vec((0i64..100_000, proptest::option::of(-3i32..3)), 0..12),
        inserts in proptest::collection::vec((-1i64..6, -5i64..1300), 0..5),
        nulls in proptest::bool::weighted(0.25),
        chunks in 2usize..60,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut inserts = inserts;
        inserts.sort();
        inserts.dedup();
        rt.block_on(composite_shape_case(cols, values, rows, &edits, &inserts, nulls, chunks));
    }
}

/// A text part in the database's default collation: ranges in byte order cannot use the
/// key's index, so differing chunks are re-read by one scan; still exact.
#[tokio::test]
async fn composite_key_default_collation_is_exact() {
    let dbs = TestDbs::new("chk_comp_textd", 2).await;
    dbs.exec_all(
        "CREATE TABLE t(a int, b text, v int, PRIMARY KEY (a, b)); \
         INSERT INTO t SELECT g % 2, 'k' || g, g FROM generate_series(1, 3000) g; \
         INSERT INTO t VALUES (0, 'B', 1), (0, 'a', 2), (1, 'é', 3), (1, 'Z', 4)",
    )
    .await;
    dbs.exec(
        1,
        "UPDATE t SET v = -1 WHERE (a, b) IN ((0, 'B'), (1, 'k7')); DELETE FROM t WHERE (a, b) = (1, 'é'); \
         INSERT INTO t VALUES (0, 'Ä', 9)",
    )
    .await;
    let c = checker(&dbs).await;
    let r = run_both(
        &c,
        &CheckOptions {
            chunks: Some(50),
            ..Default::default()
        },
    )
    .await;
    let t = table(&r, "public.t");
    let mut got: Vec<String> = diffs(t)
        .iter()
        .map(|(k, _, _)| format!("{}/{}", k["a"], k["b"].as_str().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, vec!["0/B", "0/Ä", "1/k7", "1/é"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    /// Integer keys, evenly spread or in clusters far apart (arithmetic chunks or sampled
    /// bounds), with keys outside the first region's range in the second: exact in both
    /// modes.
    #[test]
    fn exact_differences_int_key_shapes(
        clusters in proptest::collection::vec((-1_000_000_000i64..1_000_000_000, 1usize..400), 1..4),
        step in 1i64..50,
        edits in proptest::collection::vec((0usize..2000, proptest::option::of(-5i32..5)), 0..15),
        outside in proptest::collection::vec(any::<i64>(), 0..4),
        chunks in proptest::option::of(2usize..60),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dbs = TestDbs::new("chk_prop_intshape", 2).await;
            let mut base = std::collections::BTreeMap::new();
            for (start, n) in &clusters {
                for i in 0..*n as i64 {
                    base.insert(start + i * step, (i % 7) as i32);
                }
            }
            let keys: Vec<i64> = base.keys().copied().collect();
            let mut sql = String::from("CREATE TABLE t(k bigint PRIMARY KEY, v int);");
            for (k, v) in &base {
                sql.push_str(&format!("INSERT INTO t VALUES ({k}, {v});"));
            }
            dbs.exec_all(&sql).await;
            let mut other = base.clone();
            let mut sql = String::new();
            for (i, v) in &edits {
                let k = keys[i % keys.len()];
                match v {
                    Some(v) => {
                        other.insert(k, *v);
                        sql.push_str(&format!("UPDATE t SET v = {v} WHERE k = {k};"));
                    }
                    None => {
                        other.remove(&k);
                        sql.push_str(&format!("DELETE FROM t WHERE k = {k};"));
                    }
                }
            }
            for k in &outside {
                other.insert(*k, 1);
                sql.push_str(&format!("INSERT INTO t VALUES ({k}, 1) ON CONFLICT (k) DO UPDATE SET v = 1;"));
            }
            if !sql.is_empty() {
                dbs.exec(1, &sql).await;
            }
            let mut want: Vec<i64> = base
                .keys()
                .chain(other.keys())
                .copied()
                .filter(|k| base.get(k) != other.get(k))
                .collect();
            want.sort();
            want.dedup();
            let c = checker(&dbs).await;
            let r = run_both(&c, &CheckOptions { chunks, ..Default::default() }).await;
            let got: Vec<i64> = diffs(table(&r, "public.t"))
                .iter()
                .map(|(k, _, _)| k["k"].as_i64().unwrap())
                .collect();
            assert_eq!(got, want);
        });
    }
}

/// A single text key in byte order and a numeric key: chunk digests through one index range
/// scan per chunk (no `width_bucket` over variable-length bounds); exact in both modes.
#[tokio::test]
async fn variable_length_keys_chunk_by_index_ranges() {
    let dbs = TestDbs::new("chk_varkey", 2).await;
    dbs.exec_all(
        "CREATE TABLE tk(k text COLLATE \"C\" PRIMARY KEY, v int); \
         INSERT INTO tk SELECT md5(g::text), g FROM generate_series(1, 3000) g; \
         INSERT INTO tk VALUES ('', 0), ('Ä', 1), ('a', 2); \
         CREATE TABLE nk(k numeric PRIMARY KEY, v int); \
         INSERT INTO nk SELECT g / 7.0, g FROM generate_series(1, 3000) g",
    )
    .await;
    dbs.exec(
        1,
        "UPDATE tk SET v = -1 WHERE k IN (md5('5'), ''); DELETE FROM tk WHERE k = 'Ä'; \
         INSERT INTO tk VALUES ('zzz', 1), ('!', 1); \
         UPDATE nk SET v = -1 WHERE k = 1; DELETE FROM nk WHERE k = 3000 / 7.0; INSERT INTO nk VALUES (-1, 1), (1e9, 1)",
    )
    .await;
    let c = checker(&dbs).await;
    let r = run_both(
        &c,
        &CheckOptions {
            chunks: Some(60),
            ..Default::default()
        },
    )
    .await;
    let keys = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = diffs(table(&r, name))
            .iter()
            .map(|(k, _, _)| match &k["k"] {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        v.sort();
        v
    };
    let mut want_tk = vec![
        "".to_string(),
        "!".into(),
        "zzz".into(),
        "Ä".into(),
        md5_of("5"),
    ];
    want_tk.sort();
    assert_eq!(keys("public.tk"), want_tk);
    assert_eq!(keys("public.nk").len(), 4);
}

fn md5_of(s: &str) -> String {
    // The test's own md5 is not needed elsewhere: ask PostgreSQL's value through its hex.
    let known = [("5", "e4da3b7fbbce2345d7772b0674a318d5")];
    known.iter().find(|(k, _)| *k == s).unwrap().1.to_string()
}

/// Level-by-level descent (range summaries per tree node, asking below a node only when it
/// differs) finds exactly what the leaves-at-once pass finds, on real PostgreSQL, for an
/// integer and a text key, in both modes, with and without drift.
#[tokio::test]
async fn descent_equals_leaves_at_once() {
    let dbs = TestDbs::new("check_descent", 2).await;
    dbs.exec_all(
        "CREATE TABLE n(id bigint PRIMARY KEY, v text); \
         INSERT INTO n SELECT g, md5(g::text) FROM generate_series(1, 20000) g; \
         CREATE TABLE s(k text COLLATE \"C\" PRIMARY KEY, v int); \
         INSERT INTO s SELECT md5(g::text), g FROM generate_series(1, 5000) g; ANALYZE",
    )
    .await;
    let c = checker(&dbs).await;
    for fanout in [2usize, 16] {
        let r = run_both(
            &c,
            &CheckOptions {
                descent: Some(fanout),
                ..Default::default()
            },
        )
        .await;
        assert!(
            r.tables.iter().all(|t| t.difference_count == 0),
            "{:#?}",
            r.to_json()
        );
    }
    dbs.exec(
        1,
        "UPDATE n SET v = 'x' WHERE id IN (7, 9000, 19999); DELETE FROM n WHERE id = 12345; \
         INSERT INTO n VALUES (30000, 'new'); \
         UPDATE s SET v = -1 WHERE k = md5('77'); DELETE FROM s WHERE k = md5('4000')",
    )
    .await;
    let flat = run_both(&c, &CheckOptions::default()).await;
    assert_eq!(table(&flat, "public.n").difference_count, 5);
    assert_eq!(table(&flat, "public.s").difference_count, 2);
    for fanout in [2usize, 16] {
        let tree = run_both(
            &c,
            &CheckOptions {
                descent: Some(fanout),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(strip(&tree), strip(&flat), "descent with fan-out {fanout}");
    }
}
