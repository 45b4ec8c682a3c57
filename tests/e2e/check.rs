//! `eden-reconcile check`: the JSON report's shape (see `docs/reports.md`), human output and exit codes.

use eden_test_util::TestDbs;
use serde_json::json;

use crate::common::run;

fn args(dbs: &TestDbs, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "check".to_string(),
        "--db".to_string(),
        dbs.name(0).to_string(),
    ];
    a.extend(dbs.region_args());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[tokio::test]
async fn check_json_shape_and_exit_codes() {
    let dbs = TestDbs::new_named("e2e_check_json", &["us-east-1", "us-west-2"]).await;
    dbs.exec_all(
        "CREATE TABLE vault_secrets(id bigint primary key, secret text, last_updated_at timestamptz);
         INSERT INTO vault_secrets SELECT g, 's' || g, '2024-01-01' FROM generate_series(1, 1000) g;",
    )
    .await;
    let ok = run(args(&dbs, &["--format", "json"]));
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.stdout, ok.stderr);
    let j = ok.json();
    assert_eq!(j["consistent"], json!(true));
    assert_eq!(j["regions"], json!(["us-east-1", "us-west-2"]));
    assert_eq!(j["tables"][0]["status"], json!("consistent"));

    dbs.exec(1, "DELETE FROM vault_secrets WHERE id = 42; UPDATE vault_secrets SET secret = 'x', last_updated_at = '2024-02-01' WHERE id = 7;").await;
    let r = run(args(
        &dbs,
        &["--format", "json", "--table", "vault_secrets"],
    ));
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["database"], json!(dbs.name(0)));
    assert_eq!(j["kind"], json!("postgresql"));
    assert_eq!(j["consistent"], json!(false));
    let t = &j["tables"][0];
    assert_eq!(t["table"], json!("public.vault_secrets"));
    assert_eq!(t["key_columns"], json!(["id"]));
    assert_eq!(t["status"], json!("divergent"));
    assert!(t["message"].is_string());
    assert_eq!(
        t["row_counts"],
        json!({"us-east-1": 1000, "us-west-2": 999})
    );
    assert_eq!(t["difference_count"], json!(2));
    assert_eq!(t["differences"][0]["key"], json!({"id": 7}));
    assert_eq!(t["differences"][0]["missing_in"], json!([]));
    assert_eq!(
        t["differences"][0]["changed_columns"],
        json!(["last_updated_at", "secret"])
    );
    assert_eq!(t["differences"][1]["key"], json!({"id": 42}));
    assert_eq!(t["differences"][1]["missing_in"], json!(["us-west-2"]));
    assert_eq!(t["differences"][1]["changed_columns"], json!([]));
    assert!(t["stats"]["us-east-1"]["rows_read"].is_number());

    // Both modes, same answer.
    for mode in ["pushdown", "stream"] {
        let m = run(args(&dbs, &["--format", "json", "--mode", mode]));
        assert_eq!(m.code, Some(1));
        assert_eq!(
            m.json()["tables"][0]["differences"],
            t["differences"],
            "{mode}"
        );
    }

    // Human output: a summary line per table, no colour when not a terminal.
    let h = run(args(&dbs, &[]));
    assert_eq!(h.code, Some(1));
    assert!(
        h.stdout.contains("public.vault_secrets") && h.stdout.contains("divergent"),
        "{}",
        h.stdout
    );
    assert!(!h.stdout.contains('\x1b'));

    // Refused --where and --table: exit 2, one line, nothing executed.
    let bad = run(args(&dbs, &["--where", "id = 1; DROP TABLE vault_secrets"]));
    bad.assert_one_line_error();
    let bad = run(args(
        &dbs,
        &["--table", "vault_secrets; DROP TABLE vault_secrets"],
    ));
    bad.assert_one_line_error();
    assert_eq!(
        dbs.query_texts(0, "SELECT count(*)::text FROM vault_secrets")
            .await,
        vec![Some("1000".to_string())]
    );
}

#[tokio::test]
async fn check_skipped_table_exits_1() {
    let dbs = TestDbs::new_named("e2e_check_skip", &["a", "b"]).await;
    dbs.exec_all("CREATE TABLE nokey(a int, b text); INSERT INTO nokey VALUES (1, 'x');")
        .await;
    let r = run(args(&dbs, &["--format", "json"]));
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["consistent"], json!(false));
    assert_eq!(j["tables"][0]["status"], json!("skipped"));
    assert!(
        j["tables"][0]["message"]
            .as_str()
            .unwrap()
            .contains("key_columns")
    );
}

/// A table that cannot be read (here: no SELECT privilege in one region) is reported with
/// status `error` and its message, the other tables are still compared, and the run exits 2
/// with one line on stderr naming the table.
#[tokio::test]
async fn check_table_error_is_reported_and_exits_2() {
    let dbs = TestDbs::new_named("e2e_check_table_error", &["us-east-1", "us-west-2"]).await;
    let role = "eden_e2e_check_noread";
    dbs.exec_all(&format!(
        "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         CREATE TABLE readable(id int primary key, v text); INSERT INTO readable VALUES (1, 'a');
         CREATE TABLE secret(id int primary key, v text); INSERT INTO secret VALUES (1, 'a');
         GRANT SELECT ON readable TO {role};"
    ))
    .await;
    dbs.exec(1, &format!("GRANT SELECT ON secret TO {role}"))
        .await;
    let regions: Vec<String> = (0..2)
        .flat_map(|i| {
            let url = dbs.url(i).replacen("postgres@", &format!("{role}@"), 1);
            [
                "--region".to_string(),
                format!("{}={url}", dbs.region_names()[i]),
            ]
        })
        .collect();
    let mut a = vec!["check".to_string(), "--format".into(), "json".into()];
    a.extend(regions);
    let r = run(a);
    r.assert_one_line_error();
    assert!(r.stderr.contains("public.secret"), "{}", r.stderr);
    let j = r.json();
    let tables = j["tables"].as_array().unwrap();
    let status = |name: &str| {
        tables
            .iter()
            .find(|t| t["table"] == name)
            .map(|t| t["status"].clone())
    };
    assert_eq!(
        status("public.readable"),
        Some(json!("consistent")),
        "{j:#}"
    );
    assert_eq!(status("public.secret"), Some(json!("error")), "{j:#}");
    assert_eq!(j["consistent"], json!(false));
}
