//! The library's error keeps what a service needs to act on: the region, the table, the
//! server's SQLSTATE, whether the connection broke, and the driver's error as its source.

use std::error::Error as _;

use eden_consistency::{Error, TableName, conflicts};
use eden_test_util::TestDbs;

#[tokio::test]
async fn errors_keep_sqlstate_region_and_source() {
    let dbs = TestDbs::new("errors_keep_sqlstate", 1).await;
    let c = dbs.client(0).await;
    // A table that does not exist: the server refuses with undefined_table.
    let pg = c
        .query("SELECT * FROM no_such_table", &[])
        .await
        .unwrap_err();
    let err = Error::query("r1", "reading no_such_table", pg);
    assert_eq!(err.code(), Some("42P01"), "{err}");
    assert_eq!(err.region(), Some("r1"));
    assert!(!err.is_connection(), "{err}");
    assert!(err.source().is_some(), "{err:?}");
    assert!(err.to_string().starts_with("region r1: "), "{err}");
    let named = err.with_table(TableName::new("public", "t"));
    assert_eq!(named.table(), Some("public.t"));
    // A config error has no SQLSTATE and no region.
    let cfg_err = Error::Config {
        file: "f.yaml".into(),
        message: "bad".into(),
    };
    assert_eq!(cfg_err.code(), None);
    assert_eq!(cfg_err.region(), None);
}

#[tokio::test]
async fn errors_tell_a_lost_connection() {
    let dbs = TestDbs::new("errors_lost_connection", 1).await;
    let victim = dbs.client(0).await;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let killer = dbs.client(0).await;
    killer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    // Wait until the server has ended it.
    for _ in 0..100 {
        let alive: bool = killer
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if !alive {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let err = conflicts::init(&victim, "r1", &conflicts::table_name(None))
        .await
        .unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert_eq!(err.region(), Some("r1"));
}
