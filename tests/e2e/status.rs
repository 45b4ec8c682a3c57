//! `eden-reconcile status`: replication health per region, on real replication.
//!
//! - a real two-way pglogical pair (`eden_test_util::pglogical`): healthy, then with one
//!   subscription disabled;
//! - native logical replication between two throwaway clusters: healthy, then unresolved
//!   conflicts and a disabled subscription;
//! - a region that cannot be reached is reported, not fatal.

use std::path::Path;
use std::time::{Duration, Instant};

use eden_test_util::pglogical::{DB, Pair};
use eden_test_util::{ClusterOptions, TestCluster, TestDbs};
use serde_json::Value;

use crate::common::{Run, run};

/// The two-region config of the guide, pointing at the pair's clusters.
fn write_config(dir: &Path, ports: [u16; 2], provider: &str, db: &str) -> std::path::PathBuf {
    let cfg = dir.join("postgresql-multi-region.yaml");
    std::fs::write(
        &cfg,
        format!(
            "global:
  replication_user: replication_user
  max_replication_lag_seconds: 300
  conflict_resolution: last_write_wins
regions:
  - name: us-east-1
    role: active
    instance: {{ host: 127.0.0.1, port: {}, user: postgres }}
  - name: us-west-2
    role: active
    instance: {{ host: 127.0.0.1, port: {}, user: postgres }}
replication:
  provider: {provider}
  node_groups:
    - name: eden_vault_group
      database: {db}
",
            ports[0], ports[1]
        ),
    )
    .unwrap();
    cfg
}

fn status(cfg: &Path, db: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--config", cfg.to_str().unwrap(), "status", "--db", db];
    args.extend_from_slice(extra);
    run(args)
}

fn region<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == name)
        .unwrap_or_else(|| panic!("no region {name} in {doc:#}"))
}

fn problems(r: &Value) -> Vec<String> {
    r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn status_on_a_pglogical_pair_healthy_then_one_subscription_disabled() {
    let pair = Pair::start_clusters();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        [pair.a.cluster.port, pair.b.cluster.port],
        "pglogical",
        DB,
    );
    run(["--config", cfg.to_str().unwrap(), "init", "--db", DB]).assert_code(0);
    pair.replicate();

    // Healthy: both subscriptions replicate, both slots stream, lag is a number.
    let human = status(&cfg, DB, &[]);
    println!("--- status, healthy ---\n{}", human.stdout);
    human.assert_code(0);
    assert!(human.stdout.contains("healthy"), "{}", human.stdout);
    let r = status(&cfg, DB, &["--format", "json"]);
    r.assert_code(0);
    let doc = r.json();
    assert_eq!(doc["database"], DB);
    assert_eq!(doc["kind"], "postgresql");
    assert_eq!(doc["healthy"], true, "{doc:#}");
    assert_eq!(doc["max_replication_lag_seconds"], 300);
    for (name, sub) in [("us-east-1", "from_n2"), ("us-west-2", "from_n1")] {
        let reg = region(&doc, name);
        assert_eq!(reg["reachable"], true);
        assert!(
            reg["server_version"].as_str().unwrap().starts_with("15."),
            "{reg}"
        );
        assert_eq!(reg["track_commit_timestamp"], true);
        let rep = &reg["replication"];
        assert_eq!(rep["provider"], "pglogical");
        assert_eq!(rep["subscriptions"][0]["name"], sub, "{reg:#}");
        assert_eq!(rep["subscriptions"][0]["status"], "replicating");
        let slots = rep["slots"].as_array().unwrap();
        assert_eq!(slots.len(), 1, "{reg:#}");
        assert_eq!(slots[0]["active"], true);
        assert!(slots[0]["retained_bytes"].as_i64().unwrap() >= 0);
        assert!(rep["lag_seconds"].as_f64().unwrap() >= 0.0, "{reg:#}");
        assert_eq!(reg["conflicts"]["last_24h"], 0);
        assert_eq!(reg["conflicts"]["unresolved"], 0);
        assert_eq!(reg["conflicts"]["table_exists"], true);
        assert!(problems(reg).is_empty(), "{reg:#}");
    }

    // us-west-2 stops receiving: its subscription is disabled, us-east-1's slot idles.
    pair.pause(&pair.b);
    pair.a
        .sql("UPDATE vault_secrets SET secret = secret || 'x'");
    let human = status(&cfg, DB, &[]);
    println!(
        "--- status, one subscription disabled ---\n{}",
        human.stdout
    );
    human.assert_code(1);
    let r = status(&cfg, DB, &["--format", "json"]);
    r.assert_code(1);
    let doc = r.json();
    assert_eq!(doc["healthy"], false);
    let west = region(&doc, "us-west-2");
    assert_eq!(
        west["replication"]["subscriptions"][0]["status"],
        "disabled"
    );
    assert_eq!(west["replication"]["subscriptions"][0]["enabled"], false);
    assert!(west["replication"]["lag_seconds"].is_null(), "{west:#}");
    let wp = problems(west);
    assert!(
        wp.iter().any(|p| p.contains("from_n1")
            && p.contains("disabled")
            && p.contains("pglogical.alter_subscription_enable('from_n1')")),
        "{wp:?}"
    );
    let east = region(&doc, "us-east-1");
    assert_eq!(east["replication"]["slots"][0]["active"], false);
    assert!(
        east["replication"]["slots"][0]["retained_bytes"]
            .as_i64()
            .unwrap()
            > 0
    );
    let ep = problems(east);
    assert!(
        ep.iter()
            .any(|p| p.contains("inactive") && p.contains("retains")),
        "{ep:?}"
    );
    // Status metrics: both regions up, lag only where replicating.
    let m = dir.path().join("status.prom");
    status(&cfg, DB, &["--metrics-file", m.to_str().unwrap()]).assert_code(1);
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(text.contains(&format!(
        "eden_reconcile_region_up{{database=\"{DB}\",region=\"us-west-2\"}} 1\n"
    )));
    assert!(text.contains(&format!(
        "eden_reconcile_replication_lag_seconds{{database=\"{DB}\",region=\"us-east-1\"}}"
    )));
    assert!(!text.contains(&format!(
        "eden_reconcile_replication_lag_seconds{{database=\"{DB}\",region=\"us-west-2\"}}"
    )));
    assert!(text.contains(&format!(
        "eden_reconcile_run_exit_code{{command=\"status\",database=\"{DB}\"}} 1\n"
    )));

    pair.resume(&pair.b);
    pair.catch_up();
    let r = status(&cfg, DB, &["--format", "json"]);
    assert_eq!(r.json()["healthy"], true, "{}", r.stdout);
    r.assert_code(0);
}

/// Waits until every native subscription of `db` in `c` has copied its tables.
fn wait_synced(c: &TestCluster, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = c.psql(
            db,
            "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'",
        );
        let workers = c.psql(
            db,
            "SELECT count(*) FROM pg_stat_subscription WHERE relid IS NULL AND pid IS NOT NULL",
        );
        if pending.trim() == "0" && workers.trim() == "1" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "native subscription did not sync: {pending} table(s) pending, {workers} worker(s)\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_on_native_logical_replication() {
    let db = "eden_native";
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| TestCluster::start(ClusterOptions::new().logical()));
        let b = s.spawn(|| TestCluster::start(ClusterOptions::new().logical()));
        (a.join().unwrap(), b.join().unwrap())
    });
    // PostgreSQL 15 has no origin filter, so each direction carries a table of its own.
    for c in [&a, &b] {
        c.psql("postgres", &format!("CREATE DATABASE {db}"));
        c.psql(
            db,
            "CREATE TABLE from_east (id int PRIMARY KEY, v text); CREATE TABLE from_west (id int PRIMARY KEY, v text)",
        );
    }
    a.psql(db, "CREATE PUBLICATION east_pub FOR TABLE from_east");
    b.psql(db, "CREATE PUBLICATION west_pub FOR TABLE from_west");
    a.psql(db, "INSERT INTO from_east VALUES (1, 'a')");
    let conn =
        |c: &TestCluster| format!("host=127.0.0.1 port={} dbname={db} user=postgres", c.port);
    b.psql(
        db,
        &format!(
            "CREATE SUBSCRIPTION sub_from_east CONNECTION '{}' PUBLICATION east_pub",
            conn(&a)
        ),
    );
    a.psql(
        db,
        &format!(
            "CREATE SUBSCRIPTION sub_from_west CONNECTION '{}' PUBLICATION west_pub",
            conn(&b)
        ),
    );
    wait_synced(&a, db);
    wait_synced(&b, db);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), [a.port, b.port], "native", db);
    run(["--config", cfg.to_str().unwrap(), "init", "--db", db]).assert_code(0);

    let r = status(&cfg, db, &["--format", "json"]);
    let doc = r.json();
    r.assert_code(0);
    for (name, sub) in [
        ("us-east-1", "sub_from_west"),
        ("us-west-2", "sub_from_east"),
    ] {
        let reg = region(&doc, name);
        let rep = &reg["replication"];
        assert_eq!(rep["provider"], "native", "{reg:#}");
        assert_eq!(rep["subscriptions"][0]["name"], sub);
        assert_eq!(rep["subscriptions"][0]["status"], "replicating");
        // PostgreSQL 15+ counters of pg_stat_subscription_stats.
        assert_eq!(rep["subscriptions"][0]["counters"]["apply_error_count"], 0);
        assert_eq!(rep["slots"][0]["active"], true, "{reg:#}");
        assert!(rep["lag_seconds"].as_f64().is_some(), "{reg:#}");
        assert_eq!(reg["conflicts"]["unresolved"], 0);
    }

    // An unresolved conflict record, and a subscription switched off.
    b.psql(
        db,
        "INSERT INTO replication_conflicts (table_name, key, conflict_type, local_region) \
         VALUES ('public.from_east', '{\"id\": 1}', 'update_differs', 'us-west-2')",
    );
    a.psql(db, "ALTER SUBSCRIPTION sub_from_west DISABLE");
    let r = status(&cfg, db, &["--format", "json"]);
    r.assert_code(1);
    let doc = r.json();
    let west = region(&doc, "us-west-2");
    assert_eq!(west["conflicts"]["unresolved"], 1);
    assert_eq!(west["conflicts"]["last_24h"], 1);
    assert!(
        problems(west)
            .iter()
            .any(|p| p.contains("1 unresolved conflict")
                && p.contains(&format!("conflicts --db {db} --in us-west-2 --unresolved"))),
        "{west:#}"
    );
    let east = region(&doc, "us-east-1");
    assert_eq!(
        east["replication"]["subscriptions"][0]["status"],
        "disabled"
    );
    assert!(
        problems(east)
            .iter()
            .any(|p| p.contains("ALTER SUBSCRIPTION sub_from_west ENABLE")),
        "{east:#}"
    );
}

#[tokio::test]
async fn status_reports_an_unreachable_region_and_goes_on() {
    let dbs = TestDbs::new("e2e_status_unreachable", 1).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let args = |fmt: &str| {
        vec![
            "--format".to_string(),
            fmt.to_string(),
            "status".into(),
            "--db".into(),
            dbs.name(0).into(),
            "--region".into(),
            format!("us-east-1={}", dbs.url(0)),
            "--region".into(),
            format!("us-west-2=postgres://postgres:secret-pw@127.0.0.1:{port}/x"),
        ]
    };
    let r = run(args("json"));
    r.assert_code(1);
    assert!(!r.stdout.contains("secret-pw") && !r.stderr.contains("secret-pw"));
    let doc = r.json();
    assert_eq!(doc["healthy"], false);
    let west = region(&doc, "us-west-2");
    assert_eq!(west["reachable"], false);
    assert!(
        problems(west)
            .iter()
            .any(|p| p.contains("us-west-2") && p.contains("unreachable")),
        "{west:#}"
    );
    let east = region(&doc, "us-east-1");
    assert_eq!(east["reachable"], true);
    assert!(east["server_version"].is_string());
    // No replication_conflicts yet (init not run): no records, and it says so.
    assert_eq!(
        east["conflicts"],
        serde_json::json!({"last_24h": 0, "unresolved": 0, "table_exists": false})
    );
    let human = run(args("human"));
    human.assert_code(1);
    assert!(human.stdout.contains("us-west-2  NO"), "{}", human.stdout);

    // Usage: no --db is exit 2 with one sentence.
    run(["status", "--region", &format!("us-east-1={}", dbs.url(0))]).assert_one_line_error();
}
