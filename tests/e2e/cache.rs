//! Redis caches through the real binary: exit codes, the JSON shapes, config files of both
//! kinds, authentication and connection errors.

use eden_test_util::redis::TestRedis;

use crate::common::{eden, run, run_cmd};

fn regions(a: &TestRedis, b: &TestRedis) -> Vec<String> {
    vec![
        "--region".into(),
        format!("us-east-1={}", a.url()),
        "--region".into(),
        format!("us-west-2={}", b.url()),
        "--round-pause".into(),
        "20ms".into(),
    ]
}

fn seed(a: &TestRedis, b: &TestRedis) {
    for s in [a, b] {
        s.cli(&["set", "session:1", "alice", "EX", "3600"]);
        s.cli(&["hset", "tenant:1", "plan", "pro", "seats", "10"]);
        s.cli(&["zadd", "board", "10", "alice", "20", "bob"]);
    }
    a.cli(&["set", "session:42", "bob"]);
    b.cli(&["hset", "tenant:1", "seats", "11"]);
    b.cli(&["incr", "ratelimit:1"]);
}

fn args(cmd: &[&str], rest: &[String]) -> Vec<String> {
    let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    v.extend(rest.iter().cloned());
    v
}

#[test]
fn check_reports_the_contract_json_and_fix_repairs() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    seed(&a, &b);
    let r = regions(&a, &b);
    let out = run(args(
        &["check", "--db", "eden_cache", "--format", "json"],
        &r,
    ));
    out.assert_code(1);
    let j = out.json();
    assert_eq!(j["database"], "eden_cache");
    assert_eq!(j["kind"], "redis");
    assert_eq!(j["regions"], serde_json::json!(["us-east-1", "us-west-2"]));
    assert_eq!(j["consistent"], false);
    assert_eq!(
        j["key_counts"],
        serde_json::json!({"us-east-1": 4, "us-west-2": 4})
    );
    assert_eq!(j["difference_count"], 3);
    assert_eq!(j["in_flight_count"], 0);
    let d = j["differences"].as_array().unwrap();
    let keys: Vec<&str> = d.iter().map(|x| x["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["ratelimit:1", "session:42", "tenant:1"]);
    assert_eq!(d[0]["missing_in"], serde_json::json!(["us-east-1"]));
    assert_eq!(d[0]["changed"], serde_json::json!([]));
    assert_eq!(d[2]["changed"], serde_json::json!(["value"]));

    // Human output names the keys and the verdict.
    let human = run(args(&["check", "--db", "eden_cache"], &r));
    human.assert_code(1);
    assert!(
        human.stdout.contains("session:42: missing in us-west-2"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("NOT consistent"));

    // --dry-run: the plan, exit 1, nothing written.
    let before = (a.cli(&["debug", "digest"]), b.cli(&["debug", "digest"]));
    let dir = tempfile::tempdir().unwrap();
    let plan = run_cmd(eden().current_dir(dir.path()).args(args(
        &["fix", "--db", "eden_cache", "--dry-run", "--format", "json"],
        &r,
    )));
    plan.assert_code(1);
    let p = plan.json();
    assert_eq!(p["dry_run"], true);
    assert_eq!(p["consistent"], false);
    assert!(p["run_id"].is_string());
    let t = &p["tables"][0];
    assert_eq!(t["table"], "eden_cache");
    assert_eq!(t["resolution"], "invalidate");
    assert_eq!(t["applied"], 0);
    let a0 = &t["actions"][0];
    assert_eq!(a0["key"], "ratelimit:1");
    assert_eq!(a0["region"], "us-west-2");
    assert_eq!(a0["action"], "delete");
    assert!(a0["winner_region"].is_null());
    assert_eq!(
        before,
        (a.cli(&["debug", "digest"]), b.cli(&["debug", "digest"]))
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // fix --from us-east-1: copies, archives to the default file in the current folder.
    let fixed = run_cmd(eden().current_dir(dir.path()).args(args(
        &[
            "fix",
            "--db",
            "eden_cache",
            "--from",
            "us-east-1",
            "--format",
            "json",
        ],
        &r,
    )));
    fixed.assert_code(0);
    let f = fixed.json();
    assert_eq!(f["consistent"], true);
    assert_eq!(f["tables"][0]["resolution"], "from:us-east-1");
    assert_eq!(f["tables"][0]["applied"], 3);
    for a in f["tables"][0]["actions"].as_array().unwrap() {
        assert_eq!(a["winner_region"], "us-east-1");
    }
    let archive = f["archive"].as_str().unwrap();
    assert!(archive.starts_with("eden-cache-archive-") && archive.ends_with(".jsonl"));
    let lines = std::fs::read_to_string(dir.path().join(archive)).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}"); // ratelimit:1 deleted, tenant:1 overwritten
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for field in ["run_id", "region", "key", "dump_base64", "pttl"] {
            assert!(v.get(field).is_some(), "{field} missing in {l}");
        }
    }
    assert_eq!(b.cli(&["hget", "tenant:1", "seats"]).trim(), "10");
    run(args(&["check", "--db", "eden_cache"], &r)).assert_code(0);
}

#[test]
fn config_files_are_recognised_by_content() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    seed(&a, &b);
    let dir = tempfile::tempdir().unwrap();
    let redis_yaml = dir.path().join("redis-multi-region.yaml");
    std::fs::write(
        &redis_yaml,
        format!(
            "global:\n  replication_type: active-active\n  sync_interval_ms: 1\nregions:\n  - name: us-east-1\n    role: active\n    instance:\n      host: 127.0.0.1\n      port: {}\n  - name: us-west-2\n    role: active\n    instance:\n      host: 127.0.0.1\n      port: {}\ndatabases:\n  - name: eden_cache\n    shards: 3\n    regions: [us-east-1, us-west-2]\n    crdt_options:\n      oss_cluster_api_compatible: true\n",
            a.port, b.port
        ),
    )
    .unwrap();
    let pg_yaml = dir.path().join("postgresql-multi-region.yaml");
    std::fs::write(
        &pg_yaml,
        "regions:\n  - name: us-east-1\n    instance: { host: 127.0.0.1, port: 1 }\nreplication:\n  provider: pglogical\n  node_groups:\n    - name: g\n      database: eden_vault\n",
    )
    .unwrap();
    let both = [
        "--config".to_string(),
        pg_yaml.display().to_string(),
        "--config".to_string(),
        redis_yaml.display().to_string(),
    ];
    let out = run(args(
        &[
            "check",
            "--db",
            "eden_cache",
            "--rounds",
            "0",
            "--format",
            "json",
        ],
        &both,
    ));
    out.assert_code(1);
    assert_eq!(out.json()["difference_count"], 3);
    // A name in both files is a usage error.
    let clash = pg_yaml.with_file_name("pg2.yaml");
    std::fs::write(
        &clash,
        "regions:\n  - name: us-east-1\n    instance: { host: 127.0.0.1, port: 1 }\nreplication:\n  node_groups:\n    - name: g\n      database: eden_cache\n",
    )
    .unwrap();
    let out = run([
        "--config",
        clash.to_str().unwrap(),
        "--config",
        redis_yaml.to_str().unwrap(),
        "check",
        "--db",
        "eden_cache",
    ]);
    out.assert_one_line_error();
    assert!(out.stderr.contains("both"), "{}", out.stderr);
    // PostgreSQL-only commands refuse a cache.
    let out = run([
        "--config",
        redis_yaml.to_str().unwrap(),
        "init",
        "--db",
        "eden_cache",
    ]);
    out.assert_one_line_error();
    assert!(out.stderr.contains("Redis cache"), "{}", out.stderr);
}

#[test]
fn passwords_acl_users_and_unreachable_regions() {
    let a = TestRedis::start_with(&["--requirepass", "s3cret-pw"]);
    let b = TestRedis::start_with(&["--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"]);
    a.cli(&["-a", "s3cret-pw", "--no-auth-warning", "set", "k", "v"]);
    b.cli(&[
        "--user",
        "alice",
        "--pass",
        "alice-pw",
        "--no-auth-warning",
        "set",
        "k",
        "v",
    ]);
    let ok = run_cmd(eden().env("REDISCLI_AUTH", "s3cret-pw").args([
        "check",
        "--db",
        "eden_cache",
        "--region",
        &format!("us-east-1=redis://127.0.0.1:{}", a.port),
        "--region",
        &format!("us-west-2=redis://alice:alice-pw@127.0.0.1:{}", b.port),
    ]));
    ok.assert_code(0);
    // Wrong password: exit 2, one line naming the region, never the password.
    let bad = run([
        "check",
        "--db",
        "eden_cache",
        "--region",
        &format!("us-east-1=redis://:wrong-pw-123@127.0.0.1:{}", a.port),
    ]);
    bad.assert_one_line_error();
    assert!(bad.stderr.contains("us-east-1"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("wrong-pw-123"), "{}", bad.stderr);
    // Unreachable: both regions named in one sentence.
    let dead = TestRedis::start();
    let port = dead.port;
    drop(dead);
    let out = run([
        "check",
        "--db",
        "eden_cache",
        "--connect-timeout",
        "2s",
        "--region",
        &format!("us-east-1=redis://u:hidden-pw@127.0.0.1:{port}"),
        "--region",
        &format!("us-west-2=rediss://127.0.0.1:{port}"),
    ]);
    out.assert_one_line_error();
    assert!(
        out.stderr.contains("us-east-1") && out.stderr.contains("us-west-2"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hidden-pw"));
    // A malformed URL is a usage error that does not echo it.
    let out = run([
        "check",
        "--db",
        "c",
        "--region",
        "x=redis://u:pw-777@h:notaport",
    ]);
    out.assert_one_line_error();
    assert!(!out.stderr.contains("pw-777"), "{}", out.stderr);
}

#[test]
fn tls_regions_through_rustls() {
    let (server, tls_port) = TestRedis::start_tls();
    server.cli(&["set", "k", "v"]);
    let ca = server.dir.path().join("ca.crt");
    let url = |host: &str| format!("rediss://{host}:{tls_port}/0?ca_file={}", ca.display());
    let out = run([
        "check",
        "--db",
        "eden_cache",
        "--region",
        &format!("us-east-1={}", url("localhost")),
        "--region",
        &format!("us-west-2={}", url("127.0.0.1")),
        "--format",
        "json",
    ]);
    out.assert_code(0);
    assert_eq!(out.json()["key_counts"]["us-east-1"], 1);
    // Without the CA the server is not trusted: exit 2, naming the region.
    let out = run([
        "check",
        "--db",
        "eden_cache",
        "--region",
        &format!("us-east-1=rediss://localhost:{tls_port}"),
    ]);
    out.assert_one_line_error();
    assert!(
        out.stderr.contains("us-east-1") && out.stderr.contains("certificate"),
        "{}",
        out.stderr
    );
}

#[test]
fn status_reports_roles_links_and_unreachable_regions() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    a.cli(&["set", "k1", "v"]);
    a.cli(&["set", "k2", "v"]);
    let metrics = tempfile::tempdir().unwrap();
    let prom = metrics.path().join("eden.prom");
    // A healthy pair: exit 0, the contract's shape with the Redis facts of their own.
    let out = run(args(
        &[
            "status",
            "--db",
            "eden_cache",
            "--format",
            "json",
            "--metrics-file",
            prom.to_str().unwrap(),
        ],
        &regions(&a, &b)[..4],
    ));
    out.assert_code(0);
    let j = out.json();
    assert_eq!(j["database"], "eden_cache");
    assert_eq!(j["kind"], "redis");
    assert_eq!(j["healthy"], true);
    let r = j["regions"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["region"], "us-east-1");
    assert_eq!(r[0]["reachable"], true);
    assert!(r[0]["server_version"].as_str().unwrap().contains('.'));
    assert_eq!(r[0]["problems"], serde_json::json!([]));
    assert_eq!(r[0]["redis"]["role"], "master");
    assert_eq!(r[0]["redis"]["keys"], 2);
    assert_eq!(r[1]["redis"]["keys"], 0);
    assert!(r[0]["redis"]["used_memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(r[0]["redis"]["links"][0]["connected_slaves"], 0);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains(r#"eden_reconcile_region_up{database="eden_cache",region="us-east-1"} 1"#),
        "{text}"
    );

    // One region unreachable, one a replica whose master is gone: exit 1, both named,
    // the others still reported.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    b.cli(&["replicaof", "127.0.0.1", &dead.to_string()]);
    let mut r = regions(&a, &b)[..4].to_vec();
    r.extend([
        "--region".into(),
        format!("eu-west-1=redis://127.0.0.1:{dead}"),
    ]);
    let out = run(args(
        &[
            "status",
            "--db",
            "eden_cache",
            "--format",
            "json",
            "--metrics-file",
            prom.to_str().unwrap(),
        ],
        &r,
    ));
    out.assert_code(1);
    let j = out.json();
    assert_eq!(j["healthy"], false);
    let regs = j["regions"].as_array().unwrap();
    assert_eq!(regs[0]["problems"], serde_json::json!([]));
    assert_eq!(regs[1]["redis"]["role"], "slave");
    let link = &regs[1]["redis"]["links"][0];
    assert_eq!(link["master_link_status"], "down");
    assert_eq!(link["master"], format!("127.0.0.1:{dead}"));
    let p = regs[1]["problems"][0].as_str().unwrap();
    assert!(
        p.contains("us-west-2") && p.contains("link to its master"),
        "{p}"
    );
    assert_eq!(regs[2]["reachable"], false);
    assert!(
        regs[2]["problems"][0]
            .as_str()
            .unwrap()
            .contains("eu-west-1")
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains(r#"eden_reconcile_region_up{database="eden_cache",region="eu-west-1"} 0"#),
        "{text}"
    );

    // The human table: one aligned line per region, then the problems.
    let out = run(args(&["status", "--db", "eden_cache"], &r));
    out.assert_code(1);
    println!("{}", out.stdout);
    assert!(
        out.stdout.starts_with("eden_cache (redis): 2 problem(s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("replica of 127.0.0.1:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("problems:"), "{}", out.stdout);
    assert!(!out.stderr.contains("redis://"), "{}", out.stderr);
}

/// Starts `fix` on a cache with a difference whose re-reads take a few seconds, and waits
/// until it holds the run lock.
fn slow_fix(
    a: &TestRedis,
    b: &TestRedis,
    ttl_ms: &str,
    dir: &std::path::Path,
) -> std::process::Child {
    a.cli(&["set", "slow:1", "x"]);
    let mut child = eden()
        .args([
            "fix",
            "--db",
            "eden_cache",
            "--region",
            &format!("us-east-1={}", a.url()),
            "--region",
            &format!("us-west-2={}", b.url()),
            "--rounds",
            "3",
            "--round-pause",
            "1500ms",
            "--archive",
            dir.join("first.jsonl").to_str().unwrap(),
        ])
        .env("EDEN_RECONCILE_REDIS_LOCK_TTL_MS", ttl_ms)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if a.cli(&["exists", "eden-reconcile:lock:eden_cache"]).trim() == "1" {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the first fix never took the lock");
}

#[test]
fn fix_holds_a_renewed_lock_key_a_second_fix_is_refused_or_waits() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("second.jsonl");
    let mut first = slow_fix(&a, &b, "1000", dir.path());
    let pid = first.id();
    // Longer than the 1 s expiry: the holder renews it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = regions(&a, &b);
    let out = run(args(&["fix", "--db", "eden_cache"], &r));
    out.assert_code(2);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("locked by"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("pid={pid}")), "{}", out.stderr);
    assert!(
        out.stderr.contains("host=") && out.stderr.contains("started="),
        "{}",
        out.stderr
    );
    // The lock key is never compared: check sees only the real keys.
    let out = run(args(
        &["check", "--db", "eden_cache", "--format", "json"],
        &r,
    ));
    assert_eq!(
        out.json()["key_counts"],
        serde_json::json!({"us-east-1": 1, "us-west-2": 0})
    );
    // --dry-run takes no lock.
    run(args(&["fix", "--db", "eden_cache", "--dry-run"], &r)).assert_code(1);
    // --wait-lock waits for the holder to finish, then runs.
    let t = std::time::Instant::now();
    let out = run(args(
        &[
            "fix",
            "--db",
            "eden_cache",
            "--wait-lock",
            "30s",
            "--archive",
            archive.to_str().unwrap(),
        ],
        &r,
    ));
    out.assert_code(0);
    assert!(t.elapsed() > std::time::Duration::from_millis(500));
    assert!(first.wait().unwrap().success());
    // Released at the end.
    assert_eq!(
        a.cli(&["exists", "eden-reconcile:lock:eden_cache"]).trim(),
        "0"
    );
}

#[test]
fn a_killed_fix_lock_key_expires() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("second.jsonl");
    let mut first = slow_fix(&a, &b, "1000", dir.path());
    let r = regions(&a, &b);
    let out = run(args(
        &["fix", "--db", "eden_cache", "--wait-lock", "500ms"],
        &r,
    ));
    out.assert_code(2);
    assert!(
        out.stderr.contains("still held after waiting"),
        "{}",
        out.stderr
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let out = run(args(&["fix", "--db", "eden_cache"], &r));
    out.assert_code(2);
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let out = run(args(
        &[
            "fix",
            "--db",
            "eden_cache",
            "--archive",
            archive.to_str().unwrap(),
        ],
        &r,
    ));
    out.assert_code(0);
    assert_eq!(a.cli(&["exists", "slow:1"]).trim(), "0");
}
