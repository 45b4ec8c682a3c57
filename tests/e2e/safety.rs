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
