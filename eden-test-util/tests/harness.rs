//! The harness itself, against the real server.

use eden_test_util::{ClusterOptions, TestCluster, TestDbs, run_bin};

#[tokio::test]
async fn dbs_are_created_separate_and_dropped() {
    let names;
    {
        let dbs = TestDbs::new("harness_dbs", 2).await;
        assert_eq!(dbs.region_names(), vec!["r1", "r2"]);
        assert_eq!(dbs.region_args()[0], "--region");
        assert!(dbs.region_args()[1].starts_with("r1=postgres://"));
        dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY)").await;
        dbs.exec(0, "INSERT INTO t VALUES (1)").await;
        assert_eq!(
            dbs.query_texts(0, "SELECT count(*)::text FROM t").await,
            vec![Some("1".into())]
        );
        assert_eq!(
            dbs.query_texts(1, "SELECT count(*)::text FROM t").await,
            vec![Some("0".into())]
        );
        // An open client does not prevent the drop.
        let _c = dbs.client(0).await;
        names = vec![dbs.name(0).to_string(), dbs.name(1).to_string()];
        // Re-creating the same name drops the leftovers.
        drop(dbs);
    }
    let admin = eden_test_util::TestDbs::new("harness_admin_probe", 1).await;
    let c = admin.client(0).await;
    for n in names {
        let row = c
            .query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&n])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 0, "{n} still exists");
    }
}

#[tokio::test]
async fn leftovers_are_replaced() {
    let a = TestDbs::new("harness_leftover", 1).await;
    a.exec(0, "CREATE TABLE leftover (x int)").await;
    std::mem::forget(a); // simulate a crash
    let b = TestDbs::new("harness_leftover", 1).await;
    let n = b
        .query_texts(
            0,
            "SELECT count(*)::text FROM pg_class WHERE relname = 'leftover'",
        )
        .await;
    assert_eq!(n, vec![Some("0".into())]);
}

#[test]
fn drop_works_without_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dbs = rt.block_on(TestDbs::new_named("harness_sync_drop", &["us-east-1"]));
    assert_eq!(dbs.region(0), "us-east-1");
    drop(rt);
    drop(dbs);
}

#[test]
fn cluster_with_settings_and_password() {
    let c = TestCluster::start(
        ClusterOptions::new()
            .setting("timezone", "'America/New_York'")
            .logical()
            .password("s3cret")
            .hba_line("host all all 127.0.0.1/32 scram-sha-256"),
    );
    assert_eq!(
        c.psql("postgres", "SHOW timezone").trim(),
        "America/New_York"
    );
    assert_eq!(c.psql("postgres", "SHOW wal_level").trim(), "logical");
    c.psql("postgres", "CREATE DATABASE app");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = c.client("app").await;
        let r = client
            .query_one("SELECT current_setting('track_commit_timestamp')", &[])
            .await
            .unwrap();
        assert_eq!(r.get::<_, String>(0), "on");
        // Without a password the login is refused.
        let url = c.url("app");
        assert!(
            tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .is_err()
        );
    });
}

#[test]
fn cluster_with_ssl() {
    let c = TestCluster::start(ClusterOptions::new().ssl());
    assert_eq!(c.psql("postgres", "SHOW ssl").trim(), "on");
    assert!(c.ca_cert_path().unwrap().exists());
    let out = run_bin(
        "/usr/bin/psql",
        [
            format!(
                "{}?sslmode=verify-full&sslrootcert={}",
                c.url("postgres"),
                c.ca_cert_path().unwrap().display()
            ),
            "-XAtc".into(),
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()".into(),
        ],
        &[],
    );
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "t");
}

#[test]
fn cluster_with_icu_locale() {
    let c = TestCluster::start(
        ClusterOptions::new()
            .initdb_arg("--locale-provider=icu")
            .initdb_arg("--icu-locale=de-DE"),
    );
    let out = c.psql("postgres", "SELECT datlocprovider::text || ' ' || daticulocale FROM pg_database WHERE datname = 'template1'");
    assert_eq!(out.trim(), "i de-DE");
}

#[test]
fn clusters_in_parallel_get_distinct_ports() {
    let a = std::thread::spawn(|| TestCluster::start(ClusterOptions::new()));
    let b = std::thread::spawn(|| TestCluster::start(ClusterOptions::new()));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_ne!(a.port, b.port);
    assert_eq!(a.psql("postgres", "SELECT 1").trim(), "1");
    assert_eq!(b.psql("postgres", "SELECT 1").trim(), "1");
}

#[test]
fn clusters_of_dead_processes_are_reaped() {
    let c = TestCluster::start(ClusterOptions::new());
    let dir = c.dir.path().to_path_buf();
    // Pretend the owner died: a pid that cannot exist.
    std::fs::write(dir.join("owner.pid"), "4194399").unwrap();
    std::mem::forget(c);
    let _d = TestCluster::start(ClusterOptions::new());
    assert!(!dir.exists(), "orphan cluster dir still there");
}
