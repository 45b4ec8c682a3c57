//! Black-box conformance tests of the real binary, written from `CONTRACT.md` alone: every
//! observable promise of the contract (config discovery, region flags, the JSON reports, the
//! rules, `replication_conflicts`, exit codes, errors). A test here states what the contract
//! says, not what the product happens to do.

use std::path::{Path, PathBuf};

use eden_test_util::TestDbs;
use serde_json::{Value as J, json};

use crate::common::{Run, eden, run, run_cmd};

const E: &str = "us-east-1";
const W: &str = "us-west-2";

/// Writes an operator-style config: `regions` in that order (all on the local server, so a
/// `--region` flag is what points each at its own database), `global_extra` lines under
/// `global:`, and one node group for database `db` with the given rule lines.
fn write_cfg(
    dir: &Path,
    regions: &[&str],
    global_extra: &str,
    db: &str,
    rules: &[&str],
) -> PathBuf {
    let mut y = String::from(
        "global:\n  replication_user: replication_user\n  monitoring_interval_seconds: 60\n",
    );
    if !global_extra.contains("conflict_resolution") {
        y.push_str("  conflict_resolution: last_write_wins\n");
    }
    y.push_str(global_extra);
    y.push_str("regions:\n");
    for r in regions {
        y.push_str(&format!(
            "  - name: {r}\n    role: active\n    instance:\n      host: 127.0.0.1\n      port: 5432\n      parameters:\n        wal_level: logical\n        track_commit_timestamp: on\n"
        ));
    }
    y.push_str("replication:\n  provider: pglogical\n  node_groups:\n");
    y.push_str(&node_group(db, rules));
    let path = dir.join(format!("cfg-{}.yaml", fastrand_name()));
    std::fs::write(&path, y).unwrap();
    path
}

fn node_group(db: &str, rules: &[&str]) -> String {
    let mut y = format!(
        "    - name: {db}_group\n      database: {db}\n      conflict_resolution_tables:\n"
    );
    if rules.is_empty() {
        y.push_str("        []\n");
    }
    for r in rules {
        y.push_str(&format!("        - {r}\n"));
    }
    y
}

fn fastrand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// `eden-reconcile [--config cfg] ARGS --db app <region flags>`.
fn go(dbs: &TestDbs, cfg: Option<&Path>, args: &[&str]) -> Run {
    let mut a: Vec<String> = Vec::new();
    if let Some(c) = cfg {
        a.push("--config".into());
        a.push(c.display().to_string());
    }
    a.extend(args.iter().map(|s| s.to_string()));
    a.extend(["--db".to_string(), "app".to_string()]);
    a.extend(dbs.region_args());
    run(a)
}

fn table<'a>(report: &'a J, name: &str) -> &'a J {
    report["tables"]
        .as_array()
        .unwrap_or_else(|| panic!("no tables array: {report}"))
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("table {name} not in report: {report}"))
}

fn diff<'a>(t: &'a J, key: &J) -> &'a J {
    t["differences"]
        .as_array()
        .unwrap_or_else(|| panic!("no differences array: {t}"))
        .iter()
        .find(|d| &d["key"] == key)
        .unwrap_or_else(|| panic!("difference {key} not in {t}"))
}

fn actions_for<'a>(t: &'a J, key: &J) -> Vec<&'a J> {
    t["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("no actions: {t}"))
        .iter()
        .filter(|a| &a["key"] == key)
        .collect()
}

fn strs(v: &J) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

fn code(r: &Run, c: i32) {
    assert_eq!(
        r.code,
        Some(c),
        "expected exit {c}\nstdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
}

async fn one(dbs: &TestDbs, i: usize, sql: &str) -> Option<String> {
    dbs.query_texts(i, sql).await.into_iter().next().flatten()
}

async fn count(dbs: &TestDbs, i: usize, sql: &str) -> i64 {
    one(dbs, i, sql).await.unwrap().parse().unwrap()
}

async fn has_conflicts_table(dbs: &TestDbs, i: usize) -> bool {
    one(
        dbs,
        i,
        "SELECT to_regclass('public.replication_conflicts')::text",
    )
    .await
    .is_some()
}

// ---------------------------------------------------------------------------------------
// §1 config discovery, region flags, --db
// ---------------------------------------------------------------------------------------

/// `--config FILE` and `$EDEN_RECONCILE_CONFIG` both supply the config (its rules and its
/// region order); unknown keys are ignored; global options go before or after the subcommand.
#[tokio::test(flavor = "multi_thread")]
async fn contract_config_flag_env_and_option_position() {
    let dbs = TestDbs::new_named("contract_cfg_discovery", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'east')").await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'west')").await;
    let dir = tempfile::tempdir().unwrap();
    // Config lists us-west-2 first; region_priority says us-west-2 wins. Unknown keys here and there.
    let cfg = write_cfg(
        dir.path(),
        &[W, E],
        "  some_future_setting: 17\n",
        "app",
        &[
            "{table: t, resolution: region_priority, regions: [us-west-2, us-east-1], future_key: x}",
        ],
    );

    // --config before the subcommand.
    let r = go(&dbs, Some(&cfg), &["--format", "json", "fix", "--dry-run"]);
    code(&r, 1);
    let j = r.json();
    let a = actions_for(table(&j, "public.t"), &json!({"id": 1}));
    assert_eq!(a.len(), 1, "{j}");
    assert_eq!(a[0]["winner_region"], W, "{j}");
    assert_eq!(a[0]["region"], E, "{j}");
    assert_eq!(a[0]["decided_by"], "region_priority", "{j}");

    // Options after the subcommand.
    let mut args: Vec<String> = vec![
        "check".into(),
        "--format".into(),
        "json".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--db".into(),
        "app".into(),
    ];
    args.extend(dbs.region_args());
    let r = run(&args);
    code(&r, 1);
    let j = r.json();
    // Config's region order first.
    assert_eq!(j["regions"], json!([W, E]), "{j}");

    // $EDEN_RECONCILE_CONFIG.
    let mut cmd = eden();
    cmd.env("EDEN_RECONCILE_CONFIG", &cfg)
        .args(["fix", "--dry-run", "--format", "json", "--db", "app"])
        .args(dbs.region_args());
    let r = run_cmd(&mut cmd);
    code(&r, 1);
    let j = r.json();
    let a = actions_for(table(&j, "public.t"), &json!({"id": 1}));
    assert_eq!(
        a[0]["winner_region"], W,
        "config from the environment must supply the rule: {j}"
    );
    assert_eq!(j["dry_run"], true);

    // Data untouched by dry runs.
    assert_eq!(
        one(&dbs, 0, "SELECT v FROM t").await.as_deref(),
        Some("east")
    );
    assert_eq!(
        one(&dbs, 1, "SELECT v FROM t").await.as_deref(),
        Some("west")
    );
}

/// With the config's regions only (no `--region`), `--db` is the database each region's
/// instance is asked for.
#[tokio::test(flavor = "multi_thread")]
async fn contract_config_regions_and_db_without_flags() {
    let dbs = TestDbs::new_named("contract_cfg_only", &[E]).await;
    dbs.exec(
        0,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'x'), (2, 'y')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), &[E, W], "", dbs.name(0), &[]);
    let r = run([
        "--config",
        cfg.to_str().unwrap(),
        "check",
        "--db",
        dbs.name(0),
        "--format",
        "json",
    ]);
    code(&r, 0);
    let j = r.json();
    assert_eq!(j["database"], dbs.name(0), "{j}");
    assert_eq!(j["regions"], json!([E, W]), "{j}");
    assert_eq!(j["consistent"], true);
    let t = table(&j, "public.t");
    assert_eq!(t["row_counts"], json!({E: 2, W: 2}), "{j}");
}

/// `--region NAME=CONNINFO` in URL and key=value form, no config at all; a `--region`
/// overrides a config region's connection; a key=value conninfo without dbname uses `--db`.
#[tokio::test(flavor = "multi_thread")]
async fn contract_region_flag_forms_and_override() {
    let dbs = TestDbs::new_named("contract_region_forms", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'a')").await;

    // URL for one, key=value for the other, no config.
    let kv = format!(
        "{W}=host=127.0.0.1 port=5432 user=postgres dbname={}",
        dbs.name(1)
    );
    let url = format!("{E}={}", dbs.url(0));
    let r = run([
        "check", "--db", "app", "--format", "json", "--region", &url, "--region", &kv,
    ]);
    code(&r, 1);
    let j = r.json();
    assert_eq!(j["regions"], json!([E, W]), "--region order: {j}");
    let t = table(&j, "public.t");
    assert_eq!(t["row_counts"], json!({E: 2, W: 1}), "{j}");
    let d = diff(t, &json!({"id": 2}));
    assert_eq!(d["missing_in"], json!([W]), "{j}");

    // key=value without dbname: --db names the database.
    let kv_nodb = format!("{W}=host=127.0.0.1 port=5432 user=postgres");
    let r = run([
        "check",
        "--db",
        dbs.name(1),
        "--format",
        "json",
        "--region",
        &url,
        "--region",
        &kv_nodb,
    ]);
    code(&r, 1);
    let j = r.json();
    assert_eq!(
        table(&j, "public.t")["row_counts"],
        json!({E: 2, W: 1}),
        "{j}"
    );

    // A config whose us-east-1 points at a dead port: --region overrides it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dead.yaml");
    std::fs::write(
        &cfg,
        "global:\n  max_replication_lag_seconds: 0\n  conflict_resolution: last_write_wins\nregions:\n  - name: us-east-1\n    role: active\n    instance: { host: 127.0.0.1, port: 1 }\n  - name: us-west-2\n    role: active\n    instance: { host: 127.0.0.1, port: 1 }\nreplication:\n  provider: pglogical\n  node_groups:\n    - name: g\n      database: app\n",
    )
    .unwrap();
    let r = go(&dbs, Some(&cfg), &["check", "--format", "json"]);
    code(&r, 1);
    assert_eq!(r.json()["regions"], json!([E, W]));
}

/// `--db` picks the node group whose rules apply; a URL naming a database overrides `--db`
/// for the connection.
#[tokio::test(flavor = "multi_thread")]
async fn contract_db_picks_node_group() {
    let dbs = TestDbs::new_named("contract_db_group", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'east')").await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'west')").await;
    let dir = tempfile::tempdir().unwrap();
    let mut y = String::from(
        "global:\n  conflict_resolution: last_write_wins\nregions:\n  - name: us-east-1\n    role: active\n    instance: { host: 127.0.0.1, port: 5432 }\n  - name: us-west-2\n    role: active\n    instance: { host: 127.0.0.1, port: 5432 }\nreplication:\n  provider: pglogical\n  node_groups:\n",
    );
    y.push_str(&node_group(
        "db_a",
        &["{table: t, resolution: region_priority, regions: [us-west-2, us-east-1]}"],
    ));
    y.push_str(&node_group(
        "db_b",
        &["{table: t, resolution: region_priority, regions: [us-east-1, us-west-2]}"],
    ));
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, y).unwrap();
    for (db, winner, loser) in [("db_a", W, E), ("db_b", E, W)] {
        let mut a: Vec<String> = vec![
            "--config".into(),
            cfg.display().to_string(),
            "fix".into(),
            "--dry-run".into(),
            "--format".into(),
            "json".into(),
            "--db".into(),
            db.into(),
        ];
        a.extend(dbs.region_args());
        let r = run(&a);
        code(&r, 1);
        let j = r.json();
        let acts = actions_for(table(&j, "public.t"), &json!({"id": 1}));
        assert_eq!(acts.len(), 1, "{j}");
        assert_eq!(acts[0]["winner_region"], winner, "--db {db}: {j}");
        assert_eq!(acts[0]["region"], loser, "--db {db}: {j}");
    }
}

// ---------------------------------------------------------------------------------------
// §3 check --format json
// ---------------------------------------------------------------------------------------

/// The report's exact shape, key rendering (integers as numbers; text, uuid, timestamptz as
/// PostgreSQL prints them with TimeZone=UTC), even when the servers' session defaults differ.
#[tokio::test(flavor = "multi_thread")]
async fn contract_check_json_shape_and_keys() {
    let dbs = TestDbs::new_named("contract_check_shape", &[E, W]).await;
    // Session defaults that must not matter.
    dbs.exec(0, &format!("ALTER DATABASE {} SET timezone = 'America/New_York'; ALTER DATABASE {} SET datestyle = 'SQL, DMY'", dbs.name(0), dbs.name(0))).await;
    dbs.exec(1, &format!("ALTER DATABASE {} SET timezone = 'Asia/Tokyo'; ALTER DATABASE {} SET extra_float_digits = 0", dbs.name(1), dbs.name(1))).await;
    dbs.exec_all(
        "CREATE TABLE vault_secrets (id bigint PRIMARY KEY, secret text, f float8, last_updated_at timestamptz);
         CREATE TABLE comp (name text, u uuid, at timestamptz, v int, PRIMARY KEY (name, u, at));
         CREATE SCHEMA other; CREATE TABLE other.same (id int PRIMARY KEY, at timestamptz, f float8);
         INSERT INTO other.same VALUES (1, '2024-01-01 00:00:00+00', 0.1), (2, '2024-07-01 12:34:56.789+00', 1e-7);",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO vault_secrets VALUES (7, 's-new', 0.1, '2024-06-01 00:00:00+00'), (42, 'x', 1.5, '2024-01-01 00:00:00+00'), (1, 'same', 0.3, '2024-01-01 00:00:00+00');
         INSERT INTO comp VALUES ('a b', '6f1c1a3e-0000-4000-8000-000000000001', '2024-01-01 00:00:00+00', 1);",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO vault_secrets VALUES (7, 's-old', 0.1, '2024-01-01 00:00:00+00'), (1, 'same', 0.3, '2024-01-01 00:00:00+00');
         INSERT INTO comp VALUES ('a b', '6f1c1a3e-0000-4000-8000-000000000001', '2024-01-01 00:00:00+00', 2);",
    )
    .await;
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    assert_eq!(j["database"], "app", "{j}");
    assert_eq!(j["regions"], json!([E, W]));
    assert_eq!(j["consistent"], false);
    let names: Vec<&str> = j["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec!["other.same", "public.comp", "public.vault_secrets"],
        "every user table, schema-qualified, none of the tool's: {j}"
    );

    let t = table(&j, "public.vault_secrets");
    assert_eq!(t["key_columns"], json!(["id"]));
    assert_eq!(t["status"], "divergent");
    assert!(
        t["message"].is_string(),
        "non-consistent status carries a message: {t}"
    );
    assert_eq!(t["row_counts"], json!({E: 3, W: 2}));
    assert_eq!(t["difference_count"], 2);
    assert_eq!(t["differences"].as_array().unwrap().len(), 2);
    let d42 = diff(t, &json!({"id": 42}));
    assert_eq!(d42["missing_in"], json!([W]));
    assert_eq!(d42["changed_columns"], json!([]));
    let d7 = diff(t, &json!({"id": 7}));
    assert_eq!(d7["missing_in"], json!([]));
    assert_eq!(
        strs(&d7["changed_columns"]),
        vec!["last_updated_at", "secret"]
    );
    assert!(d7["key"]["id"].is_i64(), "integer key as JSON number: {d7}");

    let c = table(&j, "public.comp");
    assert_eq!(c["key_columns"], json!(["name", "u", "at"]));
    assert_eq!(c["status"], "divergent");
    let dc = &c["differences"][0];
    assert_eq!(
        dc["key"],
        json!({"name": "a b", "u": "6f1c1a3e-0000-4000-8000-000000000001", "at": "2024-01-01 00:00:00+00"}),
        "text/uuid/timestamptz keys as PostgreSQL prints them with TimeZone=UTC: {c}"
    );
    assert_eq!(dc["changed_columns"], json!(["v"]));

    let s = table(&j, "other.same");
    assert_eq!(
        s["status"], "consistent",
        "different TimeZone/DateStyle/extra_float_digits must not make equal rows differ: {s}"
    );
    assert_eq!(s["difference_count"], 0);
    assert_eq!(s["differences"], json!([]));

    // --table filters (repeatable, unqualified or qualified), consistent → exit 0.
    let r = go(
        &dbs,
        None,
        &["check", "--format", "json", "--table", "other.same"],
    );
    code(&r, 0);
    let j = r.json();
    assert_eq!(j["consistent"], true);
    assert_eq!(j["tables"].as_array().unwrap().len(), 1, "{j}");
    let r = go(
        &dbs,
        None,
        &[
            "check",
            "--format",
            "json",
            "--table",
            "comp",
            "--table",
            "other.same",
        ],
    );
    code(&r, 1);
    assert_eq!(r.json()["tables"].as_array().unwrap().len(), 2);
}

/// Skipped (no key), key_columns, exclude_columns, schema_mismatch (type, missing column),
/// column order not a mismatch.
#[tokio::test(flavor = "multi_thread")]
async fn contract_check_statuses() {
    let dbs = TestDbs::new_named("contract_check_statuses", &[E, W]).await;
    dbs.exec_all(
        "CREATE TABLE nokey (a int, b text); INSERT INTO nokey VALUES (1, 'x');
         CREATE TABLE keyed_by_cfg (a int, b text); INSERT INTO keyed_by_cfg VALUES (1, 'x'), (2, 'y');
         CREATE TABLE excl (id int PRIMARY KEY, v text, noise text);",
    )
    .await;
    dbs.exec(0, "INSERT INTO excl VALUES (1, 'same', 'east-noise');
                 CREATE TABLE typed (id int PRIMARY KEY, n int, extra text);
                 CREATE TABLE ordered (id int PRIMARY KEY, a text, b int); INSERT INTO ordered VALUES (1, 'x', 2);").await;
    dbs.exec(1, "INSERT INTO excl VALUES (1, 'same', 'west-noise');
                 CREATE TABLE typed (id int PRIMARY KEY, n bigint);
                 CREATE TABLE ordered (b int, id int PRIMARY KEY, a text); INSERT INTO ordered VALUES (2, 1, 'x');").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "",
        "app",
        &[
            "{table: keyed_by_cfg, resolution: last_write_wins, key_columns: [a, b]}",
            "{table: excl, resolution: last_write_wins, exclude_columns: [noise]}",
        ],
    );

    // Skipped → exit 1, consistent false, message naming how to give key columns.
    let r = go(
        &dbs,
        Some(&cfg),
        &["check", "--format", "json", "--table", "nokey"],
    );
    code(&r, 1);
    let j = r.json();
    assert_eq!(j["consistent"], false, "{j}");
    let t = table(&j, "public.nokey");
    assert_eq!(t["status"], "skipped", "{j}");
    let msg = t["message"]
        .as_str()
        .unwrap_or_else(|| panic!("skipped needs a message: {t}"));
    assert!(
        msg.contains("key_columns"),
        "message should say how to name key columns: {msg}"
    );

    // key_columns in the config → compared.
    let r = go(
        &dbs,
        Some(&cfg),
        &["check", "--format", "json", "--table", "keyed_by_cfg"],
    );
    code(&r, 0);
    let t = table(&r.json(), "public.keyed_by_cfg").clone();
    assert_eq!(t["status"], "consistent", "{t}");
    assert_eq!(t["key_columns"], json!(["a", "b"]));

    // exclude_columns.
    let r = go(
        &dbs,
        Some(&cfg),
        &["check", "--format", "json", "--table", "excl"],
    );
    code(&r, 0);
    assert_eq!(table(&r.json(), "public.excl")["status"], "consistent");
    // Without the config, the excluded column differs.
    let r = go(
        &dbs,
        None,
        &["check", "--format", "json", "--table", "excl"],
    );
    code(&r, 1);
    let j = r.json();
    assert_eq!(
        diff(table(&j, "public.excl"), &json!({"id": 1}))["changed_columns"],
        json!(["noise"])
    );

    // schema_mismatch lists the differing columns.
    let r = go(
        &dbs,
        Some(&cfg),
        &["check", "--format", "json", "--table", "typed"],
    );
    code(&r, 1);
    let j = r.json();
    let t = table(&j, "public.typed");
    assert_eq!(t["status"], "schema_mismatch", "{j}");
    let text = t.to_string();
    let msg = t["message"]
        .as_str()
        .unwrap_or_else(|| panic!("schema_mismatch needs a message: {t}"));
    assert!(!msg.is_empty());
    assert!(text.contains("\"n\"") || msg.contains('n'), "{t}");
    assert!(
        text.contains("extra"),
        "the missing column must be listed: {t}"
    );
    assert!(
        msg.contains("extra") && msg.contains(" n")
            || text.contains("extra") && text.contains("\"n\""),
        "{t}"
    );

    // Column order alone is no mismatch.
    let r = go(
        &dbs,
        Some(&cfg),
        &["check", "--format", "json", "--table", "ordered"],
    );
    code(&r, 0);
    assert_eq!(table(&r.json(), "public.ordered")["status"], "consistent");
}

/// Three regions: missing_in and changed_columns among the regions where the row is present.
#[tokio::test(flavor = "multi_thread")]
async fn contract_three_regions_changed_columns() {
    let dbs = TestDbs::new_named("contract_three_regions", &[E, W, "eu-west-1"]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, a text, b text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'a1', 'b'), (2, 'x', 'b')")
        .await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'a2', 'b'), (2, 'x', 'b')")
        .await;
    dbs.exec(2, "INSERT INTO t VALUES (2, 'x', 'B')").await;
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    assert_eq!(j["regions"], json!([E, W, "eu-west-1"]));
    let t = table(&j, "public.t");
    assert_eq!(t["row_counts"], json!({E: 2, W: 2, "eu-west-1": 1}));
    let d1 = diff(t, &json!({"id": 1}));
    assert_eq!(d1["missing_in"], json!(["eu-west-1"]));
    assert_eq!(d1["changed_columns"], json!(["a"]), "{t}");
    let d2 = diff(t, &json!({"id": 2}));
    assert_eq!(d2["missing_in"], json!([]));
    assert_eq!(d2["changed_columns"], json!(["b"]), "{t}");
}

/// In flight: a row changed just now (window 300 s) is listed `in_flight`, counted, does not
/// make the table divergent, exit 0; fix leaves it. Without a config the window is 0.
#[tokio::test(flavor = "multi_thread")]
async fn contract_in_flight() {
    let dbs = TestDbs::new_named("contract_in_flight", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamptz)")
        .await;
    // id 1 changed just now in us-east-1; id 2 inserted just now, not yet in us-west-2.
    dbs.exec(
        0,
        "INSERT INTO t VALUES (1, 'new', now()), (2, 'fresh insert', now())",
    )
    .await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'old', '2024-01-01')")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 300\n",
        "app",
        &["{table: t, resolution: last_write_wins, tracking_column: updated_at}"],
    );

    let r = go(&dbs, Some(&cfg), &["check", "--format", "json"]);
    code(&r, 0);
    let j = r.json();
    assert_eq!(j["consistent"], true, "{j}");
    let t = table(&j, "public.t");
    assert_ne!(t["status"], "divergent", "{t}");
    assert_eq!(t["in_flight_count"], 2, "{t}");
    let d = diff(t, &json!({"id": 1}));
    assert_eq!(d["in_flight"], true, "{t}");
    let d = diff(t, &json!({"id": 2}));
    assert_eq!(
        d["in_flight"], true,
        "a fresh insert not yet replicated is in flight: {t}"
    );
    assert_eq!(d["missing_in"], json!([W]));

    // A shorter window (the row is still younger than it) keeps the pause short.
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 20\n",
        "app",
        &["{table: t, resolution: last_write_wins, tracking_column: updated_at}"],
    );
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    // In flight alone is not a difference: fix has nothing to do now.
    code(&r, 0);
    assert_eq!(
        one(&dbs, 1, "SELECT v FROM t WHERE id = 1")
            .await
            .as_deref(),
        Some("old"),
        "fix must leave an in-flight row: {}",
        r.stdout
    );
    assert_eq!(
        count(&dbs, 1, "SELECT count(*)::text FROM t").await,
        1,
        "fix must leave an in-flight insert: {}",
        r.stdout
    );

    // No config: window 0 → divergent.
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    assert_eq!(table(&j, "public.t")["status"], "divergent", "{j}");
}

/// Ties broken by config region order (then --region order); NULL tracking values are older
/// than any value.
#[tokio::test(flavor = "multi_thread")]
async fn contract_ties_and_nulls() {
    let dbs = TestDbs::new_named("contract_ties_nulls", &[E, W]).await;
    dbs.exec_all(
        "CREATE TABLE tie (id int PRIMARY KEY, v text, updated_at timestamptz);
         CREATE TABLE nul (id int PRIMARY KEY, v text, updated_at timestamptz);
         CREATE TABLE nulf (id int PRIMARY KEY, v text, updated_at timestamptz);",
    )
    .await;
    dbs.exec(0, "INSERT INTO tie VALUES (1, 'east', '2024-01-01'); INSERT INTO nul VALUES (1, 'east-null', NULL); INSERT INTO nulf VALUES (1, 'east-null', NULL)").await;
    dbs.exec(1, "INSERT INTO tie VALUES (1, 'west', '2024-01-01'); INSERT INTO nul VALUES (1, 'west-old', '1970-01-01'); INSERT INTO nulf VALUES (1, 'west-old', '1970-01-01')").await;
    let dir = tempfile::tempdir().unwrap();
    let rules = [
        "{table: tie, resolution: last_write_wins, tracking_column: updated_at}",
        "{table: nul, resolution: last_write_wins, tracking_column: updated_at}",
        "{table: nulf, resolution: first_write_wins, tracking_column: updated_at}",
    ];
    let cfg_we = write_cfg(
        dir.path(),
        &[W, E],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &rules,
    );
    let cfg_ew = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &rules,
    );

    for (cfg, first) in [(&cfg_we, W), (&cfg_ew, E)] {
        let r = go(&dbs, Some(cfg), &["fix", "--dry-run", "--format", "json"]);
        code(&r, 1);
        let j = r.json();
        let a = actions_for(table(&j, "public.tie"), &json!({"id": 1}));
        assert_eq!(a.len(), 1, "{j}");
        assert_eq!(
            a[0]["winner_region"], first,
            "tie must go to the first region in the config: {j}"
        );
        let by = a[0]["decided_by"].as_str().unwrap_or("");
        assert!(
            by.starts_with("tiebreak:"),
            "a tie is decided_by tiebreak:<rule>: {j}"
        );
        let a = actions_for(table(&j, "public.nul"), &json!({"id": 1}));
        assert_eq!(
            a[0]["winner_region"], W,
            "NULL is older than any value (last_write_wins): {j}"
        );
        let a = actions_for(table(&j, "public.nulf"), &json!({"id": 1}));
        assert_eq!(
            a[0]["winner_region"], E,
            "NULL is older than any value (first_write_wins): {j}"
        );
    }
    // A config naming no regions: --region flag order decides the tie.
    let noreg = dir.path().join("noregions.yaml");
    std::fs::write(
        &noreg,
        format!("global:\n  max_replication_lag_seconds: 0\n  conflict_resolution: last_write_wins\nreplication:\n  provider: pglogical\n  node_groups:\n{}", node_group("app", &rules)),
    )
    .unwrap();
    for order in [[0usize, 1], [1, 0]] {
        let mut a: Vec<String> = vec![
            "--config".into(),
            noreg.display().to_string(),
            "fix".into(),
            "--dry-run".into(),
            "--format".into(),
            "json".into(),
            "--db".into(),
            "app".into(),
        ];
        for i in order {
            a.push("--region".into());
            a.push(format!("{}={}", dbs.region(i), dbs.url(i)));
        }
        let r = run(&a);
        code(&r, 1);
        let j = r.json();
        let first = dbs.region(order[0]);
        let acts = actions_for(table(&j, "public.tie"), &json!({"id": 1}));
        assert_eq!(
            acts[0]["winner_region"], first,
            "tie must go to the first --region: {j}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// check writes nothing; --record
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn contract_check_record() {
    let dbs = TestDbs::new_named("contract_check_record", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'a'), (2, 'only east')")
        .await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'b')").await;
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 1);
    assert!(
        !has_conflicts_table(&dbs, 0).await && !has_conflicts_table(&dbs, 1).await,
        "check without --record must write nothing"
    );
    code(&go(&dbs, None, &["init"]), 0);
    let r = go(&dbs, None, &["check"]);
    code(&r, 1);
    for i in 0..2 {
        assert_eq!(
            count(&dbs, i, "SELECT count(*)::text FROM replication_conflicts").await,
            0
        );
    }
    let r = go(&dbs, None, &["check", "--record", "--format", "json"]);
    code(&r, 1);
    for i in 0..2 {
        let n = count(
            &dbs,
            i,
            "SELECT count(*)::text FROM replication_conflicts WHERE key = '{\"id\": 1}' AND table_name = 'public.t' AND resolved_at IS NULL",
        )
        .await;
        assert!(
            n >= 1,
            "region {i}: the changed row must be recorded unresolved"
        );
        let n = count(&dbs, i, "SELECT count(*)::text FROM replication_conflicts WHERE key = '{\"id\": 2}' AND resolved_at IS NULL").await;
        assert!(n >= 1, "region {i}: the missing row involves both regions");
        let lr = one(
            &dbs,
            i,
            "SELECT local_region FROM replication_conflicts LIMIT 1",
        )
        .await;
        assert_eq!(lr.as_deref(), Some(dbs.region(i)));
        let run_ids = count(&dbs, i, "SELECT count(DISTINCT run_id)::text FROM replication_conflicts WHERE run_id IS NOT NULL").await;
        assert_eq!(run_ids, 1, "one run id per check run");
    }
    // Data untouched.
    assert_eq!(
        one(&dbs, 1, "SELECT v FROM t WHERE id = 1")
            .await
            .as_deref(),
        Some("b")
    );
    assert_eq!(count(&dbs, 1, "SELECT count(*)::text FROM t").await, 1);
}

// ---------------------------------------------------------------------------------------
// conflicts
// ---------------------------------------------------------------------------------------

const CONFLICT_COLUMNS: [&str; 14] = [
    "id",
    "created_at",
    "table_name",
    "key",
    "conflict_type",
    "local_region",
    "remote_region",
    "local_row",
    "remote_row",
    "resolution",
    "winner_region",
    "decided_by",
    "resolved_at",
    "run_id",
];

#[tokio::test(flavor = "multi_thread")]
async fn contract_conflicts_listing() {
    let dbs = TestDbs::new_named("contract_conflicts_list", &[E, W]).await;
    code(&go(&dbs, None, &["init"]), 0);
    let r = go(&dbs, None, &["conflicts"]);
    code(&r, 0);
    let r = go(&dbs, None, &["conflicts", "--format", "json"]);
    code(&r, 0);
    assert_eq!(r.json(), json!({"conflicts": []}));

    let ins = |region: &str, created: &str, table: &str, resolved: bool, id: i32| {
        format!(
            "INSERT INTO replication_conflicts (created_at, table_name, key, conflict_type, local_region, remote_region, local_row, remote_row, resolution, winner_region, decided_by, resolved_at, run_id)
             VALUES ({created}, '{table}', '{{\"id\": {id}}}', 'update_differs', '{region}', 'x', '{{\"id\": {id}, \"v\": \"l\"}}', '{{\"id\": {id}, \"v\": \"r\"}}', 'last_write_wins', 'x', 'updated_at', {}, 'run-{id}');",
            if resolved { "now()" } else { "NULL" }
        )
    };
    dbs.exec(
        0,
        &(ins(E, "now() - interval '3 hours'", "public.a", true, 1)
            + &ins(E, "now() - interval '10 minutes'", "public.b", false, 2)),
    )
    .await;
    dbs.exec(
        1,
        &(ins(W, "now() - interval '5 minutes'", "public.a", false, 3)
            + &ins(W, "now() - interval '2 days'", "public.b", false, 4)),
    )
    .await;

    let list = |extra: &[&str]| -> Vec<J> {
        let mut a = vec!["conflicts", "--format", "json"];
        a.extend_from_slice(extra);
        let r = go(&dbs, None, &a);
        code(&r, 0);
        r.json()["conflicts"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", r.stdout))
            .clone()
    };
    let all = list(&[]);
    assert_eq!(all.len(), 4);
    for c in &all {
        for col in CONFLICT_COLUMNS.iter().chain(["region"].iter()) {
            assert!(c.get(*col).is_some(), "record lacks {col}: {c}");
        }
    }
    let keys: Vec<J> = all.iter().map(|c| c["key"]["id"].clone()).collect();
    assert_eq!(
        keys,
        vec![json!(3), json!(2), json!(1), json!(4)],
        "newest first: {all:?}"
    );
    assert_eq!(all[0]["region"], W);
    assert_eq!(all[1]["region"], E);
    assert_eq!(
        all[0]["local_row"],
        json!({"id": 3, "v": "l"}),
        "jsonb as JSON"
    );
    assert_eq!(all[0]["resolved_at"], J::Null);
    assert_eq!(all[0]["run_id"], "run-3");

    let in_e = list(&["--in", E]);
    assert_eq!(
        in_e.iter()
            .map(|c| c["key"]["id"].clone())
            .collect::<Vec<_>>(),
        vec![json!(2), json!(1)]
    );
    assert!(in_e.iter().all(|c| c["region"] == E));
    let ta = list(&["--table", "public.a"]);
    assert_eq!(
        ta.iter()
            .map(|c| c["key"]["id"].clone())
            .collect::<Vec<_>>(),
        vec![json!(3), json!(1)]
    );
    let since = list(&["--since", "1h"]);
    assert_eq!(
        since
            .iter()
            .map(|c| c["key"]["id"].clone())
            .collect::<Vec<_>>(),
        vec![json!(3), json!(2)]
    );
    let unres = list(&["--unresolved"]);
    assert_eq!(
        unres
            .iter()
            .map(|c| c["key"]["id"].clone())
            .collect::<Vec<_>>(),
        vec![json!(3), json!(2), json!(4)]
    );
    let lim = list(&["--limit", "2"]);
    assert_eq!(
        lim.iter()
            .map(|c| c["key"]["id"].clone())
            .collect::<Vec<_>>(),
        vec![json!(3), json!(2)]
    );
    let combo = list(&["--unresolved", "--since", "1h", "--in", W]);
    assert_eq!(combo.len(), 1);
    // Human output exits 0 too.
    code(&go(&dbs, None, &["conflicts", "--since", "1h"]), 0);
}

// ---------------------------------------------------------------------------------------
// fix: shape, dry run, nothing lost, copies
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn contract_fix_shape_dry_run_nothing_lost() {
    let dbs = TestDbs::new_named("contract_fix_shape", &[E, W]).await;
    dbs.exec_all("CREATE TABLE vault_secrets (id int PRIMARY KEY, secret text, meta jsonb, last_updated_at timestamptz)").await;
    dbs.exec(0, "INSERT INTO vault_secrets VALUES (7, 'new', '{\"k\": 1}', '2024-06-01 00:00:00+00'), (42, 'east only', NULL, '2024-01-01 00:00:00+00')").await;
    dbs.exec(1, "INSERT INTO vault_secrets VALUES (7, 'old', '{\"k\": 0}', '2024-01-01 00:00:00+00'), (43, 'west only', NULL, '2024-01-01 00:00:00+00')").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &["{table: vault_secrets, resolution: last_write_wins, tracking_column: last_updated_at}"],
    );
    let before_w = one(
        &dbs,
        1,
        "SELECT to_jsonb(v)::text FROM vault_secrets v WHERE id = 7",
    )
    .await
    .unwrap();

    // Dry run: the full shape, nothing changed anywhere (no replication_conflicts created).
    let r = go(&dbs, Some(&cfg), &["fix", "--dry-run", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    assert!(j["run_id"].is_string(), "{j}");
    assert_eq!(j["kind"], "postgresql", "{j}");
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["consistent"], false, "dry run with differences: {j}");
    let t = table(&j, "public.vault_secrets");
    assert_eq!(t["resolution"], "last_write_wins");
    assert!(
        t["applied"].is_number() && t["unresolved"].is_number(),
        "{t}"
    );
    let a7 = actions_for(t, &json!({"id": 7}));
    assert_eq!(a7.len(), 1, "{t}");
    assert_eq!(a7[0]["region"], W);
    assert_eq!(a7[0]["action"], "update");
    assert_eq!(a7[0]["winner_region"], E);
    assert_eq!(a7[0]["decided_by"], "last_updated_at");
    let a42 = actions_for(t, &json!({"id": 42}));
    assert_eq!(a42.len(), 1, "{t}");
    assert_eq!(a42[0]["region"], W);
    assert_eq!(
        a42[0]["action"], "insert",
        "a row in only some regions is copied, never deleted: {t}"
    );
    let a43 = actions_for(t, &json!({"id": 43}));
    assert_eq!(a43[0]["region"], E);
    assert_eq!(a43[0]["action"], "insert");
    for i in 0..2 {
        assert!(
            !has_conflicts_table(&dbs, i).await,
            "--dry-run must not create replication_conflicts"
        );
    }
    assert_eq!(
        one(
            &dbs,
            1,
            "SELECT to_jsonb(v)::text FROM vault_secrets v WHERE id = 7"
        )
        .await
        .unwrap(),
        before_w
    );
    assert_eq!(
        count(&dbs, 0, "SELECT count(*)::text FROM vault_secrets").await,
        2
    );

    // Real fix.
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    code(&r, 0);
    let j = r.json();
    assert_eq!(j["dry_run"], false);
    assert_eq!(j["consistent"], true, "{j}");
    let run_id = j["run_id"].as_str().unwrap().to_string();
    let t = table(&j, "public.vault_secrets");
    assert_eq!(t["applied"], 3, "{t}");
    assert_eq!(t["unresolved"], 0);
    for i in 0..2 {
        assert_eq!(
            count(&dbs, i, "SELECT count(*)::text FROM vault_secrets").await,
            3,
            "copied, never deleted"
        );
    }
    assert_eq!(
        one(&dbs, 1, "SELECT secret FROM vault_secrets WHERE id = 7")
            .await
            .as_deref(),
        Some("new")
    );
    // Nothing lost: the overwritten row's full image in local_row, in that region.
    let rec = dbs
        .query_texts(
            1,
            "SELECT local_row::text FROM replication_conflicts WHERE table_name = 'public.vault_secrets' AND key = '{\"id\": 7}' AND local_row IS NOT NULL",
        )
        .await;
    let before: J = serde_json::from_str(&before_w).unwrap();
    assert!(
        rec.iter()
            .flatten()
            .any(|s| serde_json::from_str::<J>(s).unwrap() == before),
        "local_row must hold the full pre-image {before}: {rec:?}"
    );
    let rec = dbs
        .query_texts(1, "SELECT concat_ws('|', winner_region, decided_by, resolution, run_id, local_region, (resolved_at IS NOT NULL)::text) FROM replication_conflicts WHERE key = '{\"id\": 7}'")
        .await;
    assert!(
        rec.iter()
            .flatten()
            .any(|s| s == &format!("{E}|last_updated_at|last_write_wins|{run_id}|{W}|true")),
        "{rec:?}"
    );
    let rec = dbs
        .query_texts(
            1,
            "SELECT decided_by FROM replication_conflicts WHERE key = '{\"id\": 42}'",
        )
        .await;
    assert!(
        rec.iter().flatten().any(|s| s == "missing_row"),
        "copy decided_by missing_row: {rec:?}"
    );
    // Idempotent.
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    code(&r, 0);
    let r = go(&dbs, Some(&cfg), &["check"]);
    code(&r, 0);
}

/// Every rule name of §1 (except commit-timestamp LWW, below).
#[tokio::test(flavor = "multi_thread")]
async fn contract_fix_rules() {
    let dbs = TestDbs::new_named("contract_fix_rules", &[E, W]).await;
    dbs.exec_all(
        "CREATE TABLE fww (id int PRIMARY KEY, v text, created timestamptz);
         CREATE TABLE tenants (id int PRIMARY KEY, v text);
         CREATE TABLE quotas (id int PRIMARY KEY, limit_bytes bigint, v text);
         CREATE TABLE feature_flags (id int PRIMARY KEY, version int, v text);
         CREATE TABLE manual_t (id int PRIMARY KEY, v text);",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO fww VALUES (1, 'east-old', '2020-01-01');
         INSERT INTO tenants VALUES (1, 'east');
         INSERT INTO quotas VALUES (1, 100, 'east');
         INSERT INTO feature_flags VALUES (1, 5, 'east-v5'), (2, 3, 'east-v3');
         INSERT INTO manual_t VALUES (1, 'east');",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO fww VALUES (1, 'west-new', '2024-01-01');
         INSERT INTO tenants VALUES (1, 'west');
         INSERT INTO quotas VALUES (1, 200, 'west');
         INSERT INTO feature_flags VALUES (1, 5, 'west-v5'), (2, 4, 'west-v4');
         INSERT INTO manual_t VALUES (1, 'west');",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &[
            "{table: fww, resolution: first_write_wins, tracking_column: created}",
            "{table: tenants, resolution: region_priority, regions: [us-west-2, us-east-1]}",
            "{table: quotas, resolution: highest_value, column: limit_bytes}",
            "table: feature_flags\n          resolution: custom\n          expression: \"a.version > b.version OR (a.version = b.version AND region(a) = 'us-west-2')\"",
            "{table: manual_t, resolution: manual}",
        ],
    );
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    code(&r, 1); // manual leaves conflicts unresolved
    let j = r.json();
    let check = |tbl: &str, id: i64, resolution: &str, winner: &str, by: &str| {
        let t = table(&j, tbl);
        assert_eq!(t["resolution"], resolution, "{t}");
        let a = actions_for(t, &json!({"id": id}));
        assert_eq!(a.len(), 1, "{tbl} {id}: {t}");
        assert_eq!(a[0]["winner_region"], winner, "{tbl} {id}: {t}");
        assert_eq!(a[0]["decided_by"], by, "{tbl} {id}: {t}");
        assert_eq!(a[0]["action"], "update", "{tbl} {id}: {t}");
    };
    check("public.fww", 1, "first_write_wins", E, "created");
    check("public.tenants", 1, "region_priority", W, "region_priority");
    check("public.quotas", 1, "highest_value", W, "limit_bytes");
    check("public.feature_flags", 1, "custom", W, "expression");
    check("public.feature_flags", 2, "custom", W, "expression");
    let m = table(&j, "public.manual_t");
    assert_eq!(m["resolution"], "manual");
    assert_eq!(m["applied"], 0, "{m}");
    assert!(m["unresolved"].as_i64().unwrap_or(0) >= 1, "{m}");
    let ma = actions_for(m, &json!({"id": 1}));
    assert!(
        !ma.is_empty() && ma.iter().all(|a| a["action"] == "manual"),
        "{m}"
    );
    assert_eq!(j["consistent"], false);

    let v = |i: usize, sql: &'static str| {
        let dbs = &dbs;
        async move { one(dbs, i, sql).await }
    };
    for i in 0..2 {
        assert_eq!(v(i, "SELECT v FROM fww").await.as_deref(), Some("east-old"));
        assert_eq!(v(i, "SELECT v FROM tenants").await.as_deref(), Some("west"));
        assert_eq!(v(i, "SELECT v FROM quotas").await.as_deref(), Some("west"));
        assert_eq!(
            v(i, "SELECT v FROM feature_flags WHERE id = 1")
                .await
                .as_deref(),
            Some("west-v5")
        );
        assert_eq!(
            v(i, "SELECT v FROM feature_flags WHERE id = 2")
                .await
                .as_deref(),
            Some("west-v4")
        );
    }
    // manual: data untouched, unresolved records.
    assert_eq!(
        v(0, "SELECT v FROM manual_t").await.as_deref(),
        Some("east")
    );
    assert_eq!(
        v(1, "SELECT v FROM manual_t").await.as_deref(),
        Some("west")
    );
    let n = count(&dbs, 0, "SELECT count(*)::text FROM replication_conflicts WHERE table_name = 'public.manual_t' AND resolved_at IS NULL").await
        + count(&dbs, 1, "SELECT count(*)::text FROM replication_conflicts WHERE table_name = 'public.manual_t' AND resolved_at IS NULL").await;
    assert!(n >= 1, "manual records an unresolved conflict");
    let r = go(
        &dbs,
        Some(&cfg),
        &[
            "conflicts",
            "--unresolved",
            "--table",
            "public.manual_t",
            "--format",
            "json",
        ],
    );
    code(&r, 0);
    let c = r.json();
    assert!(
        c["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["resolution"] == "manual" || x["resolution"].is_null()),
        "{c}"
    );
    assert!(!c["conflicts"].as_array().unwrap().is_empty());
}

/// last_write_wins without a tracking column uses commit timestamps (needs
/// track_commit_timestamp); also the global default rule for unlisted tables.
#[tokio::test(flavor = "multi_thread")]
async fn contract_fix_commit_timestamp() {
    use eden_test_util::{ClusterOptions, TestCluster};
    let cluster = tokio::task::spawn_blocking(|| {
        let c = TestCluster::start(ClusterOptions::new().setting("track_commit_timestamp", "on"));
        c.psql("postgres", "CREATE DATABASE east");
        c.psql("postgres", "CREATE DATABASE west");
        c
    })
    .await
    .unwrap();
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE listed (id int PRIMARY KEY, v text);";
    for db in ["east", "west"] {
        cluster.client(db).await.batch_execute(ddl).await.unwrap();
    }
    // West written first, east later → east is newest.
    cluster
        .client("west")
        .await
        .batch_execute(
            "INSERT INTO t VALUES (1, 'west-older'); INSERT INTO listed VALUES (1, 'west-older')",
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    cluster
        .client("east")
        .await
        .batch_execute(
            "INSERT INTO t VALUES (1, 'east-newer'); INSERT INTO listed VALUES (1, 'east-newer')",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[W, E],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &["{table: listed, resolution: last_write_wins}"],
    );
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["--config".into(), cfg.display().to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend([
            "--db".into(),
            "app".into(),
            "--region".into(),
            format!("{E}={}", cluster.url("east")),
            "--region".into(),
            format!("{W}={}", cluster.url("west")),
        ]);
        a
    };
    let r = run(args(&["fix", "--dry-run", "--format", "json"]));
    code(&r, 1);
    let j = r.json();
    for tbl in ["public.t", "public.listed"] {
        let a = actions_for(table(&j, tbl), &json!({"id": 1}));
        assert_eq!(a.len(), 1, "{j}");
        assert_eq!(a[0]["winner_region"], E, "{tbl}: newest commit wins: {j}");
        assert_eq!(a[0]["decided_by"], "commit_timestamp", "{j}");
    }
    assert_eq!(table(&j, "public.t")["resolution"], "last_write_wins");
    let r = run(args(&["fix", "--format", "json"]));
    code(&r, 0);
    let v: String = cluster
        .client("west")
        .await
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "east-newer");
    commit_ts_in_flight_and_custom(&cluster).await;
    drop(cluster);
}

// ---------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn contract_init_columns_idempotent() {
    let dbs = TestDbs::new_named("contract_init_cols", &[E, W]).await;
    code(&go(&dbs, None, &["init"]), 0);
    code(&go(&dbs, None, &["init"]), 0);
    let expect = [
        ("id", "bigint", "NO"),
        ("created_at", "timestamp with time zone", "NO"),
        ("table_name", "text", "NO"),
        ("key", "jsonb", "NO"),
        ("conflict_type", "text", "NO"),
        ("local_region", "text", "NO"),
        ("remote_region", "text", "YES"),
        ("local_row", "jsonb", "YES"),
        ("remote_row", "jsonb", "YES"),
        ("resolution", "text", "YES"),
        ("winner_region", "text", "YES"),
        ("decided_by", "text", "YES"),
        ("resolved_at", "timestamp with time zone", "YES"),
        ("run_id", "text", "YES"),
    ];
    for i in 0..2 {
        for (col, ty, nullable) in expect {
            let got = one(
                &dbs,
                i,
                &format!("SELECT data_type || '|' || is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'replication_conflicts' AND column_name = '{col}'"),
            )
            .await;
            assert_eq!(
                got.as_deref(),
                Some(format!("{ty}|{nullable}").as_str()),
                "region {i} column {col}"
            );
        }
        let pk = one(&dbs, i, "SELECT string_agg(a.attname, ',') FROM pg_index x JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey) WHERE x.indrelid = 'public.replication_conflicts'::regclass AND x.indisprimary").await;
        assert_eq!(pk.as_deref(), Some("id"));
        let d = one(&dbs, i, "SELECT column_default FROM information_schema.columns WHERE table_name = 'replication_conflicts' AND column_name = 'id'").await.unwrap_or_default();
        assert!(d.starts_with("nextval("), "id is bigserial: {d}");
        let d = one(&dbs, i, "SELECT column_default FROM information_schema.columns WHERE table_name = 'replication_conflicts' AND column_name = 'created_at'").await.unwrap_or_default();
        assert_eq!(d, "now()");
        // Inserting only the not-null columns works.
        dbs.exec(i, "INSERT INTO replication_conflicts (table_name, key, conflict_type, local_region) VALUES ('public.t', '{\"id\": 1}', 'missing_row', 'x')").await;
    }
    // check never covers the tool's own table.
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY)").await;
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 0);
    let j = r.json();
    assert!(
        j["tables"].as_array().unwrap().iter().all(|t| !t["table"]
            .as_str()
            .unwrap()
            .contains("replication_conflicts")),
        "{j}"
    );
    code(&go(&dbs, None, &["init"]), 0);
    assert_eq!(
        count(&dbs, 0, "SELECT count(*)::text FROM replication_conflicts").await,
        1,
        "init keeps existing records"
    );
}

// ---------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn contract_errors() {
    let dbs = TestDbs::new_named("contract_errors", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY)").await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret";
    let bad = format!("{W}=postgres://postgres:{secret}@127.0.0.1:1/x");
    for cmd in ["check", "fix", "init", "conflicts"] {
        let r = run([
            cmd,
            "--db",
            "app",
            "--region",
            &format!("{E}={}", dbs.url(0)),
            "--region",
            &bad,
        ]);
        r.assert_one_line_error();
        assert!(
            r.stderr.contains(W),
            "{cmd}: must name the region: {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains(secret) && !r.stdout.contains(secret),
            "{cmd}: password leaked: {} {}",
            r.stderr,
            r.stdout
        );
        let r = run([
            cmd,
            "--db",
            "app",
            "--format",
            "json",
            "--region",
            &format!("{E}={}", dbs.url(0)),
            "--region",
            &bad,
        ]);
        r.assert_one_line_error();
        assert!(
            !r.stderr.contains(secret) && !r.stdout.contains(secret),
            "{cmd} json: password leaked"
        );
    }
    // key=value with password.
    let r = run([
        "check",
        "--db",
        "app",
        "--region",
        &format!("{W}=host=127.0.0.1 port=1 user=postgres password={secret} dbname=x"),
    ]);
    r.assert_one_line_error();
    assert!(
        r.stderr.contains(W) && !r.stderr.contains(secret),
        "{}",
        r.stderr
    );

    // Missing config file names the file.
    let missing = dir.path().join("nope.yaml");
    let r = run([
        "--config",
        missing.to_str().unwrap(),
        "check",
        "--db",
        "app",
    ]);
    r.assert_one_line_error();
    assert!(r.stderr.contains("nope.yaml"), "{}", r.stderr);
    // Same via the environment.
    let mut cmd = eden();
    cmd.env("EDEN_RECONCILE_CONFIG", &missing)
        .args(["check", "--db", "app"]);
    let r = run_cmd(&mut cmd);
    r.assert_one_line_error();
    assert!(r.stderr.contains("nope.yaml"), "{}", r.stderr);
    // Broken YAML names the file.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "global: [unclosed\n").unwrap();
    let r = go(&dbs, Some(&broken), &["check"]);
    r.assert_one_line_error();
    assert!(r.stderr.contains("broken.yaml"), "{}", r.stderr);
    // An unknown resolution name names the table.
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "",
        "app",
        &["{table: t, resolution: coin_flip}"],
    );
    let r = go(&dbs, Some(&cfg), &["fix", "--dry-run"]);
    r.assert_one_line_error();
    assert!(r.stderr.contains('t'), "{}", r.stderr);
    // Unknown table names it.
    let r = go(&dbs, None, &["check", "--table", "no_such_table"]);
    r.assert_one_line_error();
    assert!(r.stderr.contains("no_such_table"), "{}", r.stderr);
    // Usage errors.
    run(["check", "--bogus-flag"]).assert_one_line_error();
    run(["frobnicate"]).assert_one_line_error();
    run(["--format", "xml", "check", "--db", "app"]).assert_one_line_error();
    run(["check", "--db", "app", "--region", "no-equals-sign"]).assert_one_line_error();
    let r = go(&dbs, None, &["conflicts", "--since", "yesterday-ish"]);
    r.assert_one_line_error();
    let r = go(&dbs, None, &["conflicts", "--in", "mars-1"]);
    r.assert_one_line_error();
    assert!(r.stderr.contains("mars-1"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------
// More: key rendering of other types, partial overrides, libpq habits, identifiers
// ---------------------------------------------------------------------------------------

/// Keys of other types: integers (any width) as numbers, everything else as PostgreSQL's
/// text output with TimeZone=UTC (ISO dates, numeric with its scale, fractional seconds,
/// bytea as hex, inet).
#[tokio::test(flavor = "multi_thread")]
async fn contract_key_rendering_other_types() {
    let dbs = TestDbs::new_named("contract_key_types", &[E, W]).await;
    dbs.exec_all(
        "CREATE TABLE k (s smallint, n numeric, d date, ts timestamp, tz timestamptz, PRIMARY KEY (s, n, d, ts, tz));
         CREATE TABLE kb (x bytea, ip inet, v int, PRIMARY KEY (x, ip));",
    )
    .await;
    dbs.exec(0, "SET timezone = 'Asia/Kolkata'; INSERT INTO k VALUES (3, 1.50, '2024-02-29', '2024-01-01 10:11:12.5', '2024-07-01 12:34:56.789+00'); INSERT INTO kb VALUES ('\\x0102', '10.1.2.3/16', 1)").await;
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    assert_eq!(
        diff(
            table(&j, "public.k"),
            &json!({"s": 3, "n": "1.50", "d": "2024-02-29", "ts": "2024-01-01 10:11:12.5", "tz": "2024-07-01 12:34:56.789+00"})
        )["missing_in"],
        json!([W]),
        "{j}"
    );
    let kb = table(&j, "public.kb");
    assert_eq!(
        kb["differences"][0]["key"],
        json!({"x": "\\x0102", "ip": "10.1.2.3/16"}),
        "bytea/inet as PostgreSQL prints them: {kb}"
    );
}

/// A boolean key is printed as PostgreSQL prints it: `t` / `f`.
#[tokio::test(flavor = "multi_thread")]
async fn contract_key_rendering_bool() {
    let dbs = TestDbs::new_named("contract_key_bool", &[E, W]).await;
    dbs.exec_all("CREATE TABLE kb (b bool PRIMARY KEY, v int)")
        .await;
    dbs.exec(0, "INSERT INTO kb VALUES (true, 1), (false, 2)")
        .await;
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    let kb = table(&j, "public.kb");
    diff(kb, &json!({"b": "t"}));
    diff(kb, &json!({"b": "f"}));
}

/// A `--region` flag overrides one config region only; the other keeps the config's
/// instance with `--db`. A URL without a database uses `--db` too.
#[tokio::test(flavor = "multi_thread")]
async fn contract_partial_region_override() {
    let dbs = TestDbs::new_named("contract_partial_override", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'a')").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(dir.path(), &[E, W], "", dbs.name(0), &[]);
    let w = format!("{W}={}", dbs.url(1));
    let r = run([
        "--config",
        cfg.to_str().unwrap(),
        "check",
        "--format",
        "json",
        "--db",
        dbs.name(0),
        "--region",
        &w,
    ]);
    code(&r, 1);
    let j = r.json();
    assert_eq!(
        table(&j, "public.t")["row_counts"],
        json!({E: 2, W: 1}),
        "{j}"
    );
    // URL without a database: --db.
    let e_nodb = format!("{E}=postgres://postgres@127.0.0.1:5432");
    let r = run([
        "check",
        "--format",
        "json",
        "--db",
        dbs.name(1),
        "--region",
        &e_nodb,
        "--region",
        &format!("{W}={}", dbs.url(0)),
    ]);
    code(&r, 1);
    let j = r.json();
    assert_eq!(
        table(&j, "public.t")["row_counts"],
        json!({E: 1, W: 2}),
        "{j}"
    );
}

/// libpq habits: PGUSER/PGPASSWORD/PGHOST/PGPORT and ~/.pgpass when the config gives none;
/// a wrong password is a one-line error naming the region, never showing the password.
#[tokio::test(flavor = "multi_thread")]
async fn contract_libpq_env_and_pgpass() {
    use eden_test_util::{ClusterOptions, TestCluster};
    let pw = "Sup3rS3cretPw";
    let cluster = tokio::task::spawn_blocking(move || {
        let c = TestCluster::start(
            ClusterOptions::new()
                .password(pw)
                .hba_line("host all all 127.0.0.1/32 scram-sha-256"),
        );
        c.psql("postgres", "CREATE DATABASE app; ");
        c.psql(
            "app",
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)",
        );
        c
    })
    .await
    .unwrap();
    let port = cluster.port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  replication_user: replication_user\n  max_replication_lag_seconds: 0\n  conflict_resolution: last_write_wins\nregions:\n  - name: us-east-1\n    role: active\n    instance: {{ host: 127.0.0.1, port: {port} }}\n  - name: us-west-2\n    role: active\n    instance: {{ host: 127.0.0.1, port: {port} }}\nreplication:\n  provider: pglogical\n  node_groups:\n    - name: g\n      database: app\n"
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let bare = |cmd: &mut std::process::Command| {
        for (k, _) in std::env::vars() {
            if k.starts_with("PG") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", home.path());
    };
    // PGUSER + PGPASSWORD.
    let mut cmd = eden();
    bare(&mut cmd);
    cmd.env("PGUSER", "postgres").env("PGPASSWORD", pw).args([
        "--config",
        cfg.to_str().unwrap(),
        "check",
        "--db",
        "app",
        "--format",
        "json",
    ]);
    let r = run_cmd(&mut cmd);
    code(&r, 0);
    assert_eq!(
        table(&r.json(), "public.t")["row_counts"],
        json!({E: 1, W: 1})
    );
    // ~/.pgpass.
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, format!("127.0.0.1:{port}:*:postgres:{pw}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut cmd = eden();
    bare(&mut cmd);
    cmd.env("PGUSER", "postgres")
        .args(["--config", cfg.to_str().unwrap(), "check", "--db", "app"]);
    let r = run_cmd(&mut cmd);
    code(&r, 0);
    // PGHOST/PGPORT with a bare key=value region.
    let mut cmd = eden();
    bare(&mut cmd);
    cmd.env("PGUSER", "postgres")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port)
        .args([
            "check",
            "--db",
            "app",
            "--region",
            "a=dbname=app",
            "--region",
            "b=dbname=app",
        ]);
    let r = run_cmd(&mut cmd);
    code(&r, 0);
    std::fs::remove_file(&pgpass).unwrap();
    // Wrong password: exit 2, region named, no password.
    let mut cmd = eden();
    bare(&mut cmd);
    cmd.env("PGUSER", "postgres")
        .env("PGPASSWORD", "WrongPassw0rd")
        .args(["--config", cfg.to_str().unwrap(), "check", "--db", "app"]);
    let r = run_cmd(&mut cmd);
    r.assert_one_line_error();
    assert!(r.stderr.contains(E) || r.stderr.contains(W), "{}", r.stderr);
    assert!(
        !r.stderr.contains("WrongPassw0rd") && !r.stderr.contains(pw),
        "{}",
        r.stderr
    );
    drop(cluster);
}

/// Mixed-case and spaced identifiers are handled (quoted), in check and fix.
#[tokio::test(flavor = "multi_thread")]
async fn contract_odd_identifiers() {
    let dbs = TestDbs::new_named("contract_odd_idents", &[E, W]).await;
    dbs.exec_all("CREATE SCHEMA \"My Schema\"; CREATE TABLE \"My Schema\".\"Odd Table\" (\"Id\" int PRIMARY KEY, \"Val ue\" text, \"updatedAt\" timestamptz)").await;
    dbs.exec(0, "INSERT INTO \"My Schema\".\"Odd Table\" VALUES (1, 'new', '2024-06-01'), (2, 'only east', '2024-01-01')").await;
    dbs.exec(
        1,
        "INSERT INTO \"My Schema\".\"Odd Table\" VALUES (1, 'old', '2024-01-01')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &[
            "{table: '\"My Schema\".\"Odd Table\"', resolution: last_write_wins, tracking_column: updatedAt}",
        ],
    );
    let r = go(&dbs, Some(&cfg), &["check", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    let t = &j["tables"][0];
    assert_eq!(t["key_columns"], json!(["Id"]), "{j}");
    assert_eq!(t["difference_count"], 2, "{j}");
    assert_eq!(
        diff(t, &json!({"Id": 1}))["changed_columns"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{j}"
    );
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    code(&r, 0);
    assert_eq!(
        one(
            &dbs,
            1,
            "SELECT \"Val ue\" FROM \"My Schema\".\"Odd Table\" WHERE \"Id\" = 1"
        )
        .await
        .as_deref(),
        Some("new")
    );
    assert_eq!(
        count(
            &dbs,
            1,
            "SELECT count(*)::text FROM \"My Schema\".\"Odd Table\""
        )
        .await,
        2
    );
}

/// Fix details: remote_row is the winner's image, local_row is null where the row was absent,
/// `--table` limits fix, nothing to do → exit 0 and consistent, a three-region fix converges.
#[tokio::test(flavor = "multi_thread")]
async fn contract_fix_records_and_scope() {
    let dbs = TestDbs::new_named("contract_fix_records", &[E, W, "eu-west-1"]).await;
    dbs.exec_all("CREATE TABLE a (id int PRIMARY KEY, v text, at timestamptz); CREATE TABLE b (id int PRIMARY KEY, v text, at timestamptz)").await;
    dbs.exec(0, "INSERT INTO a VALUES (1, 'win', '2024-06-01'), (2, 'east', '2024-01-01'); INSERT INTO b VALUES (1, 'east', '2024-01-01')").await;
    dbs.exec(1, "INSERT INTO a VALUES (1, 'lose', '2024-01-01'); INSERT INTO b VALUES (1, 'west', '2024-02-01')").await;
    dbs.exec(
        2,
        "INSERT INTO a VALUES (1, 'lose2', '2023-01-01'), (2, 'east', '2024-01-01')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W, "eu-west-1"],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &[
            "{table: a, resolution: last_write_wins, tracking_column: at}",
            "{table: b, resolution: last_write_wins, tracking_column: at}",
        ],
    );
    let win_image: J = serde_json::from_str(
        &one(&dbs, 0, "SELECT to_jsonb(x)::text FROM a x WHERE id = 1")
            .await
            .unwrap(),
    )
    .unwrap();
    let r = go(
        &dbs,
        Some(&cfg),
        &["fix", "--table", "a", "--format", "json"],
    );
    code(&r, 0);
    let j = r.json();
    assert_eq!(
        j["tables"].as_array().unwrap().len(),
        1,
        "--table limits fix: {j}"
    );
    // b untouched.
    assert_eq!(
        one(&dbs, 0, "SELECT v FROM b").await.as_deref(),
        Some("east")
    );
    for i in 0..3 {
        assert_eq!(
            one(&dbs, i, "SELECT v FROM a WHERE id = 1")
                .await
                .as_deref(),
            Some("win"),
            "region {i}"
        );
        assert_eq!(
            count(&dbs, i, "SELECT count(*)::text FROM a").await,
            2,
            "region {i}"
        );
    }
    for i in [1, 2] {
        let rows = dbs.query_texts(i, "SELECT remote_row::text FROM replication_conflicts WHERE key = '{\"id\": 1}' AND remote_row IS NOT NULL").await;
        assert!(
            rows.iter()
                .flatten()
                .any(|s| serde_json::from_str::<J>(s).unwrap() == win_image),
            "region {i}: remote_row is the winner: {rows:?}"
        );
        let ct = dbs
            .query_texts(
                i,
                "SELECT conflict_type FROM replication_conflicts WHERE key = '{\"id\": 1}'",
            )
            .await;
        assert!(ct.iter().flatten().all(|s| !s.is_empty()), "{ct:?}");
    }
    let rows = dbs.query_texts(1, "SELECT coalesce(local_row::text, 'NULL') FROM replication_conflicts WHERE key = '{\"id\": 2}'").await;
    assert!(
        rows.iter().flatten().any(|s| s == "NULL"),
        "local_row null where the row was absent: {rows:?}"
    );
    // Nothing to do for a: exit 0, consistent, dry run too.
    let r = go(
        &dbs,
        Some(&cfg),
        &["fix", "--table", "a", "--dry-run", "--format", "json"],
    );
    code(&r, 0);
    assert_eq!(r.json()["consistent"], true);
    let r = go(
        &dbs,
        Some(&cfg),
        &["fix", "--table", "a", "--format", "json"],
    );
    code(&r, 0);
    assert_eq!(r.json()["consistent"], true);
    // Human formats give the same exit codes.
    code(&go(&dbs, Some(&cfg), &["check"]), 1);
    code(&go(&dbs, Some(&cfg), &["check", "--table", "a"]), 0);
    code(&go(&dbs, Some(&cfg), &["fix", "--dry-run"]), 1);
    code(&go(&dbs, Some(&cfg), &["fix"]), 0);
    code(&go(&dbs, Some(&cfg), &["check"]), 0);
}

/// conflicts: `--since` with an RFC 3339 time, `--table` without schema.
#[tokio::test(flavor = "multi_thread")]
async fn contract_conflicts_since_rfc3339_and_unqualified_table() {
    let dbs = TestDbs::new_named("contract_conflicts_more", &[E, W]).await;
    code(&go(&dbs, None, &["init"]), 0);
    dbs.exec(
        0,
        "INSERT INTO replication_conflicts (created_at, table_name, key, conflict_type, local_region) VALUES
           ('2020-01-01 00:00:00+00', 'public.a', '{\"id\": 1}', 'missing_row', 'us-east-1'),
           ('2025-06-01 00:00:00+00', 'public.a', '{\"id\": 2}', 'missing_row', 'us-east-1'),
           ('2025-06-02 00:00:00+00', 'public.b', '{\"id\": 3}', 'missing_row', 'us-east-1')",
    )
    .await;
    let r = go(
        &dbs,
        None,
        &[
            "conflicts",
            "--format",
            "json",
            "--since",
            "2025-01-01T00:00:00Z",
        ],
    );
    code(&r, 0);
    let ids: Vec<J> = r.json()["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"]["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(3), json!(2)]);
    let r = go(
        &dbs,
        None,
        &["conflicts", "--format", "json", "--table", "a"],
    );
    code(&r, 0);
    let ids: Vec<J> = r.json()["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"]["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(2), json!(1)], "--table a means public.a");
}

/// Values compare as values: a region on another cluster with ICU collation, another
/// TimeZone, DateStyle and extra_float_digits never makes equal rows differ, and real
/// differences are still found there.
#[tokio::test(flavor = "multi_thread")]
async fn contract_values_across_server_settings() {
    use eden_test_util::{ClusterOptions, TestCluster};
    let cluster = tokio::task::spawn_blocking(|| {
        let c = TestCluster::start(
            ClusterOptions::new()
                .initdb_arg("--locale-provider=icu")
                .initdb_arg("--icu-locale=en-US")
                .setting("timezone", "'America/New_York'")
                .setting("datestyle", "'German, DMY'")
                .setting("extra_float_digits", "-3")
                .setting("intervalstyle", "'sql_standard'"),
        );
        c.psql("postgres", "CREATE DATABASE app");
        c
    })
    .await
    .unwrap();
    let dbs = TestDbs::new_named("contract_values_settings", &[E]).await;
    let ddl = "CREATE TABLE t (k text PRIMARY KEY, f float8, r real, ts timestamptz, d date, i interval, n numeric, j jsonb);
               INSERT INTO t SELECT CASE g % 4 WHEN 0 THEN 'a' WHEN 1 THEN 'B' WHEN 2 THEN '_c' ELSE 'Ä' END || g,
                   g / 7.0, g / 3.0, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour 1 second',
                   '2024-01-01'::date + g, g * interval '1 day 3 hours', g / 9.0, jsonb_build_object('b', g, 'a', g::text)
               FROM generate_series(1, 3000) g;";
    dbs.exec(0, ddl).await;
    cluster
        .client("app")
        .await
        .batch_execute(ddl)
        .await
        .unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend([
            "--db".into(),
            "app".into(),
            "--region".into(),
            format!("{E}={}", dbs.url(0)),
            "--region".into(),
            format!("{W}={}", cluster.url("app")),
        ]);
        a
    };
    let r = run(args(&["check", "--format", "json"]));
    code(&r, 0);
    assert_eq!(
        table(&r.json(), "public.t")["row_counts"],
        json!({E: 3000, W: 3000})
    );
    // Real differences are found, keyed as text.
    cluster
        .client("app")
        .await
        .batch_execute("UPDATE t SET f = f + 1e-9 WHERE k = 'B5'; DELETE FROM t WHERE k = 'a4'")
        .await
        .unwrap();
    let r = run(args(&["check", "--format", "json"]));
    code(&r, 1);
    let j = r.json();
    let t = table(&j, "public.t");
    assert_eq!(t["difference_count"], 2, "{t}");
    assert_eq!(
        diff(t, &json!({"k": "B5"}))["changed_columns"],
        json!(["f"])
    );
    assert_eq!(diff(t, &json!({"k": "a4"}))["missing_in"], json!([W]));
    drop(cluster);
}

/// Fix round-trips values of many types exactly (after fix, check is consistent), and writes
/// tables with identity and generated columns.
#[tokio::test(flavor = "multi_thread")]
async fn contract_fix_types_identity_generated() {
    let dbs = TestDbs::new_named("contract_fix_types", &[E, W]).await;
    dbs.exec_all(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN posint AS int CHECK (VALUE > 0);
         CREATE TABLE ty (id int PRIMARY KEY, m mood, ia int[], ta text[], j json, jb jsonb, n numeric, f float8, ts timestamptz,
                          tsx timestamp, iv interval, ip inet, b bytea, bits varbit, u uuid, p posint, tv tsvector, pt point, x xml, mo money);
         CREATE TABLE idg (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, g text GENERATED ALWAYS AS (upper(v)) STORED);",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO ty VALUES
           (1, 'happy', '{1,NULL,3}', '{\"a b\",\"c,d\",NULL}', '{\"b\": 1,  \"a\": [1,2]}', '{\"k\": [1, {\"z\": null}]}', 'NaN', '-Infinity', 'infinity',
            '2024-02-29 23:59:59.999999', '1 year 2 mons -3 days 04:05:06.7', '10.0.0.1/8', '\\x00ff', B'10101', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 7,
            'fat cat', '(1.5,-2)', '<a>x</a>', 12.34),
           (2, 'sad', '{}', '{}', 'null', 'null', 0.000000000000000000001, 1e308, '1999-12-31 23:00:00-05', '0001-01-01 00:00:00', '0', '::1', '', B'', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', 1, '', '(0,0)', '<b/>', 0);
         INSERT INTO idg (v) VALUES ('one'), ('two');",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO ty (id, m, n) VALUES (1, 'sad', 1);
         INSERT INTO idg (id, v) OVERRIDING SYSTEM VALUE VALUES (1, 'uno');",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &[
            "{table: ty, resolution: region_priority, regions: [us-east-1, us-west-2]}",
            "{table: idg, resolution: region_priority, regions: [us-east-1, us-west-2]}",
        ],
    );
    let r = go(&dbs, Some(&cfg), &["check", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    assert_eq!(table(&j, "public.ty")["status"], "divergent", "{j}");
    assert_eq!(table(&j, "public.ty")["difference_count"], 2, "{j}");
    assert_eq!(table(&j, "public.idg")["difference_count"], 2, "{j}");
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    code(&r, 0);
    assert_eq!(r.json()["consistent"], true, "{}", r.stdout);
    let r = go(&dbs, Some(&cfg), &["check", "--format", "json"]);
    code(&r, 0);
    for q in [
        "SELECT string_agg(x::text, ';' ORDER BY id) FROM ty x",
        "SELECT string_agg(x::text, ';' ORDER BY id) FROM idg x",
    ] {
        assert_eq!(one(&dbs, 0, q).await, one(&dbs, 1, q).await, "{q}");
    }
}

/// Partitioned tables are compared and fixed (rows once, no duplicate work); views,
/// materialized views and sequences are not tables to compare.
#[tokio::test(flavor = "multi_thread")]
async fn contract_partitioned_and_non_tables() {
    let dbs = TestDbs::new_named("contract_partitioned", &[E, W]).await;
    dbs.exec_all(
        "CREATE TABLE ev (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE ev_e PARTITION OF ev FOR VALUES IN ('e');
         CREATE TABLE ev_w PARTITION OF ev FOR VALUES IN ('w');
         CREATE TABLE base (id int PRIMARY KEY, v text);
         CREATE VIEW vw AS SELECT * FROM base;
         CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x;
         CREATE SEQUENCE sq;",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO ev VALUES (1, 'e', 'x'), (2, 'w', 'y'); INSERT INTO base VALUES (1, 'a')",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO ev VALUES (1, 'e', 'x'); INSERT INTO base VALUES (1, 'a')",
    )
    .await;
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    let names: Vec<&str> = j["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".vw") || n.ends_with(".mv") || n.ends_with(".sq")),
        "{names:?}"
    );
    let total_diffs: i64 = j["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["difference_count"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(total_diffs, 1, "the one missing row is reported once: {j}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &[],
    );
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    code(&r, 0);
    assert_eq!(count(&dbs, 1, "SELECT count(*)::text FROM ev").await, 2);
    code(&go(&dbs, None, &["check"]), 0);
}

/// `conflicts` before `init`: nothing recorded yet is still a listing (exit 0, empty).
#[tokio::test(flavor = "multi_thread")]
async fn contract_conflicts_before_init() {
    let dbs = TestDbs::new_named("contract_conflicts_noinit", &[E, W]).await;
    let r = go(&dbs, None, &["conflicts", "--format", "json"]);
    code(&r, 0);
    assert_eq!(r.json(), json!({"conflicts": []}));
    assert!(
        !has_conflicts_table(&dbs, 0).await,
        "conflicts must not create the table"
    );
}

/// A usable unique key (NOT NULL, not partial) stands in for a primary key; a nullable or
/// partial unique index does not; an empty database is consistent.
#[tokio::test(flavor = "multi_thread")]
async fn contract_usable_unique_keys() {
    let dbs = TestDbs::new_named("contract_unique_keys", &[E, W]).await;
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 0);
    assert_eq!(r.json()["tables"], json!([]), "empty database");
    assert_eq!(r.json()["consistent"], true);
    dbs.exec_all(
        "CREATE TABLE uq (a int NOT NULL UNIQUE, b text);
         CREATE TABLE uqn (a int UNIQUE, b text);
         CREATE TABLE uqp (a int NOT NULL, b text); CREATE UNIQUE INDEX ON uqp (a) WHERE a > 0;",
    )
    .await;
    dbs.exec(0, "INSERT INTO uq VALUES (1, 'x'); INSERT INTO uqn VALUES (1, 'x'); INSERT INTO uqp VALUES (1, 'x')").await;
    dbs.exec(1, "INSERT INTO uq VALUES (1, 'y'); INSERT INTO uqn VALUES (1, 'x'); INSERT INTO uqp VALUES (1, 'x')").await;
    let r = go(&dbs, None, &["check", "--format", "json"]);
    code(&r, 1);
    let j = r.json();
    let uq = table(&j, "public.uq");
    assert_eq!(uq["key_columns"], json!(["a"]), "{uq}");
    assert_eq!(diff(uq, &json!({"a": 1}))["changed_columns"], json!(["b"]));
    assert_eq!(
        table(&j, "public.uqn")["status"],
        "skipped",
        "nullable unique is no usable key: {j}"
    );
    assert_eq!(
        table(&j, "public.uqp")["status"],
        "skipped",
        "partial unique is no usable key: {j}"
    );
}

/// manual never changes anything, not even copying a missing row; highest_value treats NULL
/// as lowest; an invalid custom expression is an error naming the table.
#[tokio::test(flavor = "multi_thread")]
async fn contract_manual_missing_and_rule_edges() {
    let dbs = TestDbs::new_named("contract_rule_edges", &[E, W]).await;
    dbs.exec_all("CREATE TABLE m (id int PRIMARY KEY, v text); CREATE TABLE q (id int PRIMARY KEY, lim bigint, v text); CREATE TABLE cx (id int PRIMARY KEY, version int)").await;
    dbs.exec(0, "INSERT INTO m VALUES (1, 'only east'); INSERT INTO q VALUES (1, NULL, 'east-null'); INSERT INTO cx VALUES (1, 1)").await;
    dbs.exec(
        1,
        "INSERT INTO q VALUES (1, 5, 'west-5'); INSERT INTO cx VALUES (1, 2)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &[
            "{table: m, resolution: manual}",
            "{table: q, resolution: highest_value, column: lim}",
        ],
    );
    let r = go(
        &dbs,
        Some(&cfg),
        &["fix", "--table", "m", "--table", "q", "--format", "json"],
    );
    code(&r, 1);
    let j = r.json();
    assert_eq!(
        count(&dbs, 1, "SELECT count(*)::text FROM m").await,
        0,
        "manual: never change, not even a copy: {j}"
    );
    let a = actions_for(table(&j, "public.q"), &json!({"id": 1}));
    assert_eq!(
        a[0]["winner_region"], W,
        "NULL is lowest for highest_value: {j}"
    );
    assert_eq!(
        one(&dbs, 0, "SELECT v FROM q").await.as_deref(),
        Some("west-5")
    );
}

/// Config errors in a table's rule (custom expression naming an unknown column or smuggling a
/// second statement, region_priority without regions) are errors: exit 2, one line naming the
/// table, nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn contract_invalid_rule_is_error() {
    let dbs = TestDbs::new_named("contract_invalid_rule", &[E, W]).await;
    dbs.exec_all("CREATE TABLE cx (id int PRIMARY KEY, version int)")
        .await;
    dbs.exec(0, "INSERT INTO cx VALUES (1, 1)").await;
    dbs.exec(1, "INSERT INTO cx VALUES (1, 2)").await;
    let dir = tempfile::tempdir().unwrap();
    let bad = write_cfg(
        dir.path(),
        &[E, W],
        "",
        "app",
        &["{table: cx, resolution: region_priority}"],
    );
    let r = go(&dbs, Some(&bad), &["fix"]);
    r.assert_one_line_error();
    assert!(
        r.stderr.contains("cx"),
        "region_priority without regions names the table: {}",
        r.stderr
    );
    let bad = write_cfg(
        dir.path(),
        &[E, W],
        "",
        "app",
        &["{table: cx, resolution: custom, expression: \"a.version > b.version; DROP TABLE cx\"}"],
    );
    let r = go(&dbs, Some(&bad), &["fix", "--format", "json"]);
    assert_ne!(r.code, Some(0), "{}", r.stdout);
    assert_eq!(count(&dbs, 0, "SELECT count(*)::text FROM cx").await, 1);
    assert_eq!(
        one(&dbs, 0, "SELECT version::text FROM cx")
            .await
            .as_deref(),
        Some("1")
    );
    r.assert_one_line_error();
    assert!(r.stderr.contains("cx"), "must name the table: {}", r.stderr);
    let bad = write_cfg(
        dir.path(),
        &[E, W],
        "",
        "app",
        &["{table: cx, resolution: custom, expression: \"a.no_such_col > b.version\"}"],
    );
    let r = go(&dbs, Some(&bad), &["fix", "--format", "json"]);
    r.assert_one_line_error();
    assert!(r.stderr.contains("cx"), "must name the table: {}", r.stderr);
}

/// In flight with commit timestamps (no tracking column), and custom with commit_ts(a).
/// Runs on the commit-timestamp cluster of `contract_fix_commit_timestamp` (one cluster start).
async fn commit_ts_in_flight_and_custom(cluster: &eden_test_util::TestCluster) {
    cluster.psql("postgres", "CREATE DATABASE east2");
    cluster.psql("postgres", "CREATE DATABASE west2");
    for db in ["east2", "west2"] {
        cluster.client(db).await.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE c (id int PRIMARY KEY, v text)").await.unwrap();
    }
    cluster
        .client("east2")
        .await
        .batch_execute("INSERT INTO c VALUES (1, 'east-first')")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    cluster
        .client("west2")
        .await
        .batch_execute("INSERT INTO c VALUES (1, 'west-later'); INSERT INTO t VALUES (1, 'west')")
        .await
        .unwrap();
    cluster
        .client("east2")
        .await
        .batch_execute("INSERT INTO t VALUES (1, 'east')")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = |cfg: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["--config".into(), cfg.display().to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend([
            "--db".into(),
            "app".into(),
            "--region".into(),
            format!("{E}={}", cluster.url("east2")),
            "--region".into(),
            format!("{W}={}", cluster.url("west2")),
        ]);
        a
    };
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 20\n",
        "app",
        &["{table: c, resolution: custom, expression: \"commit_ts(a) < commit_ts(b)\"}"],
    );
    let r = run(args(&cfg, &["check", "--table", "t", "--format", "json"]));
    code(&r, 0);
    let j = r.json();
    assert_eq!(table(&j, "public.t")["in_flight_count"], 1, "{j}");
    let cfg0 = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &["{table: c, resolution: custom, expression: \"commit_ts(a) < commit_ts(b)\"}"],
    );
    let r = run(args(&cfg0, &["fix", "--table", "c", "--format", "json"]));
    code(&r, 0);
    let j = r.json();
    let a = actions_for(table(&j, "public.c"), &json!({"id": 1}));
    assert_eq!(
        a[0]["winner_region"], E,
        "custom commit_ts(a) < commit_ts(b): earliest wins: {j}"
    );
    assert_eq!(a[0]["decided_by"], "expression");
}

/// `check --record` rows name the other side in `remote_region`; a dry run adds no records
/// to an existing `replication_conflicts`.
#[tokio::test(flavor = "multi_thread")]
async fn contract_record_remote_region_and_dry_run_no_records() {
    let dbs = TestDbs::new_named("contract_record_remote", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'a')").await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'b')").await;
    code(&go(&dbs, None, &["init"]), 0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &["{table: t, resolution: region_priority, regions: [us-east-1, us-west-2]}"],
    );
    code(&go(&dbs, Some(&cfg), &["fix", "--dry-run"]), 1);
    for i in 0..2 {
        assert_eq!(
            count(&dbs, i, "SELECT count(*)::text FROM replication_conflicts").await,
            0,
            "dry run wrote a record"
        );
    }
    code(&go(&dbs, Some(&cfg), &["check", "--record"]), 1);
    for (i, other) in [(0, W), (1, E)] {
        let rr = dbs
            .query_texts(
                i,
                "SELECT coalesce(remote_region, 'NULL') FROM replication_conflicts",
            )
            .await;
        assert_eq!(
            rr,
            vec![Some(other.to_string())],
            "remote_region is the other side (region {i})"
        );
    }
}

/// Global options before the subcommand (`--region`, `--format`); logs never pollute JSON
/// stdout; huge and negative integer keys stay exact JSON numbers.
#[tokio::test(flavor = "multi_thread")]
async fn contract_global_options_first_and_clean_stdout() {
    let dbs = TestDbs::new_named("contract_options_first", &[E, W]).await;
    dbs.exec_all("CREATE TABLE big (id bigint PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO big VALUES (9223372036854775807, 'max'), (-9223372036854775808, 'min'), (9007199254740993, 'odd')").await;
    let mut a: Vec<String> = dbs.region_args();
    a.extend([
        "--format".into(),
        "json".into(),
        "-vv".into(),
        "check".into(),
        "--db".into(),
        "app".into(),
    ]);
    let mut cmd = eden();
    cmd.env("EDEN_LOG", "debug")
        .env("RUST_LOG", "trace")
        .args(&a);
    let r = run_cmd(&mut cmd);
    code(&r, 1);
    let j = r.json();
    let t = table(&j, "public.big");
    assert_eq!(t["difference_count"], 3);
    for id in [i64::MAX, i64::MIN, 9007199254740993] {
        let d = diff(t, &json!({"id": id}));
        assert_eq!(d["key"]["id"].as_i64(), Some(id), "{d}");
    }
    assert!(
        r.stdout.contains("9223372036854775807"),
        "exact digits on stdout"
    );
}

/// Custom: when neither version beats the other, the tie-break order (config region order)
/// decides.
#[tokio::test(flavor = "multi_thread")]
async fn contract_custom_tie_uses_region_order() {
    let dbs = TestDbs::new_named("contract_custom_tie", &[E, W]).await;
    dbs.exec_all("CREATE TABLE ff (id int PRIMARY KEY, version int, v text)")
        .await;
    dbs.exec(0, "INSERT INTO ff VALUES (1, 3, 'east')").await;
    dbs.exec(1, "INSERT INTO ff VALUES (1, 3, 'west')").await;
    let dir = tempfile::tempdir().unwrap();
    for (order, first) in [([E, W], E), ([W, E], W)] {
        let cfg = write_cfg(
            dir.path(),
            &order,
            "  max_replication_lag_seconds: 0\n",
            "app",
            &["{table: ff, resolution: custom, expression: \"a.version > b.version\"}"],
        );
        let r = go(&dbs, Some(&cfg), &["fix", "--dry-run", "--format", "json"]);
        code(&r, 1);
        let j = r.json();
        let a = actions_for(table(&j, "public.ff"), &json!({"id": 1}));
        assert_eq!(a.len(), 1, "{j}");
        assert_eq!(a[0]["winner_region"], first, "{j}");
    }
}

/// Nothing lost: the record and the change share one transaction, so when the record cannot
/// be written the row is not changed either.
#[tokio::test(flavor = "multi_thread")]
async fn contract_archive_same_transaction() {
    let dbs = TestDbs::new_named("contract_archive_tx", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'east'), (2, 'east only')")
        .await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'west')").await;
    code(&go(&dbs, None, &["init"]), 0);
    dbs.exec(
        1,
        "CREATE FUNCTION no_records() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'archive is read-only'; END $$;
         CREATE TRIGGER no_records BEFORE INSERT ON replication_conflicts FOR EACH ROW EXECUTE FUNCTION no_records();",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &["{table: t, resolution: region_priority, regions: [us-east-1, us-west-2]}"],
    );
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    assert_ne!(
        r.code,
        Some(0),
        "fix cannot have succeeded: {}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(
        one(&dbs, 1, "SELECT v FROM t WHERE id = 1")
            .await
            .as_deref(),
        Some("west"),
        "changed without its record"
    );
    assert_eq!(
        count(&dbs, 1, "SELECT count(*)::text FROM t").await,
        1,
        "inserted without its record"
    );
}

/// In flight: a difference that converges during the recheck pause is not listed; an old
/// difference is divergent even with a window; PGSSLMODE from the environment is honoured.
#[tokio::test(flavor = "multi_thread")]
async fn contract_in_flight_converges_and_old_divergent() {
    let dbs = TestDbs::new_named("contract_in_flight_conv", &[E, W]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamptz)")
        .await;
    dbs.exec(
        0,
        "INSERT INTO t VALUES (1, 'new', now()), (2, 'old-east', '2024-02-01')",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO t VALUES (1, 'older', '2024-01-01'), (2, 'old-west', '2024-01-01')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 20\n",
        "app",
        &["{table: t, resolution: last_write_wins, tracking_column: updated_at}"],
    );
    // "Replication" catches up shortly after the first look.
    let url0 = dbs.url(0);
    let url1 = dbs.url(1);
    let catch_up = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let (c, conn) =
            eden_test_util::tokio_postgres::connect(&url1, eden_test_util::tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        let (c0, conn0) =
            eden_test_util::tokio_postgres::connect(&url0, eden_test_util::tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn0);
        let row = c0
            .query_one("SELECT v, updated_at FROM t WHERE id = 1", &[])
            .await
            .unwrap();
        let v: String = row.get(0);
        let at: std::time::SystemTime = row.get(1);
        c.execute(
            "UPDATE t SET v = $1, updated_at = $2 WHERE id = 1",
            &[&v, &at],
        )
        .await
        .unwrap();
    });
    let r = go(&dbs, Some(&cfg), &["check", "--format", "json"]);
    catch_up.await.unwrap();
    code(&r, 1);
    let j = r.json();
    let t = table(&j, "public.t");
    assert_eq!(
        t["status"], "divergent",
        "the old difference is divergent: {t}"
    );
    assert_eq!(
        t["difference_count"], 1,
        "the converged row is not listed: {t}"
    );
    assert_eq!(t["differences"][0]["key"], json!({"id": 2}));
    assert_ne!(t["differences"][0]["in_flight"], true);

    // PGSSLMODE=verify-full with no root certificate in $HOME must fail to connect.
    let home = tempfile::tempdir().unwrap();
    let mut cmd = eden();
    cmd.env("HOME", home.path())
        .env("PGSSLMODE", "verify-full")
        .args(["check", "--db", "app"])
        .args(dbs.region_args());
    let r = run_cmd(&mut cmd);
    r.assert_one_line_error();
}

/// `key_columns` from the config also drive fix on a table without a key.
#[tokio::test(flavor = "multi_thread")]
async fn contract_fix_with_config_key_columns() {
    let dbs = TestDbs::new_named("contract_fix_keycols", &[E, W]).await;
    dbs.exec_all("CREATE TABLE nk (tenant text, item int, qty int)")
        .await;
    dbs.exec(
        0,
        "INSERT INTO nk VALUES ('a', 1, 10), ('a', 2, 20), ('b', 1, 5)",
    )
    .await;
    dbs.exec(1, "INSERT INTO nk VALUES ('a', 1, 11), ('b', 1, 5)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &[
            "{table: nk, resolution: region_priority, regions: [us-east-1, us-west-2], key_columns: [tenant, item]}",
        ],
    );
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    code(&r, 0);
    let j = r.json();
    let t = table(&j, "public.nk");
    assert_eq!(
        actions_for(t, &json!({"tenant": "a", "item": 1}))[0]["action"],
        "update",
        "{t}"
    );
    assert_eq!(
        actions_for(t, &json!({"tenant": "a", "item": 2}))[0]["action"],
        "insert",
        "{t}"
    );
    let q = "SELECT string_agg(format('%s/%s/%s', tenant, item, qty), ',' ORDER BY tenant, item) FROM nk";
    assert_eq!(
        one(&dbs, 1, q).await.as_deref(),
        Some("a/1/10,a/2/20,b/1/5")
    );
}

/// A tracking column (or highest_value column) the table does not have is a config error:
/// exit 2, one line on stderr naming the table, nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn contract_unknown_rule_column_is_error() {
    let dbs = TestDbs::new_named("contract_unknown_rule_col", &[E, W]).await;
    dbs.exec_all(
        "CREATE TABLE vault_secrets (id int PRIMARY KEY, v text, last_updated_at timestamptz)",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO vault_secrets VALUES (1, 'east', '2024-06-01')",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO vault_secrets VALUES (1, 'west', '2024-01-01')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    for rule in [
        "{table: vault_secrets, resolution: last_write_wins, tracking_column: last_updated}",
        "{table: vault_secrets, resolution: highest_value, column: no_such_column}",
    ] {
        let cfg = write_cfg(
            dir.path(),
            &[E, W],
            "  max_replication_lag_seconds: 0\n",
            "app",
            &[rule],
        );
        for args in [&["fix"][..], &["fix", "--format", "json"][..]] {
            let r = go(&dbs, Some(&cfg), args);
            r.assert_one_line_error();
            assert!(r.stderr.contains("vault_secrets"), "{rule}: {}", r.stderr);
        }
    }
    assert_eq!(
        one(&dbs, 1, "SELECT v FROM vault_secrets").await.as_deref(),
        Some("west")
    );
}

/// last_write_wins without a tracking column decides by commit timestamp; on a server with
/// `track_commit_timestamp = off` every version's commit time is unknown (NULL, older than
/// any value), so the contract's tie order decides (ending in the regions' order). fix still
/// converges, archives what it overwrites, and says on stderr why the region order decided.
#[tokio::test(flavor = "multi_thread")]
async fn contract_lww_without_commit_timestamps_says_why() {
    let dbs = TestDbs::new_named("contract_lww_no_commit_ts", &[E, W]).await;
    let off = one(&dbs, 0, "SHOW track_commit_timestamp").await;
    if off.as_deref() != Some("off") {
        return; // needs a server without commit timestamps
    }
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'east')").await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'west (written last)')")
        .await;
    let r = go(&dbs, None, &["fix", "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("track_commit_timestamp"),
        "should say why the region order decided: {}",
        r.stderr
    );
    let action = &r.json()["tables"][0]["actions"][0];
    assert_eq!(action["decided_by"], "tiebreak:region_order", "{action}");
    assert_eq!(
        one(&dbs, 1, "SELECT v FROM t").await.as_deref(),
        Some("east")
    );
    let archived = one(&dbs, 1, "SELECT local_row->>'v' FROM replication_conflicts").await;
    assert_eq!(
        archived.as_deref(),
        Some("west (written last)"),
        "the overwritten row is archived"
    );
}

/// Nothing depends on which region answered first: repeated runs give the same report
/// (apart from timings and run ids) and the same plan.
#[tokio::test(flavor = "multi_thread")]
async fn contract_deterministic_reports() {
    let dbs = TestDbs::new_named("contract_deterministic", &[E, W, "eu-west-1"]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text, at timestamptz); CREATE TABLE u (id int PRIMARY KEY, v text, at timestamptz)").await;
    dbs.exec(0, "INSERT INTO t SELECT g, 'e' || (g % 3), '2024-01-01' FROM generate_series(1, 200) g; INSERT INTO u VALUES (1, 'a', '2024-01-01')").await;
    dbs.exec(1, "INSERT INTO t SELECT g, 'w' || (g % 5), '2024-01-01' FROM generate_series(5, 210) g; INSERT INTO u VALUES (1, 'b', '2024-01-01')").await;
    dbs.exec(
        2,
        "INSERT INTO t SELECT g, 'e' || (g % 3), '2024-01-01' FROM generate_series(1, 190) g",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W, "eu-west-1"],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &[
            "{table: t, resolution: last_write_wins, tracking_column: at}",
            "{table: u, resolution: last_write_wins, tracking_column: at}",
        ],
    );
    fn strip(v: &mut J) {
        if let Some(o) = v.as_object_mut() {
            for k in ["stats", "elapsed_ms", "run_id", "mode"] {
                o.remove(k);
            }
            for (_, x) in o.iter_mut() {
                strip(x);
            }
        } else if let Some(a) = v.as_array_mut() {
            for x in a {
                strip(x);
            }
        }
    }
    let mut first: Option<(J, J)> = None;
    for _ in 0..2 {
        let r = go(&dbs, Some(&cfg), &["check", "--format", "json"]);
        code(&r, 1);
        let mut c = r.json();
        strip(&mut c);
        let r = go(&dbs, Some(&cfg), &["fix", "--dry-run", "--format", "json"]);
        code(&r, 1);
        let mut f = r.json();
        strip(&mut f);
        match &first {
            None => first = Some((c, f)),
            Some((c0, f0)) => {
                assert_eq!(&c, c0, "check report changed between runs");
                assert_eq!(&f, f0, "fix plan changed between runs");
            }
        }
    }
}

/// Winners that swap a unique non-key value between two rows are consistent with each other;
/// fix writes them (the final state satisfies every constraint).
#[tokio::test(flavor = "multi_thread")]
async fn contract_fix_swapped_unique_values() {
    let dbs = TestDbs::new_named("contract_fix_swap_unique", &[E, W]).await;
    dbs.exec_all(
        "CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE NOT NULL, at timestamptz)",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO users VALUES (1, 'a@x', '2024-06-01'), (2, 'b@x', '2024-06-01')",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO users VALUES (1, 'b@x', '2024-01-01'), (2, 'a@x', '2024-01-01')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &["{table: users, resolution: last_write_wins, tracking_column: at}"],
    );
    let r = go(&dbs, Some(&cfg), &["fix", "--format", "json"]);
    code(&r, 0);
    let q = "SELECT string_agg(id || '=' || email, ',' ORDER BY id) FROM users";
    assert_eq!(one(&dbs, 1, q).await.as_deref(), Some("1=a@x,2=b@x"));
}

/// A fix that cannot be applied in a region (the winner violates a constraint only that
/// region has) is an error: exit 2, exactly one line on stderr naming region and table,
/// no password, and nothing lost.
#[tokio::test(flavor = "multi_thread")]
async fn contract_fix_apply_error_one_line() {
    let dbs = TestDbs::new_named("contract_fix_apply_error", &[E, W]).await;
    dbs.exec(
        0,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'bad')",
    )
    .await;
    dbs.exec(1, "CREATE TABLE t (id int PRIMARY KEY, v text CHECK (v <> 'bad')); INSERT INTO t VALUES (1, 'good')").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[E, W],
        "  max_replication_lag_seconds: 0\n",
        "app",
        &["{table: t, resolution: region_priority, regions: [us-east-1, us-west-2]}"],
    );
    let r = go(&dbs, Some(&cfg), &["fix"]);
    assert_eq!(
        one(&dbs, 1, "SELECT v FROM t").await.as_deref(),
        Some("good")
    );
    r.assert_one_line_error();
    assert!(
        r.stderr.contains(W) && r.stderr.contains("t"),
        "{}",
        r.stderr
    );
}
