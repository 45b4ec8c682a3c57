//! `check --incremental`, `check --shard I/N` and `merge-reports` through the real binary
//! (see `docs/incremental.md` and `docs/sharding.md`).

use eden_test_util::TestDbs;
use serde_json::json;

use crate::common::run;

fn config_file(dbs: &TestDbs, dir: &std::path::Path) -> std::path::PathBuf {
    let regions: String = dbs
        .region_names()
        .iter()
        .map(|r| format!("  - name: {r}\n    instance: {{ host: 127.0.0.1, port: 5432 }}\n"))
        .collect();
    let yaml = format!(
        "global:\n  conflict_resolution: last_write_wins\nregions:\n{regions}replication:\n  node_groups:\n    - name: app_group\n      database: app\n      conflict_resolution_tables:\n        - {{table: vault_secrets, resolution: last_write_wins, tracking_column: last_updated_at}}\n"
    );
    let path = dir.join("postgresql-multi-region.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn check_args(dbs: &TestDbs, cfg: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["--config".into(), cfg.display().to_string(), "check".into()];
    a.extend(["--db".to_string(), "app".to_string()]);
    a.extend(dbs.region_args());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

const SETUP: &str = "CREATE TABLE vault_secrets(id bigint PRIMARY KEY, secret text, last_updated_at timestamptz NOT NULL);
     CREATE INDEX ON vault_secrets(last_updated_at);
     INSERT INTO vault_secrets SELECT g, 's' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
       FROM generate_series(1, 20000) g;
     ANALYZE vault_secrets;";

#[tokio::test]
async fn incremental_check_reuses_the_state_and_says_what_it_rehashed() {
    let dbs = TestDbs::new_named("e2e_incremental", &["us-east-1", "us-west-2"]).await;
    dbs.exec_all(SETUP).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dbs, dir.path());
    let state = dir.path().join("state").join("check-state.json");
    let st = state.display().to_string();
    let inc = [
        "--format",
        "json",
        "--incremental",
        "--state",
        &st,
        "--change-margin",
        "1m",
    ];

    let first = run(check_args(&dbs, &cfg, &inc));
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    let t = &first.json()["tables"][0];
    assert_eq!(t["incremental"]["full_pass"], json!(true), "{t}");
    assert!(
        state.exists(),
        "the state file is written after a successful run"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["version"], json!(1));

    dbs.exec(
        1,
        "UPDATE vault_secrets SET secret = 'changed', last_updated_at = now() WHERE id = 777;",
    )
    .await;
    dbs.exec(0, "DELETE FROM vault_secrets WHERE id = 15000;")
        .await;
    let second = run(check_args(&dbs, &cfg, &inc));
    assert_eq!(second.code, Some(1), "{}\n{}", second.stdout, second.stderr);
    let j = second.json();
    let t = &j["tables"][0];
    assert_eq!(t["difference_count"], json!(2), "{t}");
    let i = &t["incremental"];
    assert_eq!(i["full_pass"], json!(false), "{i}");
    assert_eq!(i["tracking_column"], json!("last_updated_at"));
    assert!(
        i["chunks_rehashed"].as_u64().unwrap() < i["chunks_total"].as_u64().unwrap() / 4,
        "{i}"
    );
    assert!(i["last_full_pass_at"].is_string());
    assert_eq!(i["runs_since_full_pass"], json!(1));

    // Human output says it too.
    let human = run(check_args(&dbs, &cfg, &["--incremental", "--state", &st]));
    assert_eq!(human.code, Some(1));
    assert!(
        human.stdout.contains("incremental: re-hashed"),
        "{}",
        human.stdout
    );

    // --full-every 1: a full pass now.
    let full = run(check_args(
        &dbs,
        &cfg,
        &[&inc[..], &["--full-every", "1"]].concat(),
    ));
    assert_eq!(full.code, Some(1));
    assert_eq!(
        full.json()["tables"][0]["incremental"]["full_pass"],
        json!(true)
    );

    // Bad settings are usage errors.
    let bad = run(check_args(
        &dbs,
        &cfg,
        &["--incremental", "--full-every", "0"],
    ));
    bad.assert_code(2).assert_one_line_error();
    let orphan = run(check_args(&dbs, &cfg, &["--full-every", "3"]));
    assert_eq!(orphan.code, Some(2), "{}", orphan.stderr);
}

#[tokio::test]
async fn shards_merge_into_one_report_and_a_broken_set_is_refused() {
    let dbs = TestDbs::new_named("e2e_shards", &["us-east-1", "us-west-2"]).await;
    dbs.exec_all(&format!("{SETUP} CREATE TABLE tenants(id int PRIMARY KEY, name text); INSERT INTO tenants VALUES (1, 'a');"))
        .await;
    dbs.exec(
        1,
        "UPDATE vault_secrets SET secret = 'x' WHERE id IN (10, 19990); DELETE FROM tenants;",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dbs, dir.path());
    let whole = run(check_args(&dbs, &cfg, &["--format", "json"]));
    assert_eq!(whole.code, Some(1), "{}", whole.stderr);

    let mut files = Vec::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let r = run(check_args(
            &dbs,
            &cfg,
            &[
                "--format",
                "json",
                "--shard",
                &shard,
                "--shard-split-rows",
                "1000",
            ],
        ));
        assert!(matches!(r.code, Some(0 | 1)), "{}\n{}", r.stdout, r.stderr);
        assert_eq!(r.json()["shard"]["count"], json!(3));
        let f = dir.path().join(format!("shard-{i}.json"));
        std::fs::write(&f, &r.stdout).unwrap();
        files.push(f.display().to_string());
    }
    let mut margs = vec![
        "merge-reports".to_string(),
        "--format".into(),
        "json".into(),
    ];
    margs.extend(files.iter().cloned());
    let merged = run(&margs);
    assert_eq!(merged.code, Some(1), "{}\n{}", merged.stdout, merged.stderr);
    let m = merged.json();
    let w = whole.json();
    for (a, b) in m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .zip(w["tables"].as_array().unwrap())
    {
        for k in [
            "table",
            "status",
            "row_counts",
            "difference_count",
            "differences",
        ] {
            assert_eq!(a[k], b[k], "{k} of {}", a["table"]);
        }
    }
    assert_eq!(m["tables"].as_array().unwrap().len(), 2);
    assert_eq!(m["consistent"], json!(false));
    assert_eq!(m["merged_from"].as_array().unwrap().len(), 3);

    let human = run(["merge-reports", &files[0], &files[1], &files[2]]);
    assert_eq!(human.code, Some(1));
    assert!(
        human.stdout.contains("public.vault_secrets"),
        "{}",
        human.stdout
    );

    let missing = run(["merge-reports", &files[0], &files[2]]);
    missing.assert_code(2).assert_one_line_error();
    assert!(
        missing.stderr.contains("shard 1/3 is missing"),
        "{}",
        missing.stderr
    );
    let twice = run(["merge-reports", &files[0], &files[1], &files[1], &files[2]]);
    twice.assert_code(2);
    assert!(twice.stderr.contains("given twice"), "{}", twice.stderr);
    let bad = run(check_args(&dbs, &cfg, &["--shard", "3/3"]));
    bad.assert_code(2).assert_one_line_error();
    let none = run(["merge-reports"]);
    assert_eq!(none.code, Some(2));
}
