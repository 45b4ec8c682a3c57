//! Issue "never a wrong answer, never a silent loss": each test fails on the code before the
//! fix and shows the behaviour through the binary.

use eden_test_util::TestDbs;
use serde_json::json;

use crate::common::run;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Every `--region`, before and after the subcommand, counts; a name given twice is refused.
#[tokio::test]
async fn regions_before_and_after_the_subcommand_all_count() {
    let dbs = TestDbs::new_named("safety_regions_both", &["a", "b"]).await;
    dbs.exec_all("CREATE TABLE t(id int primary key, v text); INSERT INTO t VALUES (1, 'x');")
        .await;
    dbs.exec(1, "UPDATE t SET v = 'y'").await;
    let a = format!("a={}", dbs.url(0));
    let b = format!("b={}", dbs.url(1));
    let r = run(s(&[
        "--region",
        &a,
        "check",
        "--db",
        dbs.name(0),
        "--region",
        &b,
        "--format",
        "json",
    ]));
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["regions"], json!(["a", "b"]));
    assert_eq!(j["consistent"], json!(false));

    // Two after the subcommand, one before: all three.
    let r = run(s(&[
        "--region",
        &a,
        "check",
        "--db",
        dbs.name(0),
        "--region",
        &b,
        "--region",
        &format!("c={}", dbs.url(0)),
        "--format",
        "json",
    ]));
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["regions"], json!(["a", "b", "c"]));

    // The same name twice: a usage error naming the region, before or after.
    for args in [
        s(&[
            "--region",
            &a,
            "check",
            "--db",
            dbs.name(0),
            "--region",
            &format!("a={}", dbs.url(1)),
        ]),
        s(&[
            "check",
            "--db",
            dbs.name(0),
            "--region",
            &a,
            "--region",
            &a,
            "--region",
            &b,
        ]),
    ] {
        let r = run(args);
        r.assert_code(2).assert_one_line_error();
        assert!(r.stderr.contains("region a is given twice"), "{}", r.stderr);
    }
}

/// A comparison needs two regions: `check` and `fix` with one exit 2, never "consistent".
#[tokio::test]
async fn one_region_is_not_a_comparison() {
    let dbs = TestDbs::new_named("safety_one_region", &["a"]).await;
    dbs.exec_all("CREATE TABLE t(id int primary key, v text); INSERT INTO t VALUES (1, 'x');")
        .await;
    let a = format!("a={}", dbs.url(0));
    for cmd in ["check", "fix"] {
        let r = run(s(&[
            cmd,
            "--db",
            dbs.name(0),
            "--region",
            &a,
            "--format",
            "json",
        ]));
        r.assert_code(2).assert_one_line_error();
        assert!(
            r.stderr.contains("need at least two regions; defined: a"),
            "{cmd}: {}",
            r.stderr
        );
        assert!(!r.stdout.contains("consistent"), "{cmd}: {}", r.stdout);
    }
}

/// System and extension-owned tables are refused (exit 2), whatever `--table` says; nothing
/// is read or written there.
#[tokio::test]
async fn system_and_extension_tables_are_refused() {
    let dbs = TestDbs::new_named("safety_system_tables", &["a", "b"]).await;
    dbs.exec_all(
        "CREATE TABLE ext_owned(id int primary key, v text); INSERT INTO ext_owned VALUES (1, 'x');
         CREATE EXTENSION hstore; ALTER EXTENSION hstore ADD TABLE ext_owned;",
    )
    .await;
    dbs.exec(1, "UPDATE ext_owned SET v = 'y'").await;
    let mut base = s(&["--db", dbs.name(0)]);
    base.extend(dbs.region_args());
    for (table, what) in [
        ("pg_catalog.pg_authid", "system table"),
        ("pg_catalog.pg_class", "system table"),
        ("information_schema.sql_features", "system table"),
        ("ext_owned", "belongs to extension hstore"),
        ("replication_conflicts", "own record of conflicts"),
    ] {
        if table == "replication_conflicts" {
            let mut init = s(&["init"]);
            init.extend(base.clone());
            run(init).assert_code(0);
        }
        for cmd in [&["fix"][..], &["fix", "--dry-run"], &["check"]] {
            let mut args = s(cmd);
            args.extend(base.clone());
            args.extend(s(&["--table", table]));
            let r = run(args);
            r.assert_code(2).assert_one_line_error();
            assert!(r.stderr.contains(what), "{table} {cmd:?}: {}", r.stderr);
        }
    }
    // The extension's table was not repaired.
    assert_eq!(
        dbs.query_texts(1, "SELECT v FROM ext_owned").await,
        vec![Some("y".to_string())]
    );
}

/// Writes a config whose regions are named like `dbs`'s and whose one node group (database
/// `eden_vault`) carries `rules` (YAML lines under `conflict_resolution_tables:`).
pub fn vault_config(
    dbs: &TestDbs,
    dir: &std::path::Path,
    global: &str,
    rules: &str,
) -> std::path::PathBuf {
    let regions: String = dbs
        .region_names()
        .iter()
        .map(|r| {
            format!(
                "  - name: {r}\n    role: active\n    instance: {{ host: 127.0.0.1, port: 5432 }}\n"
            )
        })
        .collect();
    let yaml = format!(
        "global:\n  replication_user: replication_user\n{global}regions:\n{regions}replication:\n  provider: native\n  node_groups:\n    - name: eden_vault_group\n      database: eden_vault\n      conflict_resolution_tables:\n{rules}"
    );
    let path = dir.join("postgresql-multi-region.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

const VAULT: &str =
    "CREATE TABLE vault_secrets(id int primary key, secret text, last_updated_at timestamptz);
    INSERT INTO vault_secrets VALUES (1, 'old', '2024-01-01');";

/// A `--db` that matches no node group would silently drop every table rule: refused (exit
/// 2, naming the groups) unless `--no-rules`; the report says what each region connected to.
#[tokio::test]
async fn db_must_match_a_node_group() {
    let dbs = TestDbs::new_named("safety_db_group", &["a", "b"]).await;
    dbs.exec_all(VAULT).await;
    // b holds the newer secret; region order (a first) would pick a's older one.
    dbs.exec(
        1,
        "UPDATE vault_secrets SET secret = 'new', last_updated_at = '2024-06-01'",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = vault_config(
        &dbs,
        dir.path(),
        "  conflict_resolution: first_write_wins\n",
        "        - table: vault_secrets\n          resolution: last_write_wins\n          tracking_column: last_updated_at\n",
    );
    let cfg = cfg.to_str().unwrap();
    let with = |extra: &[&str]| {
        let mut a = s(&["--config", cfg]);
        a.extend(s(extra));
        a.extend(dbs.region_args());
        a
    };
    for db in [&["--db", "eden_valut"][..], &[]] {
        let mut args = s(&["fix"]);
        args.extend(s(db));
        let r = run(with(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        r.assert_code(2).assert_one_line_error();
        assert!(
            r.stderr.contains("eden_vault_group (database eden_vault)")
                && r.stderr.contains("--no-rules"),
            "{db:?}: {}",
            r.stderr
        );
    }
    // Nothing was overwritten.
    assert_eq!(
        dbs.query_texts(1, "SELECT secret FROM vault_secrets").await,
        vec![Some("new".into())]
    );

    // The right --db uses the rule: the newer row wins everywhere.
    let r = run(with(&["fix", "--db", "eden_vault", "--format", "json"]));
    r.assert_code(0);
    assert_eq!(
        r.json()["tables"][0]["actions"][0]["decided_by"],
        json!("last_updated_at")
    );
    assert_eq!(
        dbs.query_texts(0, "SELECT secret FROM vault_secrets").await,
        vec![Some("new".into())]
    );

    // --no-rules accepts any --db and says so by running.
    let r = run(with(&[
        "check",
        "--db",
        "eden_valut",
        "--no-rules",
        "--format",
        "json",
    ]));
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["databases"], json!({"a": dbs.name(0), "b": dbs.name(1)}));

    // Without --db and without config, the report names what each region connected to.
    let r = run([
        "check".to_string(),
        "--format".into(),
        "json".into(),
        "--region".into(),
        format!("a={}", dbs.url(0)),
        "--region".into(),
        format!("b={}", dbs.url(1)),
    ]);
    let j = r.json();
    assert_eq!(
        j["database"],
        json!(format!("a={}, b={}", dbs.name(0), dbs.name(1))),
        "{}",
        r.stdout
    );
}

/// A table that could not be handled (here: locked past `lock_timeout` in one region) is an
/// error in `check` and in `fix` alike: exit 2 after the full report, which names it in
/// words (no raw JSON); the other tables are still handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhandled_table_is_exit_2_in_every_command() {
    let dbs = TestDbs::new_named("safety_unhandled", &["a", "b"]).await;
    dbs.exec_all(
        "CREATE TABLE locked(id int primary key, v text); INSERT INTO locked VALUES (1, 'x');
         CREATE TABLE other(id int primary key, v text); INSERT INTO other VALUES (1, 'x');",
    )
    .await;
    dbs.exec(1, "UPDATE other SET v = 'y'; UPDATE locked SET v = 'y'")
        .await;
    let holder = dbs.client(1).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    for cmd in ["check", "fix"] {
        let mut args = s(&[cmd, "--db", dbs.name(0)]);
        args.extend(dbs.region_args());
        let r = run(args);
        r.assert_code(2);
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("eden-reconcile: "))
            .collect();
        assert_eq!(errors.len(), 1, "{cmd}: {}", r.stderr);
        assert!(errors[0].contains("public.locked"), "{cmd}: {}", r.stderr);
        assert!(
            r.stdout.contains("public.other"),
            "{cmd}: full report first: {}",
            r.stdout
        );
        assert!(
            !r.stdout.contains("{\""),
            "{cmd}: raw JSON in human output: {}",
            r.stdout
        );
    }
    // fix repaired the table it could handle.
    assert_eq!(
        dbs.query_texts(0, "SELECT v FROM other").await,
        dbs.query_texts(1, "SELECT v FROM other").await
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
}

/// A row missing in one region is copied back by default, but never silently: the plan marks
/// it as a possible undelete. `missing_rows: delete` makes the delete win (archived first),
/// `missing_rows: manual` leaves it to a human.
#[tokio::test]
async fn missing_rows_copy_is_marked_delete_and_manual_obey() {
    let dbs = TestDbs::new_named("safety_missing_rows", &["a", "b"]).await;
    let dir = tempfile::tempdir().unwrap();
    let rule = |missing: &str| {
        format!(
            "        - table: vault_secrets\n          resolution: last_write_wins\n          tracking_column: last_updated_at\n{missing}"
        )
    };
    let setup = "DROP TABLE IF EXISTS vault_secrets; DROP TABLE IF EXISTS replication_conflicts;
        CREATE TABLE vault_secrets(id int primary key, secret text, last_updated_at timestamptz);
        INSERT INTO vault_secrets VALUES (1, 'keep', '2024-01-01'), (2, 'revoked', '2024-01-01');";
    let go = |cfg: &std::path::Path, extra: &[&str]| {
        let mut a = s(&[
            "--config",
            cfg.to_str().unwrap(),
            "fix",
            "--db",
            "eden_vault",
        ]);
        a.extend(s(extra));
        a.extend(dbs.region_args());
        run(a)
    };

    // Default (copy): the re-insert is marked in the plan, JSON and human.
    dbs.exec_all(setup).await;
    dbs.exec(1, "DELETE FROM vault_secrets WHERE id = 2").await;
    let cfg = vault_config(&dbs, dir.path(), "", &rule(""));
    let r = go(&cfg, &["--dry-run", "--format", "json"]);
    r.assert_code(1);
    let a = &r.json()["tables"][0]["actions"][0];
    assert_eq!(a["action"], json!("insert"), "{a}");
    assert_eq!(a["region"], json!("b"), "{a}");
    assert_eq!(a["possible_undelete"], json!(true), "{a}");
    let h = go(&cfg, &["--dry-run"]);
    assert!(h.stdout.contains("possible undelete"), "{}", h.stdout);

    // missing_rows: delete: the revoked secret is deleted where it survived, archived first.
    let cfg = vault_config(
        &dbs,
        dir.path(),
        "",
        &rule("          missing_rows: delete\n"),
    );
    let r = go(&cfg, &["--format", "json"]);
    r.assert_code(0);
    let a = &r.json()["tables"][0]["actions"][0];
    assert_eq!(
        (&a["action"], &a["region"]),
        (&json!("delete"), &json!("a")),
        "{a}"
    );
    assert_eq!(a["decided_by"], json!("missing_rows"));
    assert_eq!(
        dbs.query_texts(0, "SELECT count(*)::text FROM vault_secrets WHERE id = 2")
            .await,
        vec![Some("0".into())]
    );
    assert_eq!(
        dbs.query_texts(0, "SELECT local_row->>'secret' FROM replication_conflicts")
            .await,
        vec![Some("revoked".into())]
    );

    // missing_rows: manual: nothing changes, the key is unresolved (exit 1).
    dbs.exec_all(setup).await;
    dbs.exec(1, "DELETE FROM vault_secrets WHERE id = 2").await;
    let cfg = vault_config(
        &dbs,
        dir.path(),
        "",
        &rule("          missing_rows: manual\n"),
    );
    let r = go(&cfg, &["--format", "json"]);
    r.assert_code(1);
    assert_eq!(r.json()["tables"][0]["unresolved"], json!(1));
    assert_eq!(
        dbs.query_texts(1, "SELECT count(*)::text FROM vault_secrets")
            .await,
        vec![Some("1".into())]
    );
    assert_eq!(
        dbs.query_texts(0, "SELECT count(*)::text FROM vault_secrets")
            .await,
        vec![Some("2".into())]
    );

    // An unknown value is a config error naming the table.
    let cfg = vault_config(
        &dbs,
        dir.path(),
        "",
        &rule("          missing_rows: undelete\n"),
    );
    let r = go(&cfg, &[]);
    r.assert_code(2).assert_one_line_error();
    assert!(r.stderr.contains("missing_rows: undelete"), "{}", r.stderr);
}

/// `fix` closes the open records of the keys it resolved; `conflicts resolve --id` closes
/// records by hand, with a note.
#[tokio::test]
async fn fix_closes_recorded_conflicts_and_resolve_by_hand() {
    let dbs = TestDbs::new_named("safety_close_records", &["a", "b"]).await;
    dbs.exec_all(VAULT).await;
    dbs.exec(
        1,
        "UPDATE vault_secrets SET secret = 'new', last_updated_at = '2024-06-01'",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = vault_config(
        &dbs,
        dir.path(),
        "",
        "        - table: vault_secrets\n          resolution: last_write_wins\n          tracking_column: last_updated_at\n",
    );
    let go = |extra: &[&str]| {
        let mut a = s(&["--config", cfg.to_str().unwrap()]);
        a.extend(s(extra));
        a.extend(s(&["--db", "eden_vault", "--format", "json"]));
        a.extend(dbs.region_args());
        run(a)
    };
    go(&["check", "--record"]).assert_code(1);
    let open = go(&["conflicts", "--unresolved"]);
    open.assert_code(0);
    assert_eq!(
        open.json()["conflicts"].as_array().unwrap().len(),
        2,
        "{}",
        open.stdout
    );

    let fix = go(&["fix"]);
    fix.assert_code(0);
    let run_id = fix.json()["run_id"].as_str().unwrap().to_string();
    let open = go(&["conflicts", "--unresolved"]);
    assert_eq!(open.json()["conflicts"], json!([]), "{}", open.stdout);
    let closed = dbs
        .query_texts(0, "SELECT concat_ws(' ', resolution, winner_region, run_id) FROM replication_conflicts WHERE conflict_type <> 'update_differs' OR local_row IS NULL OR action IS NULL")
        .await;
    assert!(
        closed
            .iter()
            .any(|c| c.as_deref() == Some(&format!("last_write_wins b {run_id}"))),
        "{closed:?}"
    );

    // By hand: an open record in each region (ids are numbered per region).
    dbs.exec(
        1,
        "UPDATE vault_secrets SET secret = 'newer', last_updated_at = '2024-07-01'",
    )
    .await;
    go(&["check", "--record"]).assert_code(1);
    let ids = dbs
        .query_texts(
            0,
            "SELECT id::text FROM replication_conflicts WHERE resolved_at IS NULL",
        )
        .await;
    let id = ids[0].clone().unwrap();
    // Record 1 exists in both regions (the first check --record wrote one in each).
    let ambiguous = go(&["conflicts", "resolve", "--id", "1"]);
    ambiguous.assert_code(2).assert_one_line_error();
    assert!(
        ambiguous.stderr.contains("--in REGION"),
        "{}",
        ambiguous.stderr
    );
    let r = go(&[
        "conflicts",
        "resolve",
        "--in",
        "a",
        "--id",
        &id,
        "--note",
        "rotated by hand",
    ]);
    r.assert_code(0);
    assert_eq!(r.json()["resolved"][0]["outcome"], json!("resolved"));
    assert_eq!(
        dbs.query_texts(0, &format!("SELECT concat_ws(' ', decided_by, details->>'note') FROM replication_conflicts WHERE id = {id} AND resolved_at IS NOT NULL")).await,
        vec![Some("manual rotated by hand".into())]
    );
    let unknown = go(&["conflicts", "resolve", "--in", "a", "--id", "999999"]);
    unknown.assert_code(2).assert_one_line_error();
    assert!(unknown.stderr.contains("999999"), "{}", unknown.stderr);
    // Listing still works as before.
    go(&["conflicts", "--in", "a", "--unresolved"]).assert_code(0);
}

/// The in-flight rule measures a version's age at the snapshot, not at the end of the scan:
/// a change made just before the check, not yet replicated to region b (a replica running
/// behind), is rechecked and reported in flight even when the scan of the tables before it
/// takes longer than the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_age_is_measured_at_the_snapshot() {
    let dbs = TestDbs::new_named("safety_in_flight_snapshot", &["a", "b"]).await;
    dbs.exec_all(
        "CREATE TABLE a_big(id int primary key, v text);
         INSERT INTO a_big SELECT g, md5(g::text) FROM generate_series(1, 700000) g; ANALYZE a_big;
         CREATE TABLE z_hot(id int primary key, v text, updated_at timestamptz);
         INSERT INTO z_hot VALUES (1, 'old', '2024-01-01');",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = vault_config(
        &dbs,
        dir.path(),
        "  max_replication_lag_seconds: 2\n",
        "        - table: z_hot\n          resolution: last_write_wins\n          tracking_column: updated_at\n",
    );
    // The write lands in a just before the check; b's replica has not applied it yet.
    dbs.exec(0, "UPDATE z_hot SET v = 'new', updated_at = now()")
        .await;
    let mut args = s(&[
        "--config",
        cfg.to_str().unwrap(),
        "check",
        "--db",
        "eden_vault",
        "--mode",
        "stream",
        "--jobs",
        "1",
        "--format",
        "json",
    ]);
    args.extend(dbs.region_args());
    let r = run(args);
    let j = r.json();
    let big = j["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.a_big")
        .unwrap();
    let hot = j["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.z_hot")
        .unwrap();
    assert!(
        big["elapsed_ms"].as_u64().unwrap_or(0) > 2000,
        "the scan before z_hot must outlast the 2 s window for this test to mean anything: {big}"
    );
    assert_eq!(hot["differences"][0]["in_flight"], json!(true), "{hot}");
    assert_eq!(hot["in_flight_count"], json!(1), "{hot}");
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
}

/// The same logical row created in two regions under different keys collides on another
/// unique constraint: fix reports the constraint and both keys, leaves it unresolved (exit
/// 1) instead of "changed since read" forever, and changes nothing.
#[tokio::test]
async fn unique_collision_is_reported_with_constraint_and_both_keys() {
    let dbs = TestDbs::new_named("safety_unique_collision", &["a", "b"]).await;
    dbs.exec_all("CREATE TABLE docs(id int primary key, tenant_id int not null, path text not null, UNIQUE (tenant_id, path))")
        .await;
    dbs.exec(0, "INSERT INTO docs VALUES (1, 7, '/x')").await;
    dbs.exec(1, "INSERT INTO docs VALUES (2, 7, '/x')").await;
    let mut args = s(&["fix", "--db", dbs.name(0), "--format", "json"]);
    args.extend(dbs.region_args());
    for _ in 0..2 {
        let r = run(args.clone());
        assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
        let t = &r.json()["tables"][0];
        let c = t["collisions"].as_array().unwrap_or_else(|| panic!("{t}"));
        assert_eq!(c.len(), 2, "{t}");
        let in_b = c.iter().find(|c| c["region"] == "b").unwrap();
        assert_eq!(in_b["constraint"], json!("docs_tenant_id_path_key"));
        assert_eq!(in_b["key"], json!({"id": 1}));
        assert_eq!(in_b["other_key"], json!({"id": 2}));
        assert_eq!(t["unresolved"], json!(2), "{t}");
        assert_eq!(t["changed"], json!(0), "{t}");
    }
    let mut human = s(&["fix", "--db", dbs.name(0)]);
    human.extend(dbs.region_args());
    let h = run(human);
    assert!(
        h.stdout
            .contains("unique collision in region b on docs_tenant_id_path_key (tenant_id, path)"),
        "{}",
        h.stdout
    );
    assert_eq!(
        dbs.query_texts(1, "SELECT string_agg(id::text, ',') FROM docs")
            .await,
        vec![Some("2".into())]
    );
}

/// With `unique_collisions: resolve` the two colliding rows are two versions of one logical
/// row: the table's rule (newest `updated_at`) picks the winner, the loser is archived and
/// removed where it exists, the winner copied where it is missing, and a rerun is clean.
/// Without the opt-in (default `manual`) the collision stays unresolved (exit 1).
#[tokio::test]
async fn unique_collision_resolved_by_the_table_rule_when_opted_in() {
    let dbs = TestDbs::new_named("safety_unique_resolve", &["a", "b"]).await;
    dbs.exec_all(
        "CREATE TABLE docs(id int primary key, tenant_id int not null, path text not null, \
         body text, updated_at timestamptz, UNIQUE (tenant_id, path))",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO docs VALUES (1, 7, '/x', 'from a', '2024-01-01')",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO docs VALUES (2, 7, '/x', 'from b', '2024-06-01')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let rule = |extra: &str| {
        format!(
            "        - table: docs\n          resolution: last_write_wins\n          tracking_column: updated_at\n{extra}"
        )
    };
    let go = |cfg: &std::path::Path, cmd: &str, extra: &[&str]| {
        let mut a = s(&["--config", cfg.to_str().unwrap(), cmd, "--db", "eden_vault"]);
        a.extend(s(extra));
        a.extend(dbs.region_args());
        run(a)
    };

    // Default (manual): reported, unresolved, nothing changed.
    let cfg = vault_config(&dbs, dir.path(), "", &rule(""));
    let before = go(&cfg, "fix", &[]);
    eprintln!("--- manual (default):\n{}", before.stdout);
    before.assert_code(1);
    assert!(
        before.stdout.contains("left unresolved"),
        "{}",
        before.stdout
    );
    let r = go(&cfg, "fix", &["--format", "json"]);
    r.assert_code(1);
    let t = &r.json()["tables"][0];
    assert_eq!(t["unresolved"], json!(2), "{t}");
    assert!(t["collisions"][0].get("resolved").is_none(), "{t}");

    // An unknown value is a config error naming the table's rule.
    let bad = vault_config(
        &dbs,
        dir.path(),
        "",
        &rule("          unique_collisions: merge\n"),
    );
    let r = go(&bad, "fix", &[]);
    r.assert_code(2).assert_one_line_error();
    assert!(
        r.stderr.contains("unique_collisions: merge"),
        "{}",
        r.stderr
    );

    // resolve: b's row is newer, so id 2 stays everywhere and id 1 is archived and removed.
    let cfg = vault_config(
        &dbs,
        dir.path(),
        "",
        &rule("          unique_collisions: resolve\n"),
    );
    let after = go(&cfg, "fix", &["--format", "json"]);
    after.assert_code(0);
    let j = after.json();
    assert_eq!(j["consistent"], json!(true), "{j}");
    let t = &j["tables"][0];
    assert_eq!(t["unresolved"], json!(0), "{t}");
    let c = t["collisions"].as_array().unwrap_or_else(|| panic!("{t}"));
    assert!(!c.is_empty(), "{t}");
    for c in c {
        assert_eq!(c["resolved"]["winner_key"], json!({"id": 2}), "{c}");
        assert_eq!(c["resolved"]["loser_key"], json!({"id": 1}), "{c}");
        assert_eq!(c["resolved"]["winner_region"], json!("b"), "{c}");
    }
    for i in 0..2 {
        assert_eq!(
            dbs.query_texts(i, "SELECT string_agg(id || ':' || body, ',') FROM docs")
                .await,
            vec![Some("2:from b".into())]
        );
    }
    // The loser is archived in the same transaction as its delete, in region a.
    assert_eq!(
        dbs.query_texts(
            0,
            "SELECT conflict_type || ' ' || (local_row->>'id') || ' ' || (local_row->>'body') \
             FROM replication_conflicts WHERE remote_row IS NULL"
        )
        .await,
        vec![Some("delete 1 from a".into())]
    );
    // Rerun is clean: check agrees, fix has nothing to do.
    go(&cfg, "check", &[]).assert_code(0);
    go(&cfg, "fix", &[]).assert_code(0);

    // The human output names the winner.
    dbs.exec_all("DELETE FROM docs").await;
    dbs.exec(
        0,
        "INSERT INTO docs VALUES (1, 7, '/x', 'from a', '2024-01-01')",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO docs VALUES (2, 7, '/x', 'from b', '2024-06-01')",
    )
    .await;
    let h = go(&cfg, "fix", &[]);
    eprintln!("--- unique_collisions: resolve:\n{}", h.stdout);
    h.assert_code(0);
    assert!(
        h.stdout.contains("resolved by the table's rule"),
        "{}",
        h.stdout
    );
}

/// With a config, `fix` refuses decisions that only the tie order made for a time-ordered
/// rule (here: commit timestamps with track_commit_timestamp off) unless --allow-tiebreak;
/// validate-config warns about it, about keyless tables and about unknown keys in a rule.
#[tokio::test]
async fn tiebreak_only_decisions_are_refused_and_validate_config_warns() {
    let dbs = TestDbs::new_named("safety_tiebreak", &["a", "b"]).await;
    let off = dbs.query_texts(0, "SHOW track_commit_timestamp").await;
    if off != vec![Some("off".to_string())] {
        return; // needs a server without commit timestamps
    }
    dbs.exec_all(
        "CREATE TABLE t(id int primary key, v text); INSERT INTO t VALUES (1, 'x');
         CREATE TABLE keyless(a int, b text);",
    )
    .await;
    dbs.exec(1, "UPDATE t SET v = 'y'").await;
    dbs.exec_all(VAULT).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = vault_config(
        &dbs,
        dir.path(),
        "  conflict_resolution: last_write_wins\n",
        "        - table: vault_secrets\n          resolution: last_write_wins\n          traking_column: last_updated_at\n",
    );
    let go = |extra: &[&str]| {
        let mut a = s(&["--config", cfg.to_str().unwrap()]);
        a.extend(s(extra));
        a.extend(s(&["--db", "eden_vault"]));
        a.extend(dbs.region_args());
        run(a)
    };
    let r = go(&["fix", "--table", "t", "--format", "json"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let t = &r.json()["tables"][0];
    assert_eq!(t["unresolved"], json!(1), "{t}");
    assert_eq!(t["applied"], json!(0), "{t}");
    assert!(
        t["actions"][0]["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("tiebreak:"),
        "{t}"
    );
    assert_eq!(
        dbs.query_texts(1, "SELECT v FROM t").await,
        vec![Some("y".into())]
    );

    let r = go(&[
        "fix",
        "--table",
        "t",
        "--allow-tiebreak",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);

    let v = go(&["validate-config"]);
    assert_eq!(v.code, Some(1), "{}\n{}", v.stdout, v.stderr);
    for want in [
        "table public.t: global.conflict_resolution (it has no rule of its own) decides by commit timestamps",
        "unknown key \"traking_column\" in the table's rule is ignored (did you mean tracking_column?)",
        "table public.keyless: table public.keyless has no primary key",
    ] {
        assert!(
            v.stdout.contains(want),
            "missing {want:?} in:\n{}",
            v.stdout
        );
    }
}

/// A table dropped in one region while the check runs is reported as missing there, not
/// as an odd schema difference or error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_dropped_during_check_is_reported_missing() {
    let dbs = TestDbs::new_named("safety_dropped_during", &["a", "b"]).await;
    dbs.exec_all("CREATE TABLE t(id int primary key, v text); INSERT INTO t VALUES (1, 'x');")
        .await;
    // The drop waits, uncommitted, holding its lock; the check reads the catalog, then
    // waits for the lock; the drop commits while the check is under way.
    let dropper = dbs.client(1).await;
    dropper.batch_execute("BEGIN; DROP TABLE t").await.unwrap();
    let mut args = s(&[
        "check",
        "--db",
        dbs.name(0),
        "--table",
        "t",
        "--format",
        "json",
    ]);
    args.extend(dbs.region_args());
    let child = crate::common::eden()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    dropper.batch_execute("COMMIT").await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let t = &j["tables"][0];
    assert_eq!(t["status"], json!("schema_mismatch"), "{t}");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .contains("public.t is missing in b"),
        "{t}"
    );
}

/// A trigger that rewrites the row on write (stamping updated_at) would make fix go back and
/// forth forever: fix notices that the written row does not read back as written, rolls that
/// batch back (nothing written, nothing archived), stops repairing the table for the run and
/// names the trigger.
#[tokio::test]
async fn trigger_rewriting_rows_stops_the_table_and_names_it() {
    let dbs = TestDbs::new_named("safety_trigger_rewrite", &["a", "b"]).await;
    dbs.exec_all(
        "CREATE TABLE docs(id int primary key, v text, updated_at timestamptz);
         CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
         CREATE TRIGGER stamp_updated_at BEFORE UPDATE ON docs FOR EACH ROW EXECUTE FUNCTION stamp();",
    )
    .await;
    dbs.exec(0, "INSERT INTO docs VALUES (1, 'new', '2024-06-01')")
        .await;
    dbs.exec(1, "INSERT INTO docs VALUES (1, 'old', '2024-01-01')")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = vault_config(
        &dbs,
        dir.path(),
        "",
        "        - table: docs\n          resolution: last_write_wins\n          tracking_column: updated_at\n",
    );
    for _ in 0..2 {
        let mut args = s(&[
            "--config",
            cfg.to_str().unwrap(),
            "fix",
            "--db",
            "eden_vault",
        ]);
        args.extend(dbs.region_args());
        let r = run(args);
        r.assert_code(2).assert_one_line_error();
        assert!(
            r.stderr.contains("trigger(s) stamp_updated_at") && r.stderr.contains("public.docs"),
            "{}",
            r.stderr
        );
        assert_eq!(
            dbs.query_texts(1, "SELECT v FROM docs").await,
            vec![Some("old".into())]
        );
        assert_eq!(
            dbs.query_texts(1, "SELECT count(*)::text FROM replication_conflicts")
                .await,
            vec![Some("0".into())]
        );
    }
}

/// In flight with a REAL delayed replica: pglogical applies region a's changes in region b
/// 2 s late (`apply_delay`) while a writer keeps updating rows in a with
/// `last_updated_at = now()` during the check. With `max_replication_lag_seconds: 5` the
/// keys still on their way are reported in flight (not divergent, exit 0 for them); a
/// stable difference written long ago in b only stays divergent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_with_a_really_delayed_pglogical_replica() {
    use eden_test_util::pglogical::{DB, Pair};
    let pair = Pair::start_clusters();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("postgresql-multi-region.yaml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  replication_user: replication_user\n  max_replication_lag_seconds: 5\n  conflict_resolution: last_write_wins\n\
             regions:\n  - name: us-east-1\n    role: active\n    instance: {{ host: 127.0.0.1, port: {pa}, user: postgres }}\n\
             \x20 - name: us-west-2\n    role: active\n    instance: {{ host: 127.0.0.1, port: {pb}, user: postgres }}\n\
             replication:\n  provider: pglogical\n  node_groups:\n    - name: eden_vault_group\n      database: {DB}\n\
             \x20     conflict_resolution_tables:\n        - table: vault_secrets\n          resolution: last_write_wins\n          tracking_column: last_updated_at\n",
            pa = pair.a.cluster.port,
            pb = pair.b.cluster.port
        ),
    )
    .unwrap();
    let eden = |args: &[&str]| {
        let mut v = s(&["--config", cfg.to_str().unwrap()]);
        v.extend(s(args));
        v.extend(s(&["--db", DB]));
        run(v)
    };
    eden(&["init"]).assert_code(0);
    pair.replicate_with_b_delay(Some("2 seconds"));
    // A stable difference: written in b under a replication origin of its own, so pglogical
    // (forward_origins = '{}') never sends it to a; its row time and (after the sleep) its
    // commit time are outside the window.
    pair.b.sql(
        "SELECT pg_replication_origin_create('eden_test_local'); \
         SELECT pg_replication_origin_session_setup('eden_test_local'); \
         UPDATE vault_secrets SET secret = 'stale', last_updated_at = '2025-01-01' WHERE id = 50",
    );
    std::thread::sleep(std::time::Duration::from_secs(6));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let r = std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                pair.a.sql(&format!(
                    "UPDATE vault_secrets SET secret = 'w{i}', last_updated_at = now() WHERE id = {}",
                    i % 10 + 1
                ));
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let r = eden(&["check", "--table", "vault_secrets", "--format", "json"]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });
    let j = r.json();
    let t = &j["tables"][0];
    let diffs = t["differences"].as_array().unwrap_or_else(|| panic!("{j}"));
    let id = |d: &serde_json::Value| d["key"]["id"].as_i64().unwrap();
    let stable = diffs
        .iter()
        .find(|d| id(d) == 50)
        .unwrap_or_else(|| panic!("{t}"));
    assert_ne!(stable["in_flight"], json!(true), "{t}");
    let flying: Vec<_> = diffs.iter().filter(|d| id(d) <= 10).collect();
    assert!(
        !flying.is_empty(),
        "b's delay must leave some of a's writes unapplied: {t}"
    );
    for d in &flying {
        assert_eq!(
            d["in_flight"],
            json!(true),
            "a key still replicating is not divergent: {t}"
        );
    }
    assert_eq!(t["in_flight_count"], json!(flying.len()), "{t}");
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
}
