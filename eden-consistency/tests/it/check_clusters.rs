//! check: regions on separate clusters with different TimeZone, DateStyle,
//! extra_float_digits and collation (ICU vs C) never make equal rows differ.
use crate::check_common::*;
use eden_consistency::Checker;
use eden_consistency::Config;
use eden_consistency::TableStatus;
use eden_test_util::{ClusterOptions, TestCluster};
use serde_json::json;

#[tokio::test]
async fn different_settings_and_collations() {
    let a = TestCluster::start(
        ClusterOptions::new()
            .initdb_arg("--locale-provider=icu")
            .initdb_arg("--icu-locale=de-DE")
            .initdb_arg("--locale=C.UTF-8")
            .setting("timezone", "'Asia/Tokyo'")
            .setting("datestyle", "'SQL, DMY'")
            .setting("extra_float_digits", "0")
            .setting("intervalstyle", "'sql_standard'"),
    );
    let b = TestCluster::start(
        ClusterOptions::new()
            .initdb_arg("--locale=C")
            .setting("timezone", "'America/New_York'")
            .setting("datestyle", "'German, MDY'"),
    );
    let setup = "CREATE TABLE t(k text PRIMARY KEY, ts timestamptz, d date, f float8, iv interval, n numeric, v text);
        INSERT INTO t SELECT (ARRAY['a','B','ä','Z','é','_x','A b'])[1 + g % 7] || g, '2024-03-01 12:00:00+00'::timestamptz + g * interval '37 min',
          '2024-01-01'::date + g, g / 3.0, g * interval '1 h 3 min', g / 7.0, 'v' || g FROM generate_series(1, 2000) g;";
    for c in [&a, &b] {
        c.psql("postgres", "CREATE DATABASE eden_chk");
        c.psql("eden_chk", setup);
    }
    let mut cfg = Config::default();
    cfg.apply_region_flag(&format!("icu-tokyo={}", a.url("eden_chk")))
        .unwrap();
    cfg.apply_region_flag(&format!("c-newyork={}", b.url("eden_chk")))
        .unwrap();
    let c = Checker::connect(cfg, "eden_chk").await.unwrap();
    let r = run_both(&c, &Default::default()).await;
    assert!(r.consistent, "{:#}", r.to_json());

    b.psql("eden_chk", "UPDATE t SET ts = ts + interval '1 microsecond' WHERE k = 'ä2'; DELETE FROM t WHERE k = 'A b6';");
    let r = run_both(&c, &Default::default()).await;
    let t = table(&r, "public.t");
    assert_eq!(t.status, TableStatus::Divergent);
    assert_eq!(
        diffs(t),
        vec![
            (json!({"k": "A b6"}), vec!["c-newyork".to_string()], vec![]),
            (json!({"k": "ä2"}), vec![], vec!["ts".to_string()]),
        ]
    );
}
