//! The run lock through the library: one holder per database, the second told who holds
//! it, a bounded wait, and release (explicit or by closing the session).

use std::time::{Duration, Instant};

use eden_consistency::Config;
use eden_consistency::lock;
use eden_consistency::{ConnectOptions, connect_all};
use eden_test_util::TestDbs;

#[tokio::test]
async fn one_holder_per_database_named_to_the_next() {
    let dbs = TestDbs::new("lock_one_holder", 2).await;
    let mut cfg = Config::default();
    for i in 0..2 {
        cfg.apply_region_flag(&format!("{}={}", dbs.region(i), dbs.url(i)))
            .unwrap();
    }
    let regions = connect_all(&cfg, None, &ConnectOptions::default())
        .await
        .unwrap();
    let held = lock::acquire(&regions[0], "fix", None).await.unwrap();
    assert_eq!(held.region(), "r1");

    // The holder is visible, with this process's id.
    let holder = lock::holder(&regions[0].client).await.unwrap().unwrap();
    assert_eq!(holder.command.as_deref(), Some("fix"));
    assert_eq!(holder.pid, Some(std::process::id()));
    assert!(holder.started.is_some() && holder.host.is_some());

    // A second taker fails at once, naming it; with a wait, after the wait.
    let e = lock::acquire(&regions[0], "check", None).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "is locked by an eden-reconcile fix run (pid {}",
            std::process::id()
        )) && msg.contains("in region r1"),
        "{msg}"
    );
    let t = Instant::now();
    let e = lock::acquire(&regions[0], "check", Some(Duration::from_millis(700)))
        .await
        .unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(700));
    assert!(
        e.to_string().contains("still held after waiting 700ms"),
        "{e}"
    );

    // Another database is another lock.
    let other = lock::acquire(&regions[1], "fix", None).await.unwrap();

    // Released explicitly: the next taker gets it; dropped: the same.
    held.release().await.unwrap();
    let again = lock::acquire(&regions[0], "undo", None).await.unwrap();
    drop(again);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match lock::acquire(&regions[0], "fix", None).await {
            Ok(l) => {
                l.release().await.unwrap();
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "dropped lock never freed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    other.release().await.unwrap();
    assert!(lock::holder(&regions[0].client).await.unwrap().is_none());
}
