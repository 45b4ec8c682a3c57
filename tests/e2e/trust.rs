//! Secrets stay secret, scripts stay scripts, logs stay clean: what an operator sees when
//! the input is mistyped or hostile, and what the server logs while we work.

use crate::common::run;

/// A mistyped URL (`postgres:/`, `postgres//`, no scheme), in `--region` or in a config's
/// `conninfo:`, exits 2 with one sentence that shows no part of the password.
#[test]
fn malformed_urls_never_echo_the_password() {
    let pw = "Pw1-Sekr3t-zz";
    let shapes = [
        format!("postgres:/user:{pw}@host/db"),
        format!("postgres//user:{pw}@host/db"),
        format!("user:{pw}@host/db"),
        format!("postgresql:user:{pw}@host/db"),
        format!("host=h password={pw} port=notaport"),
        format!("hostaddr= password={pw}"),
        format!("postgres://user:{pw}/x@host/db"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for shape in &shapes {
        let r = run(["check", "--db", "x", "--region", &format!("r1={shape}")]);
        r.assert_one_line_error();
        assert!(r.stderr.contains("--region r1"), "{shape}: {}", r.stderr);
        assert!(
            !r.stderr.contains("Sekr3t") && !r.stdout.contains("Sekr3t"),
            "{shape}: {}",
            r.stderr
        );
        let cfg = dir.path().join("cfg.yaml");
        std::fs::write(
            &cfg,
            format!(
                "regions:\n  - name: r1\n    conninfo: {}\nreplication:\n  provider: pglogical\n  node_groups: []\n",
                serde_json::to_string(shape).unwrap()
            ),
        )
        .unwrap();
        let r = run(["check", "--db", "x", "--config", cfg.to_str().unwrap()]);
        r.assert_one_line_error();
        assert!(r.stderr.contains("r1"), "{shape}: {}", r.stderr);
        assert!(!r.stderr.contains("Sekr3t"), "{shape}: {}", r.stderr);
    }
}

/// Two regions of a fresh test database pair with `schema` run in both and `r1`/`r2` run
/// in region 0 / 1.
async fn pair(test: &str, schema: &str, r1: &str, r2: &str) -> eden_test_util::TestDbs {
    let dbs = eden_test_util::TestDbs::new(test, 2).await;
    dbs.exec_all(schema).await;
    dbs.exec(0, r1).await;
    dbs.exec(1, r2).await;
    dbs
}

fn with_regions(dbs: &eden_test_util::TestDbs, args: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    a.extend(dbs.region_args());
    a
}

/// A table whose name holds a newline followed by `\! cmd`: the `--sql-out` scripts keep it
/// inside comments and quoted names, so psql running them executes no shell command, and
/// the scripts repair the regions.
#[tokio::test(flavor = "multi_thread")]
async fn sql_out_scripts_never_run_a_shell_command_from_a_table_name() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let name = format!("t\n\\! touch {}\n", marker.display());
    let q = eden_consistency::__private::ident::quote_ident(&name);
    let dbs = pair(
        "trust_sql_out_name",
        &format!("CREATE TABLE {q} (id int PRIMARY KEY, v text);"),
        &format!("INSERT INTO {q} VALUES (1, 'a'), (2, 'b');"),
        &format!("INSERT INTO {q} VALUES (1, 'a');"),
    )
    .await;
    let out = dir.path().join("fix.sql");
    let r = run(with_regions(
        &dbs,
        &["fix", "--db", "x", "--sql-out", out.to_str().unwrap()],
    ));
    assert!(
        r.code == Some(1) || r.code == Some(0),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let mut scripts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no script written: {}", r.stdout);
    for script in &scripts {
        let text = std::fs::read_to_string(script).unwrap();
        for line in text.lines() {
            if line.starts_with("\\!") {
                eprintln!("{text}");
                panic!("a line of {script:?} runs a shell command: {line}");
            }
        }
        let region = if script
            .to_string_lossy()
            .contains(&dbs.region(0).to_string())
        {
            0
        } else {
            1
        };
        let psql = std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &dbs.url(region),
                "-f",
            ])
            .arg(script)
            .output()
            .expect("run psql");
        assert!(
            psql.status.success(),
            "psql failed on {script:?}: {}",
            String::from_utf8_lossy(&psql.stderr)
        );
    }
    assert!(
        !marker.exists(),
        "psql ran the shell command hidden in the table name"
    );
    let r = run(with_regions(&dbs, &["check", "--db", "x"]));
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
}

/// On a server whose `standard_conforming_strings` is off, a column name holding a
/// backslash still gives valid statements: every session pins the setting on, and every
/// literal is quoted by one function that is safe either way.
#[test]
fn fix_works_when_the_server_has_standard_conforming_strings_off() {
    use eden_test_util::{ClusterOptions, TestCluster};
    let cluster = TestCluster::start(
        ClusterOptions::new()
            .setting("standard_conforming_strings", "off")
            .setting("escape_string_warning", "off"),
    );
    assert_eq!(
        cluster
            .psql("postgres", "SHOW standard_conforming_strings")
            .trim(),
        "off"
    );
    let table = r#"CREATE TABLE docs (id int PRIMARY KEY, "doc\" jsonb, "it's\n" text)"#;
    for db in ["r1", "r2"] {
        cluster.psql("postgres", &format!("CREATE DATABASE {db}"));
        cluster.psql(db, table);
    }
    cluster.psql("r1", r#"INSERT INTO docs VALUES (1, 'null', E'a\\b'), (2, E'{"k": "v\\\\w"}', 'x'), (3, NULL, 'y')"#);
    cluster.psql("r2", r#"INSERT INTO docs VALUES (1, '{}', 'a')"#);
    let regions = [
        "--region".to_string(),
        format!("r1={}", cluster.url("r1")),
        "--region".to_string(),
        format!("r2={}", cluster.url("r2")),
    ];
    let mut args = vec!["fix".to_string(), "--db".into(), "r1".into()];
    args.extend(regions.iter().cloned());
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let mut args = vec!["check".to_string(), "--db".into(), "r1".into()];
    args.extend(regions.iter().cloned());
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let rows = |db| {
        cluster.psql(
            db,
            r#"SELECT id, "doc\"::text, "it's\n" FROM docs ORDER BY id"#,
        )
    };
    assert_eq!(rows("r1"), rows("r2"));
    // The SQL script route (run by psql in a session that may keep the server's setting).
    cluster.psql("r2", "DELETE FROM docs WHERE id = 2");
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "fix".to_string(),
        "--db".into(),
        "r1".into(),
        "--sql-out".into(),
        dir.path().join("fix.sql").display().to_string(),
    ];
    args.extend(regions.iter().cloned());
    let r = run(&args);
    assert!(
        r.code == Some(1) || r.code == Some(0),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let psql = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &cluster.url("r2"),
            "-f",
        ])
        .arg(dir.path().join("fix.r2.sql"))
        .output()
        .unwrap();
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    assert_eq!(rows("r1"), rows("r2"));
}

/// `redact_columns: [encrypted_value]` masks the column in every output (conflicts human and
/// JSON, fix and its dry run, undo, check), while the archive keeps the real values and
/// `--show-values` prints them.
#[tokio::test(flavor = "multi_thread")]
async fn redact_columns_mask_secrets_in_every_output() {
    let dbs = pair(
        "trust_redact",
        "CREATE TABLE vault_secrets (id int PRIMARY KEY, name text, encrypted_value text, last_updated_at timestamptz);",
        "INSERT INTO vault_secrets VALUES (1, 'db', 'TOPSECRET-A', '2026-01-02'), (2, 'api', 'TOPSECRET-B', '2026-01-01');",
        "INSERT INTO vault_secrets VALUES (1, 'db', 'TOPSECRET-OLD', '2026-01-01');",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    let regions: String = dbs
        .region_names()
        .iter()
        .map(|r| format!("  - {{name: {r}, instance: {{host: 127.0.0.1, port: 5432}}}}\n"))
        .collect();
    std::fs::write(
        &cfg,
        format!(
            "regions:\n{regions}replication:\n  provider: native\n  node_groups:\n    - name: g\n      database: app\n      conflict_resolution_tables:\n        - table: vault_secrets\n          resolution: last_write_wins\n          tracking_column: last_updated_at\n          redact_columns: [encrypted_value]\n"
        ),
    )
    .unwrap();
    let eden = |args: &[&str]| {
        let mut a = vec!["--config".to_string(), cfg.display().to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        a.extend(["--db".to_string(), "app".to_string()]);
        a.extend(dbs.region_args());
        a.push("-vv".into());
        run(a)
    };
    let clean = |r: &crate::common::Run, what: &str| {
        assert!(
            !r.stdout.contains("TOPSECRET") && !r.stderr.contains("TOPSECRET"),
            "{what} shows a redacted value:\n{}\n{}",
            r.stdout,
            r.stderr
        );
    };
    for f in ["human", "json"] {
        clean(&eden(&["check", "--format", f]), "check");
        clean(&eden(&["fix", "--dry-run", "--format", f]), "fix --dry-run");
    }
    let r = eden(&["fix", "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    clean(&r, "fix");
    let run_id = r.json()["run_id"].as_str().unwrap().to_string();
    for f in ["human", "json"] {
        let r = eden(&["conflicts", "--format", f]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        clean(&r, "conflicts");
        clean(
            &eden(&["undo", "--run", &run_id, "--dry-run", "--format", f]),
            "undo --dry-run",
        );
    }
    let r = eden(&["conflicts", "--format", "json"]);
    assert!(r.stdout.contains("[redacted]"), "{}", r.stdout);
    // The archive keeps the values (undo needs them); --show-values prints them.
    let archived = dbs
        .query_texts(1, "SELECT local_row->>'encrypted_value' FROM replication_conflicts WHERE local_row IS NOT NULL")
        .await;
    assert_eq!(archived, vec![Some("TOPSECRET-OLD".to_string())]);
    let r = eden(&["conflicts", "--format", "json", "--show-values"]);
    assert!(r.stdout.contains("TOPSECRET-OLD"), "{}", r.stdout);
    let r = eden(&["undo", "--run", &run_id, "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    clean(&r, "undo");
    let back = dbs
        .query_texts(1, "SELECT encrypted_value FROM vault_secrets ORDER BY id")
        .await;
    assert_eq!(back, vec![Some("TOPSECRET-OLD".to_string())]);
}

/// `init`, `check --record`, `fix`, `conflicts` and `undo` in normal operation leave no
/// ERROR line in the server's log (log-based alerting must stay quiet).
#[test]
fn normal_operation_logs_no_error_on_the_server() {
    use eden_test_util::{ClusterOptions, TestCluster};
    let cluster = TestCluster::start(ClusterOptions::new().setting("log_min_messages", "warning"));
    for db in ["r1", "r2"] {
        cluster.psql("postgres", &format!("CREATE DATABASE {db}"));
        cluster.psql(
            db,
            "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamptz)",
        );
    }
    cluster.psql(
        "r1",
        "INSERT INTO t VALUES (1, 'a', '2026-01-02'), (2, 'b', '2026-01-01')",
    );
    cluster.psql(
        "r2",
        "INSERT INTO t VALUES (1, 'old', '2026-01-01'), (3, 'c', '2026-01-01')",
    );
    let base = |args: &[&str]| {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend([
            "--db".to_string(),
            "r1".into(),
            "--region".into(),
            format!("r1={}", cluster.url("r1")),
            "--region".into(),
            format!("r2={}", cluster.url("r2")),
        ]);
        run(a)
    };
    // Only what our runs make the server log counts (not the harness's own start-up).
    let from = cluster.log().len();
    assert_eq!(base(&["init"]).code, Some(0));
    assert_eq!(base(&["init"]).code, Some(0));
    assert_eq!(base(&["check", "--record"]).code, Some(1));
    assert_eq!(base(&["fix", "--dry-run"]).code, Some(1));
    let r = base(&["fix", "--no-replicate", "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let run_id = r.json()["run_id"].as_str().unwrap().to_string();
    assert_eq!(base(&["check"]).code, Some(0));
    assert_eq!(base(&["conflicts"]).code, Some(0));
    let r = base(&["undo", "--run", &run_id]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let log = cluster.log();
    let errors: Vec<&str> = log[from..]
        .lines()
        .filter(|l| l.contains("ERROR:") || l.contains("FATAL:") || l.contains("WARNING:"))
        .collect();
    assert!(
        errors.is_empty(),
        "server log has errors:\n{}",
        errors.join("\n")
    );
}

/// `check | head`: when the reader closes the pipe, the run ends quietly (nothing on
/// stderr) with its own exit code, as ripgrep does.
#[tokio::test(flavor = "multi_thread")]
async fn closed_stdout_ends_quietly() {
    let dbs = pair(
        "trust_closed_pipe",
        "CREATE TABLE t (id int PRIMARY KEY, v text);",
        "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 500) g;",
        "INSERT INTO t SELECT g, 'b' FROM generate_series(1, 500) g;",
    )
    .await;
    for format in ["human", "json"] {
        let mut cmd = crate::common::eden();
        cmd.args(with_regions(
            &dbs,
            &["check", "--db", "x", "--format", format],
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("eden-reconcile:"),
            "{format}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(1), "{format}: {stderr}");
    }
}

const GUIDE_SHAPED: &str = "CREATE TABLE replication_conflicts (id bigserial PRIMARY KEY, table_name text, \
     conflict_time timestamptz DEFAULT now(), local_data jsonb, remote_data jsonb, resolution text);";

/// `init` on an existing, older `replication_conflicts` says exactly which columns and
/// indexes it adds; a table in a replication set (here a publication) is changed only with
/// `--upgrade`.
#[tokio::test(flavor = "multi_thread")]
async fn init_says_what_it_adds_and_upgrades_a_replicated_table_only_when_asked() {
    let dbs = pair(
        "trust_init_upgrade",
        GUIDE_SHAPED,
        "",
        "CREATE PUBLICATION trust_pub FOR TABLE replication_conflicts;",
    )
    .await;
    let columns = |i: usize| {
        let dbs = &dbs;
        async move {
            dbs.query_texts(i, "SELECT string_agg(attname::text, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'replication_conflicts'::regclass AND attnum > 0 AND NOT attisdropped").await
        }
    };
    let before = columns(1).await;
    let r = run(with_regions(&dbs, &["init", "--db", "x"]));
    // Region 0: not replicated, upgraded and told. Region 1: in a publication: refused.
    assert_eq!(r.code, Some(2), "{}\n{}", r.stdout, r.stderr);
    r.assert_one_line_error();
    assert!(
        r.stderr.contains("publication trust_pub") && r.stderr.contains("--upgrade"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("created_at") && r.stderr.contains("run_id"),
        "{}",
        r.stderr
    );
    assert_eq!(
        columns(1).await,
        before,
        "a replicated table was changed without --upgrade"
    );
    assert!(columns(0).await[0].as_deref().unwrap().contains("run_id"));
    // Region 0 was upgraded by the first run: init now says it is present.
    let r = run(with_regions(&dbs, &["init", "--db", "x", "--upgrade"]));
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].ends_with("already present"), "{}", r.stdout);
    assert!(
        lines[1].contains("added column(s) created_at, key, conflict_type, local_region")
            && lines[1].contains("added index(es) replication_conflicts_table_created_idx"),
        "{}",
        r.stdout
    );
    assert!(!lines[1].contains("already present"));
    let r = run(with_regions(
        &dbs,
        &["init", "--db", "x", "--format", "json"],
    ));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.json()["regions"][1]["added_columns"],
        serde_json::json!([])
    );
}

/// On a guide-shaped table in no replication set, init adds what is missing and lists it.
#[tokio::test(flavor = "multi_thread")]
async fn init_lists_the_columns_it_adds() {
    let dbs = pair("trust_init_lists", GUIDE_SHAPED, "", "").await;
    let r = run(with_regions(&dbs, &["init", "--db", "x"]));
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    for line in r.stdout.lines() {
        assert!(!line.contains("already present"), "{}", r.stdout);
        assert!(
            line.contains("added column(s) created_at, key,"),
            "{}",
            r.stdout
        );
        assert!(
            line.contains("replication_conflicts_run_id_idx"),
            "{}",
            r.stdout
        );
    }
}

/// `fix --no-replicate` with two regions in one cluster (replication origins are
/// cluster-wide), and two such runs at once: each run and region uses an origin of its own,
/// dropped at the end.
#[tokio::test(flavor = "multi_thread")]
async fn no_replicate_works_when_regions_and_runs_share_a_cluster() {
    let a = pair(
        "trust_noreplicate_a",
        "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamptz);",
        "INSERT INTO t SELECT g, 'new', '2026-01-02' FROM generate_series(1, 300) g;",
        "INSERT INTO t SELECT g, 'old', '2026-01-01' FROM generate_series(1, 300) g;",
    )
    .await;
    let b = pair(
        "trust_noreplicate_b",
        "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamptz);",
        "INSERT INTO t SELECT g, 'new', '2026-01-02' FROM generate_series(1, 300) g;",
        "",
    )
    .await;
    let args = |dbs: &eden_test_util::TestDbs| {
        with_regions(
            dbs,
            &[
                "fix",
                "--db",
                "x",
                "--no-replicate",
                "--batch-size",
                "50",
                "--format",
                "json",
            ],
        )
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| run(args(&a)));
        let hb = s.spawn(|| run(args(&b)));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    for r in [&ra, &rb] {
        assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    }
    for dbs in [&a, &b] {
        let r = run(with_regions(dbs, &["check", "--db", "x"]));
        assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    }
    // Nothing of these runs is left among the cluster's origins.
    for r in [&ra, &rb] {
        let run_id = r.json()["run_id"].as_str().unwrap().to_string();
        let left = a
            .query_texts(
                0,
                &format!(
                    "SELECT roname::text FROM pg_replication_origin WHERE roname LIKE '%{run_id}%'"
                ),
            )
            .await;
        assert!(left.is_empty(), "origins left: {left:?}");
    }
}

/// The small things: undo's `already restored`, no raw JSON in human output, keys in the
/// key's order everywhere, a unique prefix of a run id for `undo --run`.
#[tokio::test(flavor = "multi_thread")]
async fn small_things_read_well() {
    let dbs = pair(
        "trust_small_things",
        "CREATE TABLE t (b int, a int, v text, updated_at timestamptz, PRIMARY KEY (b, a));",
        "INSERT INTO t VALUES (1, 2, 'new', '2026-01-02'), (3, 4, 'x', '2026-01-01');",
        "INSERT INTO t VALUES (1, 2, 'old', '2026-01-01');",
    )
    .await;
    let eden = |args: &[&str]| run(with_regions(&dbs, args));
    let r = eden(&["fix", "--db", "x", "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let run_id = r.json()["run_id"].as_str().unwrap().to_string();
    // Keys in the key's order (b, a) in check, fix, conflicts and undo alike.
    let r = eden(&["conflicts", "--db", "x"]);
    assert!(
        r.stdout.contains("b=1, a=2") && !r.stdout.contains("a=2, b=1"),
        "{}",
        r.stdout
    );
    let r = eden(&["conflicts", "--db", "x", "--format", "json"]);
    let key = &r.json()["conflicts"][0]["key"];
    assert_eq!(
        key.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["b", "a"]
    );
    // A unique prefix of the run id is enough.
    let r = eden(&["undo", "--db", "x", "--run", &run_id[..8]]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("b=1, a=2"), "{}", r.stdout);
    assert!(r.stdout.contains(&run_id), "{}", r.stdout);
    let r = eden(&["undo", "--db", "x", "--run", &run_id]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("already restored"), "{}", r.stdout);
    assert!(!r.stdout.contains("alreadyrestored"), "{}", r.stdout);
    // An ambiguous prefix: exit 2, one sentence saying how many runs it matches.
    dbs.exec(1, "INSERT INTO replication_conflicts (table_name, key, conflict_type, local_region, run_id) VALUES ('public.t', '{}', 'x', 'r', 'zzprefix-1'), ('public.t', '{}', 'x', 'r', 'zzprefix-2')").await;
    let r = eden(&["undo", "--db", "x", "--run", "zzprefix"]);
    r.assert_one_line_error();
    assert!(
        r.stderr.contains("ambiguous") && r.stderr.contains("2 run ids"),
        "{}",
        r.stderr
    );
}

/// The demo's headings are bold only on a terminal: piped, no escape codes.
#[test]
fn demo_headings_are_plain_when_piped() {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo.sh"))
        .unwrap();
    let start = demo
        .find("\nif [ -t 1 ]")
        .expect("the demo decides on colour with [ -t 1 ]");
    let end = start + demo[start..].find("\nfi\n").unwrap() + 4;
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{}\nstep eden-reconcile check", &demo[start..end]))
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("$ eden-reconcile check"), "{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains("\\033"),
        "{text:?}"
    );
    // Only the test script asks services.sh for pglogical.
    let test_sh =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test.sh"))
            .unwrap();
    assert!(test_sh.contains("services.sh --with-pglogical"));
    assert!(!demo.contains("--with-pglogical"));
}

/// Logs for cron: every run ends with one logfmt summary line on stderr; `-v` logs each
/// table's phases; the dependencies (tokio_postgres, rustls) stay quiet at `-vv` unless
/// `EDEN_LOG` asks for them.
#[tokio::test(flavor = "multi_thread")]
async fn runs_end_with_one_logfmt_summary_line() {
    let dbs = pair(
        "trust_summary",
        "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY);",
        "INSERT INTO t VALUES (1, 'a'), (2, 'b');",
        "INSERT INTO t VALUES (1, 'x');",
    )
    .await;
    let summary = |r: &crate::common::Run| -> Vec<String> {
        r.stderr
            .lines()
            .filter(|l| l.starts_with("level=info msg=\"run finished\""))
            .map(str::to_string)
            .collect()
    };
    let r = run(with_regions(&dbs, &["check", "--db", "x"]));
    assert_eq!(r.code, Some(1));
    let lines = summary(&r);
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    let line = &lines[0];
    for want in [
        "command=check",
        "database=x",
        "tables=2",
        "differences=2",
        "actions=0",
        "exit_code=1",
        "duration_seconds=",
    ] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    let r = run(with_regions(&dbs, &["fix", "--db", "x", "-v"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let line = summary(&r).pop().expect("summary");
    assert!(
        r.stderr.trim_end().ends_with(&line),
        "the summary is the last line:\n{}",
        r.stderr
    );
    for want in [
        "command=fix",
        "differences=2",
        "actions=2",
        "applied=2",
        "exit_code=0",
    ] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    // -v: the phases per table.
    assert!(
        r.stderr.contains("checked") && r.stderr.contains("table=public.t"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("planned") && r.stderr.contains("applied and re-checked"),
        "{}",
        r.stderr
    );
    // -vv: still no dependency noise; EDEN_LOG asks for it.
    let r = run(with_regions(&dbs, &["check", "--db", "x", "-vv"]));
    assert!(
        !r.stderr.contains("tokio_postgres") && !r.stderr.contains("rustls"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.to_lowercase().contains("executing statement"),
        "{}",
        r.stderr
    );
    let mut cmd = crate::common::eden();
    cmd.args(with_regions(&dbs, &["check", "--db", "x"]))
        .env("EDEN_LOG", "tokio_postgres=debug");
    let r = crate::common::run_cmd(&mut cmd);
    assert!(
        r.stderr.to_lowercase().contains("executing statement"),
        "{}",
        r.stderr
    );
    // A failed run: its one error sentence (the summary follows only with -v).
    let r = run([
        "check",
        "--db",
        "x",
        "--region",
        "r1=postgres://127.0.0.1:1/x",
    ]);
    r.assert_one_line_error();
    let r = run([
        "check",
        "--db",
        "x",
        "--region",
        "r1=postgres://127.0.0.1:1/x",
        "-v",
    ]);
    assert_eq!(r.code, Some(2));
    assert!(
        summary(&r).pop().expect("summary").contains("exit_code=2"),
        "{}",
        r.stderr
    );
}
