//! check: the in-flight rule (see `docs/commands.md`).
use crate::check_common::*;
use eden_consistency::Resolution;
use eden_consistency::TableStatus;
use eden_consistency::{CheckOptions, Checker};
use eden_test_util::TestDbs;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn young_differences_are_in_flight() {
    let dbs = TestDbs::new("chk_inflight", 2).await;
    dbs.exec_all(
        "CREATE TABLE t(id int primary key, v int, updated_at timestamptz not null);
                  INSERT INTO t SELECT g, g, '2020-01-01' FROM generate_series(1, 100) g;",
    )
    .await;
    dbs.exec(1, "UPDATE t SET v = 0, updated_at = now() WHERE id = 7;")
        .await;
    let mut cfg = config_for(&dbs);
    add_rule(&mut cfg, dbs.name(0), "t", None, vec![]);
    cfg.node_groups[0].tables[0].resolution = Resolution::LastWriteWins {
        tracking_column: Some("updated_at".into()),
    };
    let c = Checker::connect(cfg, dbs.name(0)).await.unwrap();
    let o = CheckOptions {
        lag_window: Some(Duration::from_secs(300)),
        recheck_pause: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let r = run_both(&c, &o).await;
    let t = table(&r, "public.t");
    assert_eq!(t.status, TableStatus::Consistent, "{:#}", r.to_json());
    assert_eq!(t.in_flight_count, 1);
    assert_eq!(r.in_flight_count, 1);
    assert!(t.differences.to_vec()[0].in_flight);
    assert_eq!(
        r.to_json()["tables"][0]["differences"][0]["in_flight"],
        json!(true)
    );

    // An old difference makes it divergent; the young one stays flagged.
    dbs.exec(1, "UPDATE t SET v = 0 WHERE id = 9;").await;
    let r = run_both(&c, &o).await;
    let t = table(&r, "public.t");
    assert_eq!(t.status, TableStatus::Divergent);
    assert_eq!(t.difference_count, 2);
    assert_eq!(t.in_flight_count, 1);

    // Without a window nothing is in flight.
    let r = c
        .run(&CheckOptions {
            lag_window: Some(Duration::ZERO),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(table(&r, "public.t").in_flight_count, 0);
}
